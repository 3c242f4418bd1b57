//! The durable store: qualification requests and their status history, the watch schedule,
//! webhook subscriptions, the delivery outbox and Idempotency-Key answers. One schema
//! (`migrations/`), two backends through sqlx's Any driver: SQLite embedded (the default,
//! whose request-path writes go to a rusqlite thread of their own: `writer`) and
//! PostgreSQL, where several replicas share leases and idempotency answers.

mod idempotency;
mod requests;
mod watch;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use secrecy::ExposeSecret;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Transaction};
use time::OffsetDateTime;

use crate::configuration::StoreSettings;

pub use idempotency::IdempotencyRecord;
pub use requests::{
    ListQuery, NewRequest, Page, RequestOutcome, RequestStatus, StatusEvent, StoredRequest,
};
pub use watch::{LeasedWatch, OpenRequest, PollResult, Transition};
pub use webhooks::{DeliveryFilter, LeasedDelivery, NewSubscription, StoredDelivery, Subscription};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Row locks that let replicas lease different rows at once; SQLite has one writer and
    /// needs none.
    fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the statement: a 503 for callers.
    #[error("the store is unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    /// SQLite's writer thread: the same, for callers (one error may fail a whole batch).
    #[error("the store is unavailable: {0}")]
    Write(std::sync::Arc<rusqlite::Error>),
    #[error("the store is unavailable: its writer has stopped")]
    WriterStopped,
    #[error("cannot open the store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The database, shared by handlers and background workers.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite's group commit for the request path's writes; PostgreSQL writes in parallel.
    writer: Option<writer::Writer>,
}

impl Store {
    /// Opens (creating when needed) and migrates the configured database. `failures` counts
    /// the writes that fail where no caller sees it (an outcome written behind its answer):
    /// the gateway's `store_failures`.
    pub async fn open(
        settings: &StoreSettings,
        default_path: Option<&Path>,
        failures: Counter,
    ) -> anyhow::Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (url, sqlite_path) = match (&settings.url, &settings.path) {
            (Some(url), _) => (url.expose_secret().to_owned(), None),
            (None, path) => {
                let path: PathBuf = path
                    .clone()
                    .or_else(|| default_path.map(Path::to_path_buf))
                    .ok_or_else(|| anyhow::anyhow!("store.path is not set"))?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        anyhow::anyhow!(
                            "cannot create the store's directory {} (set store.path, {}): {e}",
                            dir.display(),
                            crate::configuration::env_name("store.path")
                        )
                    })?;
                }
                (format!("sqlite://{}?mode=rwc", path.display()), Some(path))
            }
        };
        let backend = match sqlite_path {
            Some(_) => Backend::Sqlite,
            None => Backend::Postgres,
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time is SQLite's rule; one connection keeps it simple
                // and never meets SQLITE_BUSY.
                Backend::Sqlite => 1,
                Backend::Postgres => settings.max_connections,
            })
            .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
            // No ping before every use: a broken connection fails its statement, which the
            // caller sees as a 503 (or a worker retries), and the pool replaces it.
            .test_before_acquire(false);
        if backend == Backend::Sqlite {
            options = options.after_connect(|connection, _| {
                Box::pin(async move {
                    // WAL: readers never wait for the writer; NORMAL: a commit survives a
                    // crash of the process (not of the machine) without an fsync each.
                    // One statement per call: a multi-statement string may run only its first.
                    connection.execute("PRAGMA journal_mode = WAL").await?;
                    connection.execute("PRAGMA synchronous = NORMAL").await?;
                    // Checkpoints are the writer's thread's business (see `writer`): these
                    // connections' commits must not copy the WAL either.
                    connection
                        .execute(
                            format!(
                                "PRAGMA wal_autocheckpoint = {}",
                                writer::WRITER_CHECKPOINT_PAGES
                            )
                            .as_str(),
                        )
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(&url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the {} store: {e}", backend.as_str()))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate the {} store: {e}", backend.as_str()))?;
        let writer = match sqlite_path {
            // Opening may wait on SQLite's lock: not on a runtime thread.
            Some(path) => Some(
                tokio::task::spawn_blocking(move || writer::Writer::start(&path, failures))
                    .await?
                    .map_err(|e| anyhow::anyhow!("cannot open the sqlite store's writer: {e}"))?,
            ),
            None => None,
        };
        Ok(Self {
            pool,
            backend,
            writer,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A write transaction. SQLite's takes the write lock at once, so it never has to be
    /// upgraded (and refused) halfway.
    async fn write(&self) -> Result<Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Whether the database answers, for `/readyz`.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.stop().await;
        }
        self.pool.close().await;
    }
}

#[cfg(test)]
impl Store {
    /// A SQLite store at `database`, opened as the gateway opens one.
    pub(crate) async fn open_sqlite(database: &Path) -> Self {
        Self::open_sqlite_counting(database, Counter::default()).await
    }

    /// The same, counting its unseen failures in `failures`.
    pub(crate) async fn open_sqlite_counting(database: &Path, failures: Counter) -> Self {
        let settings = StoreSettings {
            path: Some(database.to_path_buf()),
            url: None,
            max_connections: 1,
            acquire_timeout_ms: 1_000,
        };
        Self::open(&settings, None, failures).await.unwrap()
    }
}

/// The store keeps times as Unix milliseconds, the one type both backends share.
pub fn now_ms() -> i64 {
    to_ms(OffsetDateTime::now_utc())
}

pub fn to_ms(time: OffsetDateTime) -> i64 {
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    sqlx::Row::try_get(row, column)
}

fn optional_text(row: &AnyRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::Row::try_get(row, column)
}

fn int(row: &AnyRow, column: &str) -> Result<i64, sqlx::Error> {
    sqlx::Row::try_get(row, column)
}

fn optional_int(row: &AnyRow, column: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::Row::try_get(row, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WAL with synchronous=NORMAL on every connection: a commit is a write, not an fsync.
    #[tokio::test]
    async fn sqlite_runs_in_wal_mode_without_an_fsync_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("store.db")).await;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!((mode.as_str(), synchronous), ("wal", 1));
        store.close().await;
    }

    /// Outcomes written behind their answers are on disk once `close` returns.
    #[tokio::test]
    async fn closing_writes_every_outcome_still_queued() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("store.db");
        let store = Store::open_sqlite(&database).await;
        let requests: Vec<NewRequest> = (0..300)
            .map(|n| NewRequest::sample(&format!("subject-{n}")))
            .collect();
        for request in &requests {
            store.record_submitted(request, 0).await.unwrap();
        }
        let accepted = RequestOutcome {
            status: RequestStatus::InReview,
            reason: None,
            http_status: Some(201),
        };
        for request in &requests {
            store
                .record_outcome(request.id, &accepted, None)
                .await
                .unwrap();
        }
        store.close().await;

        let reopened = Store::open_sqlite(&database).await;
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM qualification_requests WHERE status = 'InReview'",
        )
        .fetch_one(&reopened.pool)
        .await
        .unwrap();
        assert_eq!(open, 300);
        reopened.close().await;
    }

    /// The request path's writer leaves checkpoints to a thread of its own: what it commits
    /// reaches the database file without the writer ever stopping for it.
    #[tokio::test]
    async fn committed_writes_are_checkpointed_into_the_database_file_off_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("store.db");
        let store = Store::open_sqlite(&database).await;
        let size = || std::fs::metadata(&database).unwrap().len();
        let before = size();
        for n in 0..200 {
            let request = NewRequest::sample(&format!("subject-{n}"));
            store.record_submitted(&request, 0).await.unwrap();
        }
        // Far below the writer's own threshold: only the checkpoint thread moves these pages.
        let mut checkpointed = false;
        for _ in 0..100 {
            if size() > before + 64 * 1024 {
                checkpointed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(checkpointed, "the database file stayed at {} bytes", size());
        store.close().await;
    }
}
