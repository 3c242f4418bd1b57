//! Group commit for SQLite: the request path's writes (a request submitted, its outcome) go
//! straight from the handlers to one thread holding a rusqlite connection of its own, which
//! commits whatever has queued up in one transaction, through statements it prepared once.
//! SQLite has one writer at a time anyway; a burst of requests then shares one BEGIN and one
//! COMMIT. (Through sqlx, each statement was a hop to its connection's thread and back, and
//! one big batch of SQL had to be parsed anew each time: the profile's largest costs.)
//! A request's submission is waited for (nothing goes to Partner Center unrecorded); its
//! outcome is written behind the answer, and reads of the history wait behind a barrier for
//! every write queued before them, so a caller still reads what it was answered.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::requests::{
    CALLER_APP, INSERT_EVENT, INSERT_REQUEST, NewRequest, RequestOutcome, SETTLE_REQUEST,
};
use super::watch::SCHEDULE_CUSTOMER;
use super::webhooks::{INSERT_DELIVERY, SUBSCRIBED_EVENTS, delivery_id, subscribes};
use super::{StoreError, now_ms};

/// Writes taken into one transaction at most.
const BATCH: usize = 128;

/// How often the checkpoint thread copies committed WAL pages into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL frames written between two checkpoint passes past which the next pass comes ten times
/// sooner. Spread over many customers, POSTs write ~2 frames each (~20,000 a second under
/// bench/run): at the idle pace one pass then had ~5,000 frames to copy, the WAL outgrew
/// [`WRITER_CHECKPOINT_PAGES`] before it could start over, and the writer checkpointed
/// inside its commits (~65 ms, every write waiting, four times a second).
const BUSY_PASS_FRAMES: i64 = 256;

/// WAL pages (4 KiB) past which the writer checkpoints on its own, at once: only a bound, for
/// when the checkpoint thread falls behind (see [`RESTART_WAL_AT`]).
pub(super) const WRITER_CHECKPOINT_PAGES: i64 = 16_384;

/// WAL frames (16 MiB) past which the WAL is started over. Under steady writes it practically
/// never starts over by itself: the checkpoint thread's passes can copy only what was committed
/// when each began, while the writer keeps appending. Left to the writer's own checkpoint
/// at [`WRITER_CHECKPOINT_PAGES`], the last copy and its two fsyncs took ~37 ms with every
/// write waiting (the POST's p99 under bench/run). So the checkpoint thread, once past this
/// size, makes a second pass to catch up and then asks the writer, between two batches, for
/// the rest: the few frames committed since, and fsyncs with little left to flush. The next
/// transaction then starts the WAL over, provided the writer's copy got everything: a pass of
/// the checkpoint thread's under way meanwhile holds the checkpoint lock, and the writer's copy
/// then copies nothing. So the thread makes none until that transaction is done. (Without
/// that pause, under bench/run's c=256 load the WAL went seconds without starting over and
/// the writer's own checkpoints at [`WRITER_CHECKPOINT_PAGES`] came back.)
const RESTART_WAL_AT: i64 = 4_096;

/// The writer's page cache in KiB, against SQLite's default of 2,000: most of what a POST
/// writes lands on a random leaf of an index keyed by a UUID or a customer (IDs, events,
/// watches), which a cache of either size holds only a sliver of once the tables have grown.
/// Under bench/run the POSTs' rate stayed the same and the peak fell ~1.4 MiB.
const WRITER_CACHE_KIB: i64 = 512;

/// How long a write waits for the pool's connection (the watcher, webhooks, idempotency)
/// to release SQLite's write lock: sqlx's own default.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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

type Job = (Write, oneshot::Sender<Result<(), StoreError>>);

// Nearly every message is a write: boxing it would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Message {
    Write(Job),
    /// Answered once everything queued has been written and the connection is closed.
    Stop(oneshot::Sender<()>),
}

#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Message>,
}

impl Writer {
    /// Starts the thread on its own connection to the (already migrated) database at `path`;
    /// a write nobody waits for that fails is counted in `failures`.
    pub(super) fn start(path: &Path, failures: Counter) -> anyhow::Result<Self> {
        Self::start_checkpointing(path, failures, CHECKPOINT_EVERY, RESTART_WAL_AT)
    }

    /// [`Writer::start`], checkpointing `every` and starting the WAL over past `restart_at`
    /// frames.
    fn start_checkpointing(
        path: &Path,
        failures: Counter,
        every: Duration,
        restart_at: i64,
    ) -> anyhow::Result<Self> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // As the pool's connections: readers never wait for the writer, and a commit
        // survives a crash of the process without an fsync each.
        connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        // Negative: a size in KiB, not in pages.
        connection.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        let checkpointer = Connection::open(path)?;
        checkpointer.busy_timeout(BUSY_TIMEOUT)?;
        let (stop_checkpoints, stopped) = std::sync::mpsc::channel();
        let restart_wanted = Arc::new(AtomicBool::new(false));
        let wanted = restart_wanted.clone();
        let checkpoints = std::thread::Builder::new()
            .name("store-checkpoint".to_owned())
            .spawn(move || checkpoint(&checkpointer, &stopped, every, restart_at, &wanted))?;
        let (jobs, queue) = mpsc::channel(4 * BATCH);
        std::thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn(move || {
                let ends = WriterEnds {
                    failures,
                    restart_wanted,
                };
                run(connection, queue, &ends, || {
                    drop(stop_checkpoints);
                    let _ = checkpoints.join();
                })
            })?;
        Ok(Self { jobs })
    }

    /// Queues `write` and waits for the commit that holds it.
    pub(super) async fn write(&self, write: Write) -> Result<(), StoreError> {
        let (done, committed) = oneshot::channel();
        self.jobs
            .send(Message::Write((write, done)))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        committed.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Queues `write` without waiting for its commit; a failure is logged and counted by
    /// the thread.
    pub(super) async fn write_behind(&self, write: Write) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        // Closed before the thread can see the write, which tells it nobody waits (and so a
        // failure is its to report).
        drop(answer);
        self.jobs
            .send(Message::Write((write, done)))
            .await
            .map_err(|_| StoreError::WriterStopped)
    }

    /// Resolves once every write queued before it has committed (or failed).
    pub(super) async fn barrier(&self) -> Result<(), StoreError> {
        self.write(Write::Barrier).await
    }

    /// Ends the thread after what is queued; its connection closes before this returns.
    pub(super) async fn stop(&self) {
        let (stop, stopped) = oneshot::channel();
        if self.jobs.send(Message::Stop(stop)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

/// What the writer's thread shares: the count of failures nobody waited for, and the
/// checkpoint thread's request to finish a checkpoint so the WAL can start over.
struct WriterEnds {
    failures: Counter,
    restart_wanted: Arc<AtomicBool>,
}

/// Commits what is queued until told to stop (or every sender is gone); a stop closes the
/// queue, and what was queued before it is still written. Then it ends the checkpoints,
/// closes the connection and answers the stop.
fn run(
    mut connection: Connection,
    mut queue: mpsc::Receiver<Message>,
    ends: &WriterEnds,
    end_checkpoints: impl FnOnce(),
) {
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
    let mut stops = Vec::new();
    let mut restart_at_this_commit = false;
    // After `close`, the receiver still hands out what was queued, then ends.
    while let Some(first) = queue.blocking_recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(job) => batch.push(job),
                Message::Stop(stop) => {
                    stops.push(stop);
                    queue.close();
                }
            }
            if batch.len() < BATCH {
                next = queue.try_recv().ok();
            }
        }
        commit_batch(&mut connection, &mut batch, &ends.failures);
        if restart_at_this_commit {
            // That transaction began on a fully copied WAL and so started it over (unless a
            // write of the pool's connection came between: then the checkpoint thread asks
            // again). Its passes may go on.
            restart_at_this_commit = false;
            ends.restart_wanted.store(false, Ordering::Release);
        } else if ends.restart_wanted.load(Ordering::Acquire) {
            // The writer's own copy of what the checkpoint thread has not (which holds its
            // passes meanwhile, so the checkpoint lock is free). Nothing of its own is appended
            // meanwhile, so it usually copies everything; a reader still on an older snapshot
            // can leave that to a later turn.
            match checkpoint_passive(&connection) {
                Ok(pass) if pass.busy || pass.copied < pass.frames => tracing::debug!(
                    busy = pass.busy,
                    frames = pass.frames,
                    copied = pass.copied,
                    "the store's WAL checkpoint did not finish; the next turn tries again"
                ),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot finish the store's WAL checkpoint; the next turn tries again");
                }
            }
            restart_at_this_commit = true;
        }
    }
    end_checkpoints();
    drop(connection);
    for stop in stops {
        let _ = stop.send(());
    }
}

/// Commits `batch` in one transaction and answers (and empties) it. When one write's
/// statements fail, the others are committed without it, each alone; when the transaction
/// itself could not begin or commit (SQLite busy, the disk), every write gets that error.
fn commit_batch(connection: &mut Connection, batch: &mut Vec<Job>, failures: &Counter) {
    if batch.is_empty() {
        return;
    }
    let together = commit(connection, batch.iter().map(|(write, _)| write));
    let shared = match together {
        Ok(()) => Ok(()),
        Err(Failed::Transaction(error)) => Err(Some(Arc::new(error))),
        Err(Failed::Write(_)) => Err(None),
    };
    for (write, done) in batch.drain(..) {
        let result = match &shared {
            Ok(()) => Ok(()),
            // A barrier waits for the writes before it to be done, failed or not.
            Err(_) if matches!(write, Write::Barrier) => Ok(()),
            Err(Some(error)) => Err(error.clone()),
            Err(None) => commit(connection, [&write]).map_err(|f| Arc::new(f.into_error())),
        };
        if let Err(error) = &result
            && done.is_closed()
            && matches!(write, Write::Outcome { .. })
        {
            failures.inc();
            tracing::error!(%error, "a request's outcome written behind its answer could not be stored; the vetting watch will record it");
        }
        let _ = done.send(result.map_err(StoreError::Write));
    }
}

/// Why a transaction did not commit.
enum Failed {
    /// BEGIN or COMMIT: no write was at fault, and each alone would meet the same.
    Transaction(rusqlite::Error),
    /// A write's own statement.
    Write(rusqlite::Error),
}

impl Failed {
    fn into_error(self) -> rusqlite::Error {
        match self {
            Failed::Transaction(error) | Failed::Write(error) => error,
        }
    }
}

/// Copies committed WAL pages into the database `every` ([`CHECKPOINT_EVERY`]), and ten times
/// as often while the WAL grows by more than [`BUSY_PASS_FRAMES`] between passes, until
/// `stop`'s sender is dropped. PASSIVE neither waits for the writer nor holds it up, so a
/// checkpoint's page copies and fsyncs stay off the request path's commits. Past
/// `restart_at` frames it catches up once more and asks the writer to finish (see
/// [`RESTART_WAL_AT`]).
fn checkpoint(
    connection: &Connection,
    stop: &std::sync::mpsc::Receiver<()>,
    every: Duration,
    restart_at: i64,
    restart_wanted: &AtomicBool,
) {
    let mut wait = every;
    let mut last_frames = 0;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        if restart_wanted.load(Ordering::Acquire) {
            // The writer is finishing: a pass now would hold the checkpoint lock its copy
            // needs, and the WAL could not start over.
            continue;
        }
        // A second pass only past `restart_at`; the writer is asked only when that one ran
        // (not when another checkpoint, the writer's own, held the lock).
        let caught_up = checkpoint_passive(connection).and_then(|pass| {
            if pass.busy {
                return Ok(false);
            }
            // Fewer frames than last time: the WAL has started over since.
            let grown = if pass.frames >= last_frames {
                pass.frames - last_frames
            } else {
                pass.frames
            };
            last_frames = pass.frames;
            wait = if grown > BUSY_PASS_FRAMES {
                every / 10
            } else {
                every
            };
            if pass.frames < restart_at {
                return Ok(false);
            }
            checkpoint_passive(connection).map(|again| !again.busy)
        });
        match caught_up {
            Ok(true) => restart_wanted.store(true, Ordering::Release),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot checkpoint the store's WAL; it is tried again at the next turn");
            }
        }
    }
}

/// What `PRAGMA wal_checkpoint(PASSIVE)` answered.
struct Pass {
    /// Another checkpoint held the lock: nothing was copied (`frames` is then -1).
    busy: bool,
    /// Frames in the WAL when the pass began, and how many of them are now in the database.
    frames: i64,
    copied: i64,
}

fn checkpoint_passive(connection: &Connection) -> rusqlite::Result<Pass> {
    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(Pass {
            busy: row.get::<_, i64>(0)? != 0,
            frames: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

/// `writes` in one transaction; nothing at all for barriers alone.
fn commit<'a>(
    connection: &mut Connection,
    writes: impl IntoIterator<Item = &'a Write>,
) -> Result<(), Failed> {
    let mut writes = writes
        .into_iter()
        .filter(|write| !matches!(write, Write::Barrier))
        .peekable();
    if writes.peek().is_none() {
        return Ok(());
    }
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(Failed::Transaction)?;
    let now = now_ms();
    for write in writes {
        // Dropped without a commit, the transaction rolls back.
        apply(&transaction, write, now).map_err(Failed::Write)?;
    }
    transaction.commit().map_err(Failed::Transaction)
}

/// The statements the pool's path runs for the same write (they are shared), here with the
/// arguments numbered the way SQLite reads them.
fn apply(db: &Connection, write: &Write, now: i64) -> rusqlite::Result<()> {
    let sql = &*STATEMENTS;
    match write {
        Write::Submitted {
            request,
            first_poll_ms,
        } => {
            let id = request.id.to_string();
            db.prepare_cached(&sql.insert_request)?.execute(params![
                id,
                request.caller_issuer,
                request.caller_subject,
                request.caller_app,
                request.customer_id,
                request.qualification,
                request.education_segment,
                request.website,
                request.validation_code_masked,
                request.ms_request_id,
                request.correlation_id,
                now,
            ])?;
            db.prepare_cached(&sql.insert_event)?.execute(params![
                id,
                "Submitted",
                None::<&str>,
                now
            ])?;
            db.prepare_cached(&sql.schedule_customer)?.execute(params![
                request.customer_id,
                first_poll_ms,
                now
            ])?;
        }
        Write::Outcome {
            id,
            outcome,
            notification,
        } => {
            let id = id.to_string();
            let status = outcome.status.as_str();
            let settled = db.prepare_cached(&sql.settle_request)?.execute(params![
                status,
                outcome.reason,
                outcome.http_status,
                now,
                id
            ])?;
            if settled == 0 {
                // A poll got there first: it knows at least as much, and has told it.
                return Ok(());
            }
            db.prepare_cached(&sql.insert_event)?.execute(params![
                id,
                status,
                outcome.reason,
                now
            ])?;
            if let Some((event_type, payload)) = notification {
                let app: String = db
                    .prepare_cached(&sql.caller_app)?
                    .query_row([&id], |row| row.get(0))?;
                let subscriptions = db
                    .prepare_cached(&sql.subscribed_events)?
                    .query_map([&app], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for (subscription, _) in subscriptions
                    .iter()
                    .filter(|(_, events)| subscribes(events, event_type))
                {
                    db.prepare_cached(&sql.insert_delivery)?.execute(params![
                        delivery_id(),
                        subscription,
                        app,
                        event_type,
                        payload,
                        now
                    ])?;
                }
            }
        }
        Write::Barrier => {}
    }
    Ok(())
}

/// The shared statements number their arguments `$n`, as PostgreSQL does (and sqlx's SQLite
/// driver reads them so); SQLite itself takes `$n` for a name, numbered by first appearance,
/// and `?n` for the number n.
fn renumbered(sql: &str) -> String {
    sql.replace('$', "?")
}

/// The writer's statements as SQLite numbers their arguments, renumbered once (not on every
/// write); the connection's cache keeps each prepared.
struct Statements {
    insert_request: String,
    insert_event: String,
    schedule_customer: String,
    settle_request: String,
    caller_app: String,
    subscribed_events: String,
    insert_delivery: String,
}

static STATEMENTS: LazyLock<Statements> = LazyLock::new(|| Statements {
    insert_request: renumbered(INSERT_REQUEST),
    insert_event: renumbered(INSERT_EVENT),
    schedule_customer: renumbered(&SCHEDULE_CUSTOMER),
    settle_request: renumbered(SETTLE_REQUEST),
    caller_app: renumbered(CALLER_APP),
    subscribed_events: renumbered(SUBSCRIBED_EVENTS),
    insert_delivery: renumbered(INSERT_DELIVERY),
});

#[cfg(test)]
mod tests {
    use std::io::Read;

    use prometheus_client::metrics::counter::Counter;

    use super::{Write, Writer};
    use crate::store::NewRequest;

    /// Bytes 12-15 of the WAL's header, big-endian: one more each time it starts over.
    fn wal_sequence(wal: &std::path::Path) -> u32 {
        let mut header = [0_u8; 16];
        std::fs::File::open(wal)
            .unwrap()
            .read_exact(&mut header)
            .unwrap();
        u32::from_be_bytes(header[12..16].try_into().unwrap())
    }

    /// Four writers with no pause between writes against a writer whose checkpoint thread
    /// passes `every` and asks for a restart past 64 frames, until the WAL has started over
    /// `restarts` times, has grown past `limit` bytes or 30 s have passed: how often it
    /// started over, and the WAL's size.
    async fn steady_writes(every: std::time::Duration, restarts: u32, limit: u64) -> (u32, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        // Migrated as the gateway does it (every migration, not a copy of the first).
        crate::store::Store::open_sqlite(&path).await.close().await;
        let writer = Writer::start_checkpointing(&path, Counter::default(), every, 64).unwrap();
        let submit = |n: usize| Write::Submitted {
            request: NewRequest::sample(&format!("subject-{n}")),
            first_poll_ms: 0,
        };
        writer.write(submit(0)).await.unwrap();
        let wal = dir.path().join("store.db-wal");
        let first = wal_sequence(&wal);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let writing: Vec<_> = (0..4)
            .map(|task| {
                let writer = writer.clone();
                let wal = wal.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let grown = std::fs::metadata(&wal).unwrap().len() > limit;
                        if grown || std::time::Instant::now() > deadline {
                            return;
                        }
                        writer
                            .write(submit(task * 1_000_000 + n + 1))
                            .await
                            .unwrap();
                        if n % 16 == 0 && wal_sequence(&wal).wrapping_sub(first) >= restarts {
                            return;
                        }
                    }
                })
            })
            .collect();
        for task in writing {
            task.await.unwrap();
        }
        let (size, last) = (std::fs::metadata(&wal).unwrap().len(), wal_sequence(&wal));
        writer.stop().await;
        (last.wrapping_sub(first), size)
    }

    /// Steady writes would grow the WAL to the writer's own bound and then stall every write
    /// for the last copy; the checkpoint thread and the writer start it over long before.
    #[tokio::test]
    async fn under_steady_writes_the_wal_starts_over_long_before_the_writers_bound() {
        // A checkpoint pass practically always overlaps a commit, so the WAL does not start
        // over by itself (only at the writer's own bound, 16,384 frames: 67 MB; with
        // `restart_at` at i64::MAX this test fails, the WAL past 32 MiB).
        let limit = 32 * 1024 * 1024;
        let (restarts, size) = steady_writes(std::time::Duration::from_millis(10), 1, limit).await;
        assert!(restarts >= 1, "the WAL never started over ({size} bytes)");
        assert!(size <= limit, "the WAL grew to {size} bytes first");
    }

    /// With passes back to back (the checkpoint thread's pace under a heavy load), restart
    /// after restart still gets through the handshake (the thread asks and pauses, the writer
    /// finishes and lets it go on): the WAL keeps starting over.
    #[tokio::test]
    async fn with_passes_back_to_back_the_wal_keeps_starting_over() {
        let limit = 32 * 1024 * 1024;
        let (restarts, size) = steady_writes(std::time::Duration::from_millis(1), 20, limit).await;
        assert!(
            restarts >= 20 && size <= limit,
            "the WAL started over {restarts} times and grew to {size} bytes"
        );
    }

    /// A pass while the writer finishes would hold the checkpoint lock the writer's copy
    /// needs, and the WAL could not start over.
    #[test]
    fn the_checkpoint_thread_makes_no_pass_while_a_restart_is_asked_for() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let db = rusqlite::Connection::open(&path).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        db.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        db.execute_batch(
            "CREATE TABLE pages (body BLOB); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) \
             INSERT INTO pages SELECT randomblob(2000) FROM n;",
        )
        .unwrap();
        // The rows are in the WAL only, until a pass copies them.
        let database_size = || std::fs::metadata(&path).unwrap().len();
        let before = database_size();
        let wanted = Arc::new(AtomicBool::new(true));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let checkpointer = rusqlite::Connection::open(&path).unwrap();
        let thread = {
            let wanted = wanted.clone();
            std::thread::spawn(move || {
                super::checkpoint(
                    &checkpointer,
                    &stopped,
                    Duration::from_millis(1),
                    i64::MAX,
                    &wanted,
                )
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let held = database_size();
        wanted.store(false, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(10);
        while database_size() == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let after = database_size();
        drop(stop);
        thread.join().unwrap();
        assert_eq!(
            held, before,
            "a pass copied pages while a restart was asked for"
        );
        assert!(
            after > before,
            "no pass copied the pages once the writer was done"
        );
    }

    #[test]
    fn arguments_keep_their_numbers_whatever_their_order() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let (a, b): (i64, i64) = db
            .prepare(&super::renumbered("SELECT $2 - $1, $1"))
            .unwrap()
            .query_row([10, 3], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap();
        assert_eq!((a, b), (-7, 10));
    }
}
