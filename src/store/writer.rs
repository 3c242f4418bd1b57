//! Group commit for SQLite: the request path's writes (a request submitted, its outcome) go
//! to one task holding a connection of its own, which commits whatever has queued up in one
//! transaction. SQLite has one writer at a time anyway; a burst of requests then shares one
//! BEGIN and one COMMIT instead of queueing for a pooled connection each. A request's
//! submission is waited for (nothing goes to Partner Center unrecorded); its outcome is
//! written behind the answer, and reads of the history wait behind a barrier for every
//! write queued before them, so a caller still reads what it was answered.

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::requests::{
    NewRequest, RequestOutcome, SETTLE_ARGUMENTS, SETTLE_IN_ONE, SUBMIT_ARGUMENTS, SUBMIT_IN_ONE,
    bind_settlement, bind_submission, settle, submit,
};
use super::{StoreError, now_ms};

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
    /// No statement: answered once everything queued before it has committed.
    Barrier,
}

impl Write {
    fn notifies(&self) -> bool {
        matches!(
            self,
            Self::Outcome {
                notification: Some(_),
                ..
            }
        )
    }
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

    /// Queues `write` without waiting for its commit; a failure is logged by the task.
    pub(super) async fn write_behind(&self, write: Write) -> Result<(), StoreError> {
        let (done, _not_waited_for) = oneshot::channel();
        self.jobs
            .send(Some((write, done)))
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))
    }

    /// Resolves once every write queued before it has committed (or failed).
    pub(super) async fn barrier(&self) -> Result<(), StoreError> {
        self.write(Write::Barrier).await
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
        let writes: Vec<&Write> = batch
            .iter()
            .map(|(write, _)| write)
            .filter(|write| !matches!(write, Write::Barrier))
            .collect();
        // Notifications read the subscriptions first: those batches go statement by statement.
        let together = if writes.is_empty() {
            Ok(())
        } else if writes.iter().any(|w| w.notifies()) {
            commit_together(&mut connection, &writes).await
        } else {
            commit_in_one_call(&mut connection, &writes).await
        };
        for (write, done) in batch.drain(..) {
            let result = match &together {
                Ok(()) => Ok(()),
                Err(_) if matches!(write, Write::Barrier) => Ok(()),
                // One bad write must not fail the others: each again, alone.
                Err(_) => commit_together(&mut connection, &[&write]).await,
            };
            if let Err(error) = &result
                && done.is_closed()
            {
                tracing::error!(%error, "a request's outcome written behind its answer could not be stored; the vetting watch will record it");
            }
            let _ = done.send(result.map_err(StoreError::from));
        }
    }
    queue.close();
    let _ = connection.close().await;
}

/// The whole batch in one call to the connection's thread: BEGIN, every write's statements
/// (each write's arguments numbered after the one before), COMMIT. Calls to that thread, not
/// SQLite itself, were the cost of a write.
async fn commit_in_one_call(
    connection: &mut AnyConnection,
    writes: &[&Write],
) -> Result<(), sqlx::Error> {
    let mut sql = String::from("BEGIN IMMEDIATE; ");
    let mut offset = 0;
    for write in writes {
        let (statements, arguments) = match write {
            Write::Submitted { .. } => (SUBMIT_IN_ONE, SUBMIT_ARGUMENTS),
            Write::Outcome { .. } => (SETTLE_IN_ONE, SETTLE_ARGUMENTS),
            Write::Barrier => continue,
        };
        renumber_into(&mut sql, statements, offset);
        sql.push_str("; ");
        offset += arguments;
    }
    sql.push_str("COMMIT");
    let now = now_ms();
    // Each batch's text is new: not worth a place in the prepared-statement cache.
    let mut query = sqlx::query(&sql).persistent(false);
    for write in writes {
        query = match write {
            Write::Submitted {
                request,
                first_poll_ms,
            } => bind_submission(query, request, now, Some(*first_poll_ms)),
            Write::Outcome { id, outcome, .. } => bind_settlement(query, *id, outcome, now),
            Write::Barrier => query,
        };
    }
    if let Err(error) = query.execute(&mut *connection).await {
        let _ = connection.execute("ROLLBACK").await;
        return Err(error);
    }
    Ok(())
}

/// Appends `statements` with every `$n` moved to `$(n + offset)`.
fn renumber_into(sql: &mut String, statements: &str, offset: usize) {
    let mut rest = statements;
    while let Some(at) = rest.find('$') {
        sql.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest.len() - at - 1, |end| end);
        sql.push('$');
        if let Ok(number) = rest[at + 1..at + 1 + digits].parse::<usize>() {
            sql.push_str(&(number + offset).to_string());
        }
        rest = &rest[at + 1 + digits..];
    }
    sql.push_str(rest);
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
                Write::Barrier => {}
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

#[cfg(test)]
mod tests {
    #[test]
    fn arguments_are_numbered_on_from_the_offset() {
        let mut sql = String::new();
        super::renumber_into(
            &mut sql,
            "INSERT INTO t VALUES ($1, $12, 'a$'); SELECT $3",
            13,
        );
        assert_eq!(sql, "INSERT INTO t VALUES ($14, $25, 'a$'); SELECT $16");
    }
}
