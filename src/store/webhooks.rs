//! Webhook subscriptions and the delivery outbox: an event becomes one delivery row per
//! subscription, in the transaction that changed the request; workers lease due rows.

use sqlx::any::AnyRow;

use super::{Store, StoreError, int, now_ms, optional_int, optional_text, text};

#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub id: String,
    pub caller_app: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_by: String,
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub caller_app: String,
    pub url: String,
    pub events: Vec<String>,
    /// Never shown again after the subscription is created.
    pub secret: String,
    pub created_ms: i64,
}

impl Subscription {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: text(row, "id")?,
            caller_app: text(row, "caller_app")?,
            url: text(row, "url")?,
            events: text(row, "events")?
                .split(',')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
            secret: text(row, "secret")?,
            created_ms: int(row, "created_ms")?,
        })
    }
}

/// A delivery this replica may attempt now.
#[derive(Debug, Clone)]
pub struct LeasedDelivery {
    pub id: String,
    pub event_type: String,
    pub payload: String,
    pub attempts: i64,
    pub created_ms: i64,
    pub retry_from_ms: i64,
    /// `None` when the subscription was deleted since.
    pub subscription: Option<Subscription>,
}

#[derive(Debug, Clone)]
pub struct StoredDelivery {
    pub id: String,
    pub subscription_id: String,
    pub event_type: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub delivered_ms: Option<i64>,
}

impl StoredDelivery {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: text(row, "id")?,
            subscription_id: text(row, "subscription_id")?,
            event_type: text(row, "event_type")?,
            payload: text(row, "payload")?,
            status: text(row, "status")?,
            attempts: int(row, "attempts")?,
            next_attempt_ms: int(row, "next_attempt_ms")?,
            last_status: optional_int(row, "last_status")?,
            last_error: optional_text(row, "last_error")?,
            created_ms: int(row, "created_ms")?,
            updated_ms: int(row, "updated_ms")?,
            delivered_ms: optional_int(row, "delivered_ms")?,
        })
    }
}

#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub caller_app: String,
    pub status: Option<String>,
    pub subscription_id: Option<String>,
    pub limit: u32,
}

const SUBSCRIPTION_COLUMNS: &str = "id, caller_app, url, events, secret, created_ms";
const DELIVERY_COLUMNS: &str = "id, subscription_id, event_type, payload, status, attempts, next_attempt_ms, \
     last_status, last_error, created_ms, updated_ms, delivered_ms";

impl Store {
    /// Adds a subscription unless its app already holds `limit` of them (`Ok(None)`).
    pub async fn create_subscription(
        &self,
        new: &NewSubscription,
        limit: u64,
    ) -> Result<Option<Subscription>, StoreError> {
        let now = now_ms();
        let mut tx = self.write().await?;
        let held: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_subscriptions WHERE caller_app = $1")
                .bind(&new.caller_app)
                .fetch_one(&mut *tx)
                .await?;
        if held as u64 >= limit {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO webhook_subscriptions (id, caller_app, url, events, secret, created_by, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&new.id)
        .bind(&new.caller_app)
        .bind(&new.url)
        .bind(new.events.join(","))
        .bind(&new.secret)
        .bind(&new.created_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Subscription {
            id: new.id.clone(),
            caller_app: new.caller_app.clone(),
            url: new.url.clone(),
            events: new.events.clone(),
            secret: new.secret.clone(),
            created_ms: now,
        }))
    }

    pub async fn subscriptions(&self, caller_app: &str) -> Result<Vec<Subscription>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(subscriptions_where(&mut conn, "caller_app", caller_app).await?)
    }

    /// Every subscription whose callback is `url`, whoever owns it (the sandbox receiver
    /// checks signatures with their secrets).
    pub async fn subscriptions_to(&self, url: &str) -> Result<Vec<Subscription>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(subscriptions_where(&mut conn, "url", url).await?)
    }

    pub async fn subscription(
        &self,
        caller_app: &str,
        id: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE caller_app = $1 AND id = $2"
        ))
        .bind(caller_app)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(Subscription::from_row).transpose()?)
    }

    /// Removes a subscription; its pending deliveries are dropped when next attempted.
    pub async fn delete_subscription(
        &self,
        caller_app: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let deleted =
            sqlx::query("DELETE FROM webhook_subscriptions WHERE caller_app = $1 AND id = $2")
                .bind(caller_app)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Claims up to `limit` deliveries due now.
    pub async fn lease_due_deliveries(
        &self,
        owner: &str,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        let now = now_ms();
        let mut tx = self.write().await?;
        let rows = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_until_ms = $2 WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_ms <= $3 \
              AND lease_until_ms <= $3 ORDER BY next_attempt_ms LIMIT $4{}) \
             RETURNING id, subscription_id, event_type, payload, attempts, created_ms, retry_from_ms",
            self.backend.skip_locked()
        ))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut leased = Vec::with_capacity(rows.len());
        for row in &rows {
            let subscription_id = text(row, "subscription_id")?;
            let subscription = sqlx::query(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = $1"
            ))
            .bind(&subscription_id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(Subscription::from_row)
            .transpose()?;
            leased.push(LeasedDelivery {
                id: text(row, "id")?,
                event_type: text(row, "event_type")?,
                payload: text(row, "payload")?,
                attempts: int(row, "attempts")?,
                created_ms: int(row, "created_ms")?,
                retry_from_ms: int(row, "retry_from_ms")?,
                subscription,
            });
        }
        tx.commit().await?;
        Ok(leased)
    }

    /// Records one attempt: delivered, to be retried at `next_attempt_ms`, or (`None`)
    /// dead-lettered.
    pub async fn record_attempt(
        &self,
        id: &str,
        owner: &str,
        delivered: bool,
        status: Option<u16>,
        error: Option<&str>,
        next_attempt_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let new_status = match (delivered, next_attempt_ms) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_attempt_ms = $2, \
             last_status = $3, last_error = $4, updated_ms = $5, delivered_ms = $6, lease_owner = NULL, lease_until_ms = 0 \
             WHERE id = $7 AND lease_owner = $8",
        )
        .bind(new_status)
        .bind(next_attempt_ms.unwrap_or(now))
        .bind(status.map(i64::from))
        .bind(error)
        .bind(now)
        .bind(delivered.then_some(now))
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The app's deliveries, newest first.
    pub async fn deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE caller_app = $1 \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR subscription_id = $3) \
             ORDER BY created_ms DESC, id DESC LIMIT $4"
        ))
        .bind(&filter.caller_app)
        .bind(&filter.status)
        .bind(&filter.subscription_id)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(StoredDelivery::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Puts a delivery back in the queue, due now, with a fresh retry window.
    pub async fn redeliver(
        &self,
        caller_app: &str,
        id: &str,
    ) -> Result<Option<StoredDelivery>, StoreError> {
        let now = now_ms();
        let mut tx = self.write().await?;
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_ms = $1, retry_from_ms = $1, \
             updated_ms = $1, lease_owner = NULL, lease_until_ms = 0 WHERE caller_app = $2 AND id = $3",
        )
        .bind(now)
        .bind(caller_app)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(StoredDelivery::from_row(&row)?))
    }
}

/// Subscriptions whose `column` (a fixed column name, never input) equals `value`, oldest first.
async fn subscriptions_where(
    conn: &mut sqlx::AnyConnection,
    column: &'static str,
    value: &str,
) -> Result<Vec<Subscription>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE {column} = $1 ORDER BY created_ms, id"
    ))
    .bind(value)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(Subscription::from_row)
    .collect()
}

/// A pending delivery `$1` to subscription `$2` of app `$3`: event `$4`, body `$5`, due now (`$6`).
pub(super) const INSERT_DELIVERY: &str = "INSERT INTO webhook_deliveries (id, subscription_id, caller_app, event_type, payload, status, attempts, \
     next_attempt_ms, retry_from_ms, lease_owner, lease_until_ms, last_status, last_error, created_ms, updated_ms, delivered_ms) \
     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, NULL, 0, NULL, NULL, $6, $6, NULL)";

/// The subscriptions of app `$1` with the events each asked for, oldest first.
pub(super) const SUBSCRIBED_EVENTS: &str =
    "SELECT id, events FROM webhook_subscriptions WHERE caller_app = $1 ORDER BY created_ms, id";

/// Whether a subscription's stored `events` (comma-separated) include `event_type`.
pub(super) fn subscribes(events: &str, event_type: &str) -> bool {
    events.split(',').any(|e| e == event_type)
}

/// The ID of a delivery (and of its webhook-id header): `msg_` and 32 hex digits,
/// time-ordered like the requests' IDs.
pub(super) fn delivery_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

/// One delivery row per subscription of `caller_app` that asked for `event_type`.
pub(super) async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    caller_app: &str,
    event_type: &str,
    payload: &str,
    now: i64,
) -> Result<usize, sqlx::Error> {
    let mut enqueued = 0;
    for subscription in subscriptions_where(conn, "caller_app", caller_app).await? {
        if !subscription.events.iter().any(|e| e == event_type) {
            continue;
        }
        sqlx::query(INSERT_DELIVERY)
            .bind(delivery_id())
            .bind(&subscription.id)
            .bind(caller_app)
            .bind(event_type)
            .bind(payload)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        enqueued += 1;
    }
    Ok(enqueued)
}
