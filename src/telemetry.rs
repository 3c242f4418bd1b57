//! Structured logs: every line inside a request carries its correlation ID through the root span.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing::subscriber::set_global_default;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt};

use crate::configuration::LogFormat;
use crate::domain::CorrelationId;

/// Builds the subscriber; `RUST_LOG` wins over the configured level.
pub fn get_subscriber<Sink>(
    default_level: &str,
    format: LogFormat,
    sink: Sink,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let registry = Registry::default().with(filter);
    match format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_span_list(true)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Pretty => {
            Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(sink)))
        }
    }
}

/// Installs the subscriber once per process; a second call is a no-op, so tests can share one.
pub fn init_subscriber(subscriber: Box<dyn tracing::Subscriber + Send + Sync>) {
    let _ = set_global_default(subscriber);
}

/// The request's root span, with the correlation ID and, once authenticated, the caller
/// (subject, issuer, client application and name) for the audit trail.
pub struct GatewayRootSpan;

impl RootSpanBuilder for GatewayRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let correlation_id = request
            .extensions()
            .get::<CorrelationId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing_actix_web::root_span!(
            request,
            correlation_id = %correlation_id,
            caller = tracing::field::Empty,
            caller_issuer = tracing::field::Empty,
            caller_app = tracing::field::Empty,
            caller_name = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
