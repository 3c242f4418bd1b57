//! Graceful shutdown: a signal (or a test) starts draining. While draining, `/readyz` answers
//! 503 so the load balancer takes the replica out, requests are still served (with
//! `Connection: close`, so clients move to other replicas), and after `shutdown_delay` the
//! listener closes and in-flight requests get `shutdown_timeout` to finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web;
use tokio::sync::Notify;

use crate::state::AppState;

/// Shared between the server, `/readyz` and whoever may ask for a shutdown.
#[derive(Clone, Default)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    draining: AtomicBool,
    asked: Notify,
}

impl Lifecycle {
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Starts the shutdown sequence; later calls change nothing.
    pub fn shut_down(&self) {
        if !self.inner.draining.swap(true, Ordering::AcqRel) {
            // Wakes every `asked()` already waiting; later ones see the flag.
            self.inner.asked.notify_waiters();
        }
    }

    /// Resolves once a shutdown was asked for.
    pub async fn asked(&self) {
        if self.is_draining() {
            return;
        }
        let notified = self.inner.asked.notified();
        if self.is_draining() {
            return;
        }
        notified.await;
    }
}

/// Waits for SIGTERM (Kubernetes) or SIGINT (a terminal), then starts the shutdown.
pub async fn shut_down_on_signals(lifecycle: Lifecycle) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    let signal = tokio::select! {
        _ = terminate => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    tracing::info!(signal, "shutdown signal received");
    lifecycle.shut_down();
}

/// While draining, every answer asks the client to close its connection, so keep-alive
/// clients reconnect to a replica that is staying.
pub async fn close_connections_while_draining(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let draining = request
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.lifecycle.is_draining());
    let mut response = next.call(request).await?;
    if draining {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}
