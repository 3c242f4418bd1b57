-- One schema for both backends (SQLite and PostgreSQL): text IDs, times as Unix milliseconds.

-- Every qualification POST that reached the store: accepted, refused, or still being sent.
CREATE TABLE qualification_requests (
    id TEXT PRIMARY KEY,
    caller_issuer TEXT NOT NULL,
    caller_subject TEXT NOT NULL,
    caller_app TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    qualification TEXT NOT NULL,
    education_segment TEXT,
    website TEXT,
    validation_code_masked TEXT,
    ms_request_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    -- Submitted (sent, no answer yet), InReview, Approved, Denied, Refused, WatchExpired, or a
    -- vetting status Partner Center adds later.
    status TEXT NOT NULL,
    status_reason TEXT,
    http_status BIGINT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX qualification_requests_by_app ON qualification_requests (caller_app, created_ms, id);
CREATE INDEX qualification_requests_by_created ON qualification_requests (created_ms, id);
CREATE INDEX qualification_requests_by_customer ON qualification_requests (customer_id, status);

-- The status timeline of each request.
CREATE TABLE qualification_request_events (
    request_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

-- One row per customer with open requests: when to poll next, and who holds the lease.
CREATE TABLE watches (
    customer_id TEXT PRIMARY KEY,
    polls BIGINT NOT NULL,
    next_poll_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX watches_due ON watches (next_poll_ms);

CREATE TABLE webhook_subscriptions (
    id TEXT PRIMARY KEY,
    caller_app TEXT NOT NULL,
    url TEXT NOT NULL,
    -- Comma-separated event types.
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX webhook_subscriptions_by_app ON webhook_subscriptions (caller_app);

-- The outbox: one row per (event, subscription), delivered at least once.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    caller_app TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The signed body, byte for byte the same on every attempt.
    payload TEXT NOT NULL,
    -- pending, delivered or failed (dead-lettered).
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    -- Retries stop give_up_after_secs after this: the event, or the last redelivery asked.
    retry_from_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    delivered_ms BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
CREATE INDEX webhook_deliveries_by_app ON webhook_deliveries (caller_app, status, created_ms);

-- Idempotency-Key answers, shared by every replica on the same database.
CREATE TABLE idempotency_records (
    scope TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    -- running or done.
    state TEXT NOT NULL,
    http_status BIGINT,
    content_type TEXT,
    location TEXT,
    body TEXT,
    -- A running claim older than this was abandoned by a dead replica.
    expires_ms BIGINT NOT NULL
);
