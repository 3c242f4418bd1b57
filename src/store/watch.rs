//! The watch schedule: one row per customer with open requests, leased by one replica at a
//! time for each poll (PostgreSQL: `FOR UPDATE SKIP LOCKED`; a dead replica's lease lapses).

use std::sync::LazyLock;

use super::requests::{REQUEST_COLUMNS, RequestStatus, StoredRequest, insert_event};
use super::{Store, StoreError, int, now_ms, text};

/// A customer this replica may poll now, until its lease runs out.
#[derive(Debug, Clone)]
pub struct LeasedWatch {
    pub customer_id: String,
    /// Polls made so far: picks the next wait from the schedule.
    pub polls: i64,
}

pub type OpenRequest = StoredRequest;

/// A request's move to a new status, with the notification it sends, if any.
#[derive(Debug, Clone)]
pub struct Transition {
    pub request_id: String,
    pub caller_app: String,
    /// Applied only if the request is still here: another writer may have moved it.
    pub from: RequestStatus,
    pub to: RequestStatus,
    pub reason: Option<String>,
    /// Event type and signed payload.
    pub notification: Option<(String, String)>,
}

/// What a poll decided: moves, and when to look again if anything stays open.
pub struct PollResult {
    pub transitions: Vec<Transition>,
    pub next_poll_ms: i64,
    pub polls: i64,
}

impl Store {
    /// Claims up to `limit` customers due for a poll.
    pub async fn lease_due_watches(
        &self,
        owner: &str,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<LeasedWatch>, StoreError> {
        let now = now_ms();
        let mut tx = self.write().await?;
        let rows = sqlx::query(&format!(
            "UPDATE watches SET lease_owner = $1, lease_until_ms = $2 WHERE customer_id IN \
             (SELECT customer_id FROM watches WHERE next_poll_ms <= $3 AND lease_until_ms <= $3 \
              ORDER BY next_poll_ms LIMIT $4{}) \
             RETURNING customer_id, polls",
            self.backend.skip_locked()
        ))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(LeasedWatch {
                    customer_id: text(row, "customer_id")?,
                    polls: int(row, "polls")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The customer's requests that are still open, oldest first.
    pub async fn open_requests(&self, customer_id: &str) -> Result<Vec<OpenRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM qualification_requests \
             WHERE customer_id = $1 AND status IN ('Submitted', 'InReview') ORDER BY created_ms, id"
        ))
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(StoredRequest::from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// Applies a poll's moves and notifications, and either reschedules the customer or,
    /// when nothing of it is open any more, stops watching it; in one transaction.
    pub async fn apply_poll(
        &self,
        customer_id: &str,
        owner: &str,
        result: &PollResult,
    ) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut tx = self.write().await?;
        let mut moved = 0;
        for transition in &result.transitions {
            let updated = sqlx::query(
                "UPDATE qualification_requests SET status = $1, status_reason = $2, updated_ms = $3 \
                 WHERE id = $4 AND status = $5",
            )
            .bind(transition.to.as_str())
            .bind(&transition.reason)
            .bind(now)
            .bind(&transition.request_id)
            .bind(transition.from.as_str())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                continue;
            }
            moved += 1;
            insert_event(
                &mut tx,
                &transition.request_id,
                transition.to.as_str(),
                transition.reason.as_deref(),
                now,
            )
            .await?;
            if let Some((event_type, payload)) = &transition.notification {
                super::webhooks::enqueue(&mut tx, &transition.caller_app, event_type, payload, now)
                    .await?;
            }
        }
        let still_open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM qualification_requests WHERE customer_id = $1 AND status IN ('Submitted', 'InReview')",
        )
        .bind(customer_id)
        .fetch_one(&mut *tx)
        .await?;
        if still_open == 0 {
            sqlx::query("DELETE FROM watches WHERE customer_id = $1")
                .bind(customer_id)
                .execute(&mut *tx)
                .await?;
        } else {
            reschedule(
                &mut tx,
                customer_id,
                owner,
                result.next_poll_ms,
                result.polls,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Gives a lease back with the next poll time, after a poll that decided nothing.
    pub async fn postpone_watch(
        &self,
        customer_id: &str,
        owner: &str,
        next_poll_ms: i64,
        polls: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        reschedule(&mut tx, customer_id, owner, next_poll_ms, polls).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Customers watched now, for metrics and tests.
    pub async fn watched_customers(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM watches")
            .fetch_one(&self.pool)
            .await?)
    }
}

async fn reschedule(
    conn: &mut sqlx::AnyConnection,
    customer_id: &str,
    owner: &str,
    next_poll_ms: i64,
    polls: i64,
) -> Result<(), sqlx::Error> {
    // Only while the lease is ours: a replica that outlived its lease changes nothing.
    sqlx::query(
        "UPDATE watches SET polls = $1, next_poll_ms = $2, lease_owner = NULL, lease_until_ms = 0 \
         WHERE customer_id = $3 AND lease_owner = $4",
    )
    .bind(polls)
    .bind(next_poll_ms)
    .bind(customer_id)
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Customer `$1` polled from `$2` on (afresh when already watched), now `$3`.
pub(super) static SCHEDULE_CUSTOMER: LazyLock<String> =
    LazyLock::new(|| schedule_customer_statement("$1", "$2", "$3"));

/// The watch upsert with its arguments where the caller's statement has them: a new
/// request restarts its customer's schedule from the first wait.
pub(super) fn schedule_customer_statement(
    customer_id: &str,
    first_poll_ms: &str,
    now: &str,
) -> String {
    format!(
        "INSERT INTO watches (customer_id, polls, next_poll_ms, lease_owner, lease_until_ms, created_ms) \
         VALUES ({customer_id}, 0, {first_poll_ms}, NULL, 0, {now}) \
         ON CONFLICT (customer_id) DO UPDATE SET polls = 0, next_poll_ms = excluded.next_poll_ms"
    )
}
