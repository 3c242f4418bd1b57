//! Idempotency-Key records: one row per caller and key, claimed by the first request (on
//! whichever replica) and holding its answer for replay.

use super::{Store, StoreError, now_ms, optional_int, optional_text, text};

/// A claim found in place of a fresh one.
#[derive(Debug, Clone)]
pub enum IdempotencyRecord {
    /// Another request under this key is running (on any replica).
    Running { fingerprint: String },
    Done {
        fingerprint: String,
        status: u16,
        content_type: String,
        location: Option<String>,
        body: String,
    },
}

impl Store {
    /// Claims `scope` for a new request, or returns what holds it. A running claim older than
    /// `running_ttl_ms` was left by a replica that died, and is taken over.
    pub async fn claim_idempotency(
        &self,
        scope: &str,
        fingerprint: &str,
        running_ttl_ms: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let now = now_ms();
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM idempotency_records WHERE scope = $1 AND expires_ms <= $2")
            .bind(scope)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_records (scope, fingerprint, state, http_status, content_type, location, body, expires_ms) \
             VALUES ($1, $2, 'running', NULL, NULL, NULL, NULL, $3) ON CONFLICT (scope) DO NOTHING",
        )
        .bind(scope)
        .bind(fingerprint)
        .bind(now + running_ttl_ms)
        .execute(&mut *tx)
        .await?;
        let found = if inserted.rows_affected() == 1 {
            None
        } else {
            let row = sqlx::query(
                "SELECT fingerprint, state, http_status, content_type, location, body FROM idempotency_records WHERE scope = $1",
            )
            .bind(scope)
            .fetch_one(&mut *tx)
            .await?;
            let fingerprint = text(&row, "fingerprint")?;
            Some(match text(&row, "state")?.as_str() {
                "done" => IdempotencyRecord::Done {
                    fingerprint,
                    status: optional_int(&row, "http_status")?.unwrap_or(500) as u16,
                    content_type: optional_text(&row, "content_type")?.unwrap_or_default(),
                    location: optional_text(&row, "location")?,
                    body: optional_text(&row, "body")?.unwrap_or_default(),
                },
                _ => IdempotencyRecord::Running { fingerprint },
            })
        };
        tx.commit().await?;
        Ok(found)
    }

    /// Keeps the first answer under `scope` for `ttl_ms`.
    pub async fn complete_idempotency(
        &self,
        scope: &str,
        status: u16,
        content_type: &str,
        location: Option<&str>,
        body: &str,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE idempotency_records SET state = 'done', http_status = $1, content_type = $2, location = $3, \
             body = $4, expires_ms = $5 WHERE scope = $6",
        )
        .bind(i64::from(status))
        .bind(content_type)
        .bind(location)
        .bind(body)
        .bind(now_ms() + ttl_ms)
        .bind(scope)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Frees a running claim whose request ended without an answer worth replaying.
    pub async fn release_idempotency(&self, scope: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM idempotency_records WHERE scope = $1 AND state = 'running'")
            .bind(scope)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops expired answers; run now and then by a background task.
    pub async fn purge_expired_idempotency(&self) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let purged = sqlx::query("DELETE FROM idempotency_records WHERE expires_ms <= $1")
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(purged.rows_affected())
    }

    /// Records held, for tests and metrics.
    pub async fn idempotency_records(&self) -> Result<i64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_records")
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }
}
