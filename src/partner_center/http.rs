//! One reqwest client per thread that calls Partner Center. actix-web runs each worker on a
//! runtime of its own: with one shared client, a connection opened on one worker serves
//! another worker's requests, and each such exchange wakes two threads. A client per worker
//! keeps each pooled connection, and the task driving it, on the worker that uses it.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

type Build = dyn Fn() -> reqwest::Result<reqwest::Client> + Send + Sync;

pub struct PerThreadClient {
    /// Tells this gateway's clients from another's on the same thread (tests run several).
    id: usize,
    build: Arc<Build>,
    /// Used where a thread's own client cannot be built (it was built once at start, so
    /// this is for the unexpected).
    shared: reqwest::Client,
}

thread_local! {
    static CLIENTS: RefCell<Vec<(usize, reqwest::Client)>> = const { RefCell::new(Vec::new()) };
}

impl PerThreadClient {
    pub fn new(
        shared: reqwest::Client,
        build: impl Fn() -> reqwest::Result<reqwest::Client> + Send + Sync + 'static,
    ) -> Self {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            build: Arc::new(build),
            shared,
        }
    }

    /// This thread's client, built on first use.
    pub fn get(&self) -> reqwest::Client {
        CLIENTS.with(|clients| {
            if let Some((_, client)) = clients.borrow().iter().find(|(id, _)| *id == self.id) {
                return client.clone();
            }
            let client = (self.build)().unwrap_or_else(|_| self.shared.clone());
            clients.borrow_mut().push((self.id, client.clone()));
            client
        })
    }
}
