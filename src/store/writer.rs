//! Group commit for SQLite: the request path's writes (a request submitted, its outcome) go
//! to one task holding a connection of its own, which commits whatever has queued up in one
//! transaction. SQLite has one writer at a time anyway; a burst of requests then shares one
//! BEGIN and one COMMIT instead of queueing for a pooled connection each. Every caller still
//! waits for the commit that holds its write.

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::StoreError;
use super::requests::{NewRequest, RequestOutcome, settle, submit};

/// Writes taken into one transaction at most.
const BATCH: usize = 128;

pub(super) enum Write {
    Submitted {
        request: NewRequest,
        first_poll_ms: i64,
    },
    Outcome {
        id: Uuid,
        outcome: RequestOutcome,
        notification: Option<(String, String)>,
    },
}

type Job = (Write, oneshot::Sender<Result<(), StoreError>>);

#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Option<Job>>,
}

impl Writer {
    /// Starts the task on its own connection to `url`.
    pub(super) async fn start(url: &str) -> Result<Self, sqlx::Error> {
        let mut connection = AnyConnection::connect(url).await?;
        connection.execute("PRAGMA journal_mode = WAL").await?;
        connection.execute("PRAGMA synchronous = NORMAL").await?;
        let (jobs, queue) = mpsc::channel(4 * BATCH);
        tokio::spawn(run(connection, queue));
        Ok(Self { jobs })
    }

    /// Queues `write` and waits for the commit that holds it.
    pub(super) async fn write(&self, write: Write) -> Result<(), StoreError> {
        let (done, committed) = oneshot::channel();
        let stopped = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        self.jobs
            .send(Some((write, done)))
            .await
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }

    /// Ends the task after what is queued; its connection closes.
    pub(super) async fn stop(&self) {
        let _ = self.jobs.send(None).await;
        self.jobs.closed().await;
    }
}

async fn run(mut connection: AnyConnection, mut queue: mpsc::Receiver<Option<Job>>) {
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
    let mut stopping = false;
    while !stopping {
        match queue.recv().await {
            Some(Some(job)) => batch.push(job),
            Some(None) | None => break,
        }
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(Some(job)) => batch.push(job),
                Ok(None) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let writes: Vec<&Write> = batch.iter().map(|(write, _)| write).collect();
        let together = commit_together(&mut connection, &writes).await;
        for (write, done) in batch.drain(..) {
            let result = match &together {
                Ok(()) => Ok(()),
                // One bad write must not fail the others: each again, alone.
                Err(_) => commit_together(&mut connection, &[&write]).await,
            };
            let _ = done.send(result.map_err(StoreError::from));
        }
    }
    queue.close();
    let _ = connection.close().await;
}

async fn commit_together(
    connection: &mut AnyConnection,
    writes: &[&Write],
) -> Result<(), sqlx::Error> {
    connection.execute("BEGIN IMMEDIATE").await?;
    let applied = async {
        for write in writes {
            match write {
                Write::Submitted {
                    request,
                    first_poll_ms,
                } => submit(&mut *connection, request, *first_poll_ms, true).await?,
                Write::Outcome {
                    id,
                    outcome,
                    notification,
                } => {
                    let notification = notification.as_ref().map(|(e, p)| (e.as_str(), p.as_str()));
                    settle(&mut *connection, *id, outcome, notification, true).await?
                }
            }
        }
        Ok::<(), sqlx::Error>(())
    }
    .await;
    match applied {
        Ok(()) => connection.execute("COMMIT").await.map(|_| ()),
        Err(error) => {
            let _ = connection.execute("ROLLBACK").await;
            Err(error)
        }
    }
}
