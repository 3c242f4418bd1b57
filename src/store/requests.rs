//! Qualification requests, their status timeline, and the outbox entries a change of status
//! produces, written together.

use std::sync::LazyLock;

use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::writer::Write;

use crate::auth::Caller;
use crate::domain::{
    CorrelationId, CustomerId, QualificationRequest, QualificationStatus, RequestId, VettingStatus,
};
use crate::partner_center::UpstreamError;

use super::{Store, StoreError, int, now_ms, optional_int, optional_text, text};

/// Where a request stands. Submitted and InReview are open: the watcher follows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatus {
    /// Sent to Partner Center; its answer not recorded yet.
    Submitted,
    InReview,
    Approved,
    Denied,
    /// Partner Center set the qualification without vetting (StateOwnedEntity).
    Accepted,
    /// Partner Center refused the request (its 4xx).
    Refused,
    /// No verdict: Partner Center failed or could not be reached.
    Failed,
    /// Still InReview after `watch.max_days`: no longer followed.
    WatchExpired,
    /// A vetting status Partner Center added later, passed on as it is.
    Other(String),
}

impl RequestStatus {
    pub const OPEN: [&'static str; 2] = ["Submitted", "InReview"];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(other) => other,
            known => known.label(),
        }
    }

    /// As a metric label: the known statuses, and `other` for the rest.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Submitted => "Submitted",
            Self::InReview => "InReview",
            Self::Approved => "Approved",
            Self::Denied => "Denied",
            Self::Accepted => "Accepted",
            Self::Refused => "Refused",
            Self::Failed => "Failed",
            Self::WatchExpired => "WatchExpired",
            Self::Other(_) => "other",
        }
    }

    /// What Partner Center's entry for the qualification says, with its reason when that
    /// matters; a qualification without vetting is simply set.
    pub fn of_vetting(status: &QualificationStatus) -> (Self, Option<String>) {
        match &status.vetting_status {
            Some(VettingStatus::InReview) => (Self::InReview, None),
            Some(VettingStatus::Approved) => (Self::Approved, None),
            Some(VettingStatus::Denied) => (Self::Denied, status.vetting_reason.clone()),
            Some(VettingStatus::Other(other)) => {
                (Self::Other(other.clone()), status.vetting_reason.clone())
            }
            None => (Self::Accepted, None),
        }
    }

    pub fn parse(raw: &str) -> Self {
        match raw {
            "Submitted" => Self::Submitted,
            "InReview" => Self::InReview,
            "Approved" => Self::Approved,
            "Denied" => Self::Denied,
            "Accepted" => Self::Accepted,
            "Refused" => Self::Refused,
            "Failed" => Self::Failed,
            "WatchExpired" => Self::WatchExpired,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self, Self::Submitted | Self::InReview)
    }
}

/// What is known of a request before Partner Center is called.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub id: Uuid,
    pub caller_issuer: String,
    pub caller_subject: String,
    pub caller_app: String,
    pub customer_id: String,
    pub qualification: String,
    pub education_segment: Option<String>,
    pub website: Option<String>,
    pub validation_code_masked: Option<String>,
    pub ms_request_id: String,
    pub correlation_id: String,
}

impl NewRequest {
    pub fn new(
        caller: &Caller,
        customer: CustomerId,
        request: &QualificationRequest,
        ms_request_id: RequestId,
        correlation_id: CorrelationId,
    ) -> Self {
        let (education_segment, website, validation_code_masked) = match request {
            QualificationRequest::Education { segment, website } => {
                (Some(segment.as_str().to_owned()), website.clone(), None)
            }
            QualificationRequest::GovernmentCommunityCloud { validation_code } => {
                (None, None, Some(validation_code.masked()))
            }
            QualificationRequest::StateOwnedEntity => (None, None, None),
        };
        Self {
            // Time-ordered (RFC 9562 v7): each new key lands at the end of the primary-key
            // and timeline indexes, a page SQLite already holds, not on a random page of them.
            id: Uuid::now_v7(),
            caller_issuer: caller.issuer.to_string(),
            caller_subject: caller.subject.to_string(),
            caller_app: caller.owning_app(),
            customer_id: customer.to_string(),
            qualification: request.qualification().as_str().to_owned(),
            education_segment,
            website,
            validation_code_masked,
            ms_request_id: ms_request_id.to_string(),
            correlation_id: correlation_id.to_string(),
        }
    }

    /// As [`Store::request`] would read it back just after it was recorded.
    pub fn as_stored(&self) -> StoredRequest {
        let now = now_ms();
        StoredRequest {
            id: self.id.to_string(),
            caller_issuer: self.caller_issuer.clone(),
            caller_subject: self.caller_subject.clone(),
            caller_app: self.caller_app.clone(),
            customer_id: self.customer_id.clone(),
            qualification: self.qualification.clone(),
            education_segment: self.education_segment.clone(),
            website: self.website.clone(),
            validation_code_masked: self.validation_code_masked.clone(),
            ms_request_id: self.ms_request_id.clone(),
            correlation_id: self.correlation_id.clone(),
            status: RequestStatus::Submitted,
            status_reason: None,
            http_status: None,
            created_ms: now,
            updated_ms: now,
            timeline: Vec::new(),
        }
    }
}

impl RequestOutcome {
    /// Partner Center took the request: its vetting status is the request's.
    pub fn accepted(status: &QualificationStatus, http_status: u16) -> Self {
        let (status, reason) = RequestStatus::of_vetting(status);
        Self {
            status,
            reason,
            http_status: Some(http_status),
        }
    }

    /// Partner Center refused it (Refused), certainly never saw it (Failed), or may have
    /// processed it without the gateway hearing back (still Submitted: the watch finds out).
    pub fn failed(error: &UpstreamError) -> Self {
        use UpstreamError as U;
        let http_status = error.upstream_status();
        let (status, reason) = match error {
            U::Rejected {
                status,
                description,
                code,
            } if error.is_verdict() => (
                RequestStatus::Refused,
                Some(
                    description
                        .clone()
                        .or_else(|| code.clone())
                        .unwrap_or_else(|| format!("Partner Center answered {status}")),
                ),
            ),
            U::Timeout
            | U::DeadlineExceeded
            | U::AnswerLost { .. }
            | U::ServerError { .. }
            | U::InvalidResponse { .. } => (
                RequestStatus::Submitted,
                Some(format!(
                    "no clear answer from Partner Center ({error}); the watch will find out"
                )),
            ),
            other => (RequestStatus::Failed, Some(other.to_string())),
        };
        Self {
            status,
            reason,
            http_status,
        }
    }
}

/// Partner Center's answer to the POST, as the request's next status.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    pub status: RequestStatus,
    pub reason: Option<String>,
    /// Partner Center's status, when it answered.
    pub http_status: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct StatusEvent {
    pub status: String,
    pub reason: Option<String>,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub id: String,
    pub caller_issuer: String,
    pub caller_subject: String,
    pub caller_app: String,
    pub customer_id: String,
    pub qualification: String,
    pub education_segment: Option<String>,
    pub website: Option<String>,
    pub validation_code_masked: Option<String>,
    pub ms_request_id: String,
    pub correlation_id: String,
    pub status: RequestStatus,
    pub status_reason: Option<String>,
    pub http_status: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Filled by [`Store::request`] only; lists leave it empty.
    pub timeline: Vec<StatusEvent>,
}

impl StoredRequest {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: text(row, "id")?,
            caller_issuer: text(row, "caller_issuer")?,
            caller_subject: text(row, "caller_subject")?,
            caller_app: text(row, "caller_app")?,
            customer_id: text(row, "customer_id")?,
            qualification: text(row, "qualification")?,
            education_segment: optional_text(row, "education_segment")?,
            website: optional_text(row, "website")?,
            validation_code_masked: optional_text(row, "validation_code_masked")?,
            ms_request_id: text(row, "ms_request_id")?,
            correlation_id: text(row, "correlation_id")?,
            status: RequestStatus::parse(&text(row, "status")?),
            status_reason: optional_text(row, "status_reason")?,
            http_status: optional_int(row, "http_status")?,
            created_ms: int(row, "created_ms")?,
            updated_ms: int(row, "updated_ms")?,
            timeline: Vec::new(),
        })
    }
}

/// Filters of the history listing; `None` means any.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    /// Only this app's requests (everyone but auditors).
    pub caller_app: Option<String>,
    pub customer_id: Option<String>,
    pub status: Option<String>,
    pub since_ms: Option<i64>,
    /// Strictly older than this (created, id): the page before began there.
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

impl ListQuery {
    /// The WHERE clause of the filters given, and only those, with how many arguments it
    /// numbered, in the order [`Store::requests`] binds them. A filter written as
    /// `($1 IS NULL OR ...)` keeps the planner off the indexes: SQLite then scanned every
    /// request, newest first, for a page of one app's.
    fn conditions(&self) -> (String, usize) {
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if self.caller_app.is_some() {
            conditions.push(format!("caller_app = ${}", next()));
        }
        if self.customer_id.is_some() {
            conditions.push(format!("customer_id = ${}", next()));
        }
        if self.status.is_some() {
            conditions.push(format!("status = ${}", next()));
        }
        if self.since_ms.is_some() {
            conditions.push(format!("created_ms >= ${}", next()));
        }
        if self.before.is_some() {
            let (ms, id) = (next(), next());
            conditions.push(format!("(created_ms, id) < (${ms}, ${id})"));
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        (clause, n)
    }
}

pub struct Page {
    pub items: Vec<StoredRequest>,
    /// Where the next page starts, when there may be one.
    pub next: Option<(i64, String)>,
}

pub(super) const REQUEST_COLUMNS: &str = "id, caller_issuer, caller_subject, caller_app, customer_id, qualification, \
     education_segment, website, validation_code_masked, ms_request_id, correlation_id, status, \
     status_reason, http_status, created_ms, updated_ms";

impl Store {
    /// Records a request about to be sent, and makes sure its customer is watched: if the
    /// gateway dies before Partner Center's answer is recorded, the watcher still finds out.
    pub async fn record_submitted(
        &self,
        request: &NewRequest,
        first_poll_ms: i64,
    ) -> Result<(), StoreError> {
        if let Some(writer) = &self.writer {
            return writer
                .write(Write::Submitted {
                    request: request.clone(),
                    first_poll_ms,
                })
                .await;
        }
        // PostgreSQL (SQLite always has its writer): INSERT_REQUEST's `$1`…`$12`, then `$13`.
        sqlx::query(&SUBMIT_IN_ONE_STATEMENT)
            .bind(request.id.to_string())
            .bind(&request.caller_issuer)
            .bind(&request.caller_subject)
            .bind(&request.caller_app)
            .bind(&request.customer_id)
            .bind(&request.qualification)
            .bind(&request.education_segment)
            .bind(&request.website)
            .bind(&request.validation_code_masked)
            .bind(&request.ms_request_id)
            .bind(&request.correlation_id)
            .bind(now_ms())
            .bind(first_poll_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Partner Center's answer to the POST, and the notifications it calls for, at once.
    /// On SQLite it returns once queued (written behind the caller's answer; reads of the
    /// history wait for it); on PostgreSQL once committed, since the caller's next read may
    /// go to another replica.
    pub async fn record_outcome(
        &self,
        id: Uuid,
        outcome: &RequestOutcome,
        notification: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        if let Some(writer) = &self.writer {
            return writer
                .write_behind(Write::Outcome {
                    id,
                    outcome: outcome.clone(),
                    notification: notification.map(|(e, p)| (e.to_owned(), p.to_owned())),
                })
                .await;
        }
        // PostgreSQL (SQLite always has its writer).
        if notification.is_none() {
            bind_outcome(sqlx::query(&SETTLE_IN_ONE_STATEMENT), id, outcome, now_ms())
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        let mut tx = self.write().await?;
        settle(&mut tx, id, outcome, notification).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Waits for the outcomes written behind their answers (SQLite), so a read of the
    /// history sees what its caller was told.
    async fn settled(&self) -> Result<(), StoreError> {
        match &self.writer {
            Some(writer) => writer.barrier().await,
            None => Ok(()),
        }
    }

    /// One request with its timeline; `caller_app` limits it to that app's requests.
    pub async fn request(
        &self,
        id: &str,
        caller_app: Option<&str>,
    ) -> Result<Option<StoredRequest>, StoreError> {
        self.settled().await?;
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM qualification_requests WHERE id = $1 AND ($2 IS NULL OR caller_app = $2)"
        ))
        .bind(id)
        .bind(caller_app)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut request = StoredRequest::from_row(&row)?;
        let events = sqlx::query(
            "SELECT status, reason, at_ms FROM qualification_request_events WHERE request_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        request.timeline = events
            .iter()
            .map(|row| {
                Ok(StatusEvent {
                    status: text(row, "status")?,
                    reason: optional_text(row, "reason")?,
                    at_ms: int(row, "at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(Some(request))
    }

    /// Newest first, a page at a time.
    pub async fn requests(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.settled().await?;
        let (conditions, numbered) = query.conditions();
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM qualification_requests{conditions} \
             ORDER BY created_ms DESC, id DESC LIMIT ${}",
            numbered + 1
        );
        let mut select = sqlx::query(&sql);
        if let Some(app) = &query.caller_app {
            select = select.bind(app);
        }
        if let Some(customer) = &query.customer_id {
            select = select.bind(customer);
        }
        if let Some(status) = &query.status {
            select = select.bind(status);
        }
        if let Some(since) = query.since_ms {
            select = select.bind(since);
        }
        if let Some((ms, id)) = &query.before {
            select = select.bind(*ms).bind(id);
        }
        let rows = select
            .bind(i64::from(query.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut items = rows
            .iter()
            .map(StoredRequest::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > query.limit as usize;
        items.truncate(query.limit as usize);
        let next = match (more, items.last()) {
            (true, Some(last)) => Some((last.created_ms, last.id.clone())),
            _ => None,
        };
        Ok(Page { items, next })
    }
}

// The request path's statements, shared by SQLite's writer thread (which renumbers the `$n`)
// and PostgreSQL's statements below.

pub(super) const INSERT_REQUEST: &str = "INSERT INTO qualification_requests (id, caller_issuer, caller_subject, caller_app, customer_id, \
     qualification, education_segment, website, validation_code_masked, ms_request_id, correlation_id, \
     status, status_reason, http_status, created_ms, updated_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'Submitted', NULL, NULL, $12, $12)";

/// The next event of request `$1`: status `$2`, reason `$3`, at `$4`.
pub(super) const INSERT_EVENT: &str = "INSERT INTO qualification_request_events (request_id, seq, status, reason, at_ms) \
     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM qualification_request_events WHERE request_id = $1";

/// The POST's answer is the first move from Submitted; if a poll got there first, it knew
/// at least as much (and has told it): then nothing changes.
pub(super) const SETTLE_REQUEST: &str = "UPDATE qualification_requests SET status = $1, status_reason = $2, http_status = $3, \
     updated_ms = $4 WHERE id = $5 AND status = 'Submitted'";

// PostgreSQL runs a statement with data-modifying `WITH` clauses atomically on its own, so
// the request path's two writes are one round trip each there instead of a transaction's
// five (BEGIN, three statements, COMMIT), each of them holding a pool connection. SQLite
// has no such clauses (its writer thread batches instead).

/// [`INSERT_REQUEST`], its first event (a new ID has none before it) and the watch upsert,
/// with `$13` the first poll.
static SUBMIT_IN_ONE_STATEMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH request AS ({INSERT_REQUEST}), \
         event AS (INSERT INTO qualification_request_events (request_id, seq, status, reason, at_ms) \
         VALUES ($1, 1, 'Submitted', NULL, $12)) {}",
        super::watch::schedule_customer_statement("$5", "$13", "$12")
    )
});

/// [`SETTLE_REQUEST`] and, only when it moved the request, its next event.
static SETTLE_IN_ONE_STATEMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH settled AS ({SETTLE_REQUEST} RETURNING id) \
         INSERT INTO qualification_request_events (request_id, seq, status, reason, at_ms) \
         SELECT id, COALESCE((SELECT MAX(seq) FROM qualification_request_events WHERE request_id = $5), 0) + 1, \
         $1, $2, $4 FROM settled"
    )
});

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// [`SETTLE_REQUEST`]'s arguments `$1`…`$5`.
fn bind_outcome<'q>(
    query: Query<'q>,
    id: Uuid,
    outcome: &'q RequestOutcome,
    now: i64,
) -> Query<'q> {
    query
        .bind(outcome.status.as_str())
        .bind(&outcome.reason)
        .bind(outcome.http_status.map(i64::from))
        .bind(now)
        .bind(id.to_string())
}

pub(super) const CALLER_APP: &str = "SELECT caller_app FROM qualification_requests WHERE id = $1";

/// The statements of [`Store::record_outcome`], inside the caller's transaction.
pub(super) async fn settle(
    conn: &mut AnyConnection,
    id: Uuid,
    outcome: &RequestOutcome,
    notification: Option<(&str, &str)>,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let settled = bind_outcome(sqlx::query(SETTLE_REQUEST), id, outcome, now)
        .execute(&mut *conn)
        .await?;
    let id = id.to_string();
    if settled.rows_affected() == 0 {
        return Ok(());
    }
    insert_event(
        conn,
        &id,
        outcome.status.as_str(),
        outcome.reason.as_deref(),
        now,
    )
    .await?;
    if let Some((event_type, payload)) = notification {
        let app: String = sqlx::query_scalar(CALLER_APP)
            .bind(&id)
            .fetch_one(&mut *conn)
            .await?;
        super::webhooks::enqueue(conn, &app, event_type, payload, now).await?;
    }
    Ok(())
}

pub(super) async fn insert_event(
    conn: &mut AnyConnection,
    request_id: &str,
    status: &str,
    reason: Option<&str>,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_EVENT)
        .bind(request_id)
        .bind(status)
        .bind(reason)
        .bind(at_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
impl NewRequest {
    /// A request of `subject`'s for a customer of its own.
    pub(crate) fn sample(subject: &str) -> Self {
        Self {
            id: Uuid::now_v7(),
            caller_issuer: "https://issuer.example".into(),
            caller_subject: subject.into(),
            caller_app: "app".into(),
            customer_id: Uuid::new_v4().to_string(),
            qualification: "StateOwnedEntity".into(),
            education_segment: None,
            website: None,
            validation_code_masked: None,
            ms_request_id: Uuid::new_v4().to_string(),
            correlation_id: Uuid::new_v4().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PollResult, Transition};

    /// The POST's outcome is written behind its answer; a poll may move the request first.
    /// The outcome then changes nothing: the poll knew at least as much.
    #[tokio::test]
    async fn an_outcome_written_after_a_poll_moved_the_request_leaves_it_where_the_poll_put_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("store.db")).await;
        let request = NewRequest::sample("subject");
        store.record_submitted(&request, 0).await.unwrap();
        let poll = PollResult {
            transitions: vec![Transition {
                request_id: request.id.to_string(),
                caller_app: request.caller_app.clone(),
                from: RequestStatus::Submitted,
                to: RequestStatus::Approved,
                reason: None,
                notification: None,
            }],
            next_poll_ms: 0,
            polls: 1,
        };
        let moved = store
            .apply_poll(&request.customer_id, "this-replica", &poll)
            .await
            .unwrap();
        assert_eq!(moved, 1);
        let late = RequestOutcome {
            status: RequestStatus::InReview,
            reason: None,
            http_status: Some(201),
        };
        store.record_outcome(request.id, &late, None).await.unwrap();
        let stored = store
            .request(&request.id.to_string(), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.status, RequestStatus::Approved);
        let timeline: Vec<&str> = stored.timeline.iter().map(|e| e.status.as_str()).collect();
        assert_eq!(timeline, ["Submitted", "Approved"]);
        store.close().await;
    }

    /// Nobody waits for an outcome written behind its answer, so its failure is counted
    /// (`store_failures`), not only logged; the request stays Submitted, for the watch.
    #[tokio::test]
    async fn an_outcome_that_cannot_be_written_behind_its_answer_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let failures = prometheus_client::metrics::counter::Counter::default();
        let store =
            Store::open_sqlite_counting(&dir.path().join("store.db"), failures.clone()).await;
        let request = NewRequest::sample("subject");
        store.record_submitted(&request, 0).await.unwrap();
        // The outcome's event then has nowhere to go: its statement fails on the writer.
        sqlx::query("DROP TABLE qualification_request_events")
            .execute(&store.pool)
            .await
            .unwrap();
        let outcome = RequestOutcome {
            status: RequestStatus::InReview,
            reason: None,
            http_status: Some(201),
        };
        store
            .record_outcome(request.id, &outcome, None)
            .await
            .unwrap();
        // Behind the barrier every read of the history waits at.
        store.settled().await.unwrap();
        assert_eq!(failures.get(), 1);
        let status: String =
            sqlx::query_scalar("SELECT status FROM qualification_requests WHERE id = $1")
                .bind(request.id.to_string())
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(status, "Submitted");
        store.close().await;
    }

    /// Each page of the history is an index range, not a scan of every request.
    #[tokio::test]
    async fn a_history_page_is_read_through_the_index_of_its_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("store.db")).await;
        let app = || Some("app".to_owned());
        let cases = [
            (ListQuery::default(), "qualification_requests_by_created"),
            (
                ListQuery {
                    caller_app: app(),
                    ..ListQuery::default()
                },
                "qualification_requests_by_app (caller_app=?)",
            ),
            (
                ListQuery {
                    caller_app: app(),
                    before: Some((1, "id".to_owned())),
                    ..ListQuery::default()
                },
                "qualification_requests_by_app (caller_app=? AND (created_ms,id)<(?,?))",
            ),
            (
                ListQuery {
                    customer_id: Some("customer".to_owned()),
                    status: Some("InReview".to_owned()),
                    ..ListQuery::default()
                },
                "qualification_requests_by_customer (customer_id=? AND status=?)",
            ),
            (
                ListQuery {
                    since_ms: Some(1),
                    ..ListQuery::default()
                },
                "qualification_requests_by_created (created_ms>?)",
            ),
        ];
        for (query, index) in cases {
            let (conditions, numbered) = query.conditions();
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT id FROM qualification_requests{conditions} \
                 ORDER BY created_ms DESC, id DESC LIMIT ${}",
                numbered + 1
            );
            // The plan does not depend on the values; the count of them must be right.
            let mut explain = sqlx::query(&sql);
            for _ in 0..=numbered {
                explain = explain.bind(1_i64);
            }
            let plan: Vec<String> = explain
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|row| text(row, "detail").unwrap())
                .collect();
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{query:?}: {plan:?}"
            );
        }
        store.close().await;
    }
}
