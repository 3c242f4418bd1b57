use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::breaker::{BreakerSettings, CircuitBreaker, Outcome};
use super::wire::{WireError, WireQualification, WireQualificationList, WireValidationCodeList};
use super::{AccessToken, PerThreadClient, TokenProvider, UpstreamError};
use crate::configuration::{PartnerCenterSettings, UpstreamContract};
use crate::domain::{
    CorrelationId, CustomerId, PartnerValidationCode, Qualification, QualificationRequest,
    QualificationStatus, RequestId, TRACEPARENT, TRACESTATE, TraceContext,
};
use crate::metrics::Metrics;

const MS_CORRELATION_ID: HeaderName = HeaderName::from_static("ms-correlationid");
const MS_REQUEST_ID: HeaderName = HeaderName::from_static("ms-requestid");
const MS_CONTRACT_VERSION: HeaderName = HeaderName::from_static("ms-contract-version");
const X_LOCALE: HeaderName = HeaderName::from_static("x-locale");
// Names checked once, here, not on every call (a `&str` name is parsed at each insert).
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);
const TRACESTATE_HEADER: HeaderName = HeaderName::from_static(TRACESTATE);

/// The IDs of one logical Partner Center call. Retries of that call reuse them.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    pub correlation_id: CorrelationId,
    pub request_id: RequestId,
    /// The caller's trace, continued in Partner Center's `traceparent`.
    pub trace: TraceContext,
    /// One attempt only: the vetting watch reschedules a failed poll rather than retry it
    /// (and a 429 pauses it for Partner Center's Retry-After).
    pub single_attempt: bool,
}

impl UpstreamCall {
    pub fn new(correlation_id: CorrelationId, trace: TraceContext) -> Self {
        Self {
            correlation_id,
            request_id: RequestId::new(),
            trace,
            single_attempt: false,
        }
    }

    /// A background poll: its own IDs and trace, one attempt.
    pub fn background_poll() -> Self {
        Self {
            single_attempt: true,
            ..Self::new(CorrelationId::new(), TraceContext::new())
        }
    }
}

pub struct PartnerCenterClient {
    http: PerThreadClient,
    /// Parsed once (validated at start): each call only sets its path.
    base_url: url::Url,
    contract: UpstreamContract,
    locale: HeaderValue,
    tokens: Arc<TokenProvider>,
    request_timeout: Duration,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
    /// Bounds the calls in flight, so a slow Partner Center cannot tie up every worker.
    bulkhead: Semaphore,
    bulkhead_wait: Duration,
    metrics: Metrics,
}

/// A retry that would leave less than this for the attempt itself is not made: the caller
/// gets the informative answer (429 with Retry-After, say) rather than a sure timeout.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(500);

/// When to try a logical call again, and how long to wait first.
#[derive(Debug, Clone)]
struct RetryPolicy {
    max_retries: usize,
    base_delay: Duration,
    max_delay: Duration,
    /// For the whole logical call, every attempt and wait included.
    deadline: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with jitter, so replicas retrying together spread out.
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_retries)
    }

    /// The backoff's next wait, or Partner Center's `Retry-After` when longer (never at once);
    /// `None` (give up and answer) when retries are spent or the wait would pass the deadline.
    fn wait_before_retry(
        &self,
        error: &UpstreamError,
        backoff: Option<Duration>,
        deadline: Instant,
    ) -> Option<Duration> {
        // backon's jitter adds up to the delay again: keep the cap a cap.
        let backoff = backoff?.min(self.max_delay);
        let wait = error
            .retry_after()
            .map_or(backoff, |asked| asked.max(backoff));
        // Worth it only if an attempt still has time to run after the wait.
        let remaining = deadline.saturating_duration_since(Instant::now());
        (wait.saturating_add(MIN_ATTEMPT_TIME) < remaining).then_some(wait)
    }
}

/// What one logical call sends, the same on every attempt.
struct Outgoing<'a, B> {
    /// Names the call in metrics: `create_qualification`, say.
    operation: &'static str,
    method: Method,
    path: &'a str,
    query: Option<(&'a str, &'a str)>,
    body: Option<&'a B>,
    call: UpstreamCall,
}

/// The current contract's body: everything in JSON. The legacy contract moves the code to `?code=`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateQualificationBody<'a> {
    qualification: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    education_segment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    website: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_code: Option<&'a str>,
}

impl PartnerCenterClient {
    pub fn new(
        http: PerThreadClient,
        settings: &PartnerCenterSettings,
        tokens: Arc<TokenProvider>,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let base_url = url::Url::parse(settings.base_url.trim_end_matches('/'))
            .map_err(|e| anyhow::anyhow!("partner_center.base_url {:?}: {e}", settings.base_url))?;
        Ok(Self {
            http,
            base_url,
            contract: settings.contract,
            locale: HeaderValue::from_str(&settings.locale)
                .unwrap_or_else(|_| HeaderValue::from_static("en-US")),
            tokens,
            request_timeout: settings.request_timeout(),
            retry: RetryPolicy {
                max_retries: settings.max_retries,
                base_delay: Duration::from_millis(settings.retry_base_delay_ms),
                max_delay: Duration::from_millis(settings.retry_max_delay_ms),
                deadline: Duration::from_millis(settings.call_deadline_ms),
            },
            breaker: CircuitBreaker::new(BreakerSettings {
                failure_ratio: settings.breaker_failure_ratio,
                window: settings.breaker_window,
                min_calls: settings.breaker_min_calls,
                open_for: Duration::from_millis(settings.breaker_open_ms),
            }),
            bulkhead: Semaphore::new(settings.max_concurrent_calls),
            bulkhead_wait: Duration::from_millis(settings.bulkhead_wait_ms),
            metrics,
        })
    }

    pub async fn create_qualification(
        &self,
        customer: CustomerId,
        request: &QualificationRequest,
        call: UpstreamCall,
    ) -> Result<(QualificationStatus, StatusCode), UpstreamError> {
        let (segment, website, code) = match request {
            QualificationRequest::Education { segment, website } => {
                (Some(segment.as_str()), website.as_deref(), None)
            }
            QualificationRequest::GovernmentCommunityCloud { validation_code } => {
                (None, None, Some(validation_code.as_str()))
            }
            QualificationRequest::StateOwnedEntity => (None, None, None),
        };
        let (body_code, query_code) = match self.contract {
            UpstreamContract::Current => (code, None),
            UpstreamContract::Legacy => (None, code),
        };
        let body = CreateQualificationBody {
            qualification: request.qualification().as_str(),
            education_segment: segment,
            website,
            validation_code: body_code,
        };
        let path = format!("/v1/customers/{customer}/qualifications");
        let (status, answer): (_, Option<WireQualification>) = self
            .send(
                "create_qualification",
                Method::POST,
                &path,
                query_code.map(|c| ("code", c)),
                Some(&body),
                call,
            )
            .await?;
        let asked_for: Qualification = request.qualification().into();
        let qualification = answer
            .and_then(|a| a.into_domain(Some(asked_for.clone())))
            .unwrap_or(QualificationStatus {
                qualification: asked_for,
                vetting_status: None,
                vetting_reason: None,
                vetting_create_date: None,
            });
        Ok((qualification, status))
    }

    pub async fn list_qualifications(
        &self,
        customer: CustomerId,
        call: UpstreamCall,
    ) -> Result<Vec<QualificationStatus>, UpstreamError> {
        let path = format!("/v1/customers/{customer}/qualifications");
        let (_, answer): (_, Option<WireQualificationList>) = self
            .send::<(), _>("list_qualifications", Method::GET, &path, None, None, call)
            .await?;
        Ok(answer
            .map(WireQualificationList::into_domain)
            .unwrap_or_default())
    }

    pub async fn list_validation_codes(
        &self,
        call: UpstreamCall,
    ) -> Result<Vec<PartnerValidationCode>, UpstreamError> {
        let (_, answer): (_, Option<WireValidationCodeList>) = self
            .send::<(), _>(
                "list_validation_codes",
                Method::GET,
                "/v1/customers/all/validations",
                None,
                None,
                call,
            )
            .await?;
        Ok(answer
            .map(WireValidationCodeList::into_domain)
            .unwrap_or_default())
    }

    /// One logical call: attempts with the same `MS-RequestId` until one succeeds, a verdict
    /// comes back, the retries run out or the deadline would pass. `None` is a success
    /// without a body.
    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        query: Option<(&str, &str)>,
        body: Option<&B>,
        call: UpstreamCall,
    ) -> Result<(StatusCode, Option<T>), UpstreamError> {
        let span = tracing::info_span!(
            "partner_center",
            http.method = %method,
            path,
            ms_request_id = %call.request_id,
            ms_correlation_id = %call.correlation_id,
            attempts = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        let deadline = Instant::now() + self.retry.deadline;
        let request_id = call.request_id;
        let retry_transient = !call.single_attempt;
        let attempts = AtomicU32::new(0);
        let token_refreshed = AtomicBool::new(false);
        let outgoing = Outgoing {
            operation,
            method,
            path,
            query,
            body,
            call,
        };
        let attempt = || {
            let number = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            self.attempt(&outgoing, deadline, number)
        };
        let result = attempt
            .retry(self.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|e: &UpstreamError| {
                (retry_transient && e.is_transient()) || (e.is_unauthorized() && !token_refreshed.load(Ordering::Relaxed))
            })
            .adjust(|e, backoff| {
                if e.is_unauthorized() {
                    // Our token was refused and dropped: one more try, with a fresh one.
                    token_refreshed.store(true, Ordering::Relaxed);
                    return Some(Duration::ZERO);
                }
                self.retry.wait_before_retry(e, backoff, deadline)
            })
            .notify(|e, wait| {
                Metrics::count(&self.metrics.upstream_retries, e.metric_reason());
                tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "retrying the Partner Center call with the same MS-RequestId");
            })
            .instrument(span.clone())
            .await;
        let attempts = attempts.load(Ordering::Relaxed);
        span.record("attempts", attempts);
        // On the request's own span, so its one access line says what Partner Center did
        // (one call to the subscriber for the three).
        let upstream_status = match &result {
            Ok((status, _)) => Some(status.as_u16()),
            Err(error) => error.upstream_status(),
        };
        let request_span = tracing::Span::current();
        tracing::record_all!(
            request_span,
            ms_request_id = %request_id,
            upstream_attempts = attempts,
            upstream_status = upstream_status
        );
        result
    }

    /// One attempt of a logical call, if the circuit breaker and the bulkhead allow it.
    async fn attempt<B: Serialize, T: DeserializeOwned>(
        &self,
        outgoing: &Outgoing<'_, B>,
        deadline: Instant,
        number: u32,
    ) -> Result<(StatusCode, Option<T>), UpstreamError> {
        // The token first: a slot is for talking to Partner Center, not for waiting on Entra.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let token = tokio::time::timeout(remaining, self.tokens.get())
            .await
            .map_err(|_| UpstreamError::DeadlineExceeded)?
            .map_err(UpstreamError::Token)?;
        // The slot wait is bounded by the call's deadline as well as the bulkhead's.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let waiting_since = Instant::now();
        let slot = tokio::time::timeout(self.bulkhead_wait.min(remaining), self.bulkhead.acquire())
            .await
            .ok()
            .and_then(Result::ok);
        self.metrics
            .bulkhead_wait
            .observe(waiting_since.elapsed().as_secs_f64());
        let Some(_slot) = slot else {
            if remaining < self.bulkhead_wait {
                Metrics::count(&self.metrics.upstream_refusals, "deadline");
                return Err(UpstreamError::DeadlineExceeded);
            }
            Metrics::count(&self.metrics.upstream_refusals, "bulkhead_full");
            return Err(UpstreamError::Busy);
        };
        // The breaker's permit last, right before the attempt: a half-open probe is not held
        // while it waits for a token or a slot.
        let permit = self.breaker.admit().map_err(|wait| {
            Metrics::count(&self.metrics.upstream_refusals, "circuit_open");
            UpstreamError::CircuitOpen {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })?;
        let result = self.exchange(outgoing, &token, deadline, number).await;
        permit.record(breaker_outcome(&result));
        if matches!(&result, Err(e) if e.is_unauthorized()) {
            // That token was refused (revoked, consent changed): do not keep using it.
            self.tokens.invalidate(&token).await;
        }
        result
    }

    /// One HTTP exchange, cut short by the call's deadline if that comes first.
    async fn exchange<B: Serialize, T: DeserializeOwned>(
        &self,
        outgoing: &Outgoing<'_, B>,
        token: &AccessToken,
        deadline: Instant,
        number: u32,
    ) -> Result<(StatusCode, Option<T>), UpstreamError> {
        let Outgoing {
            operation,
            method,
            path,
            query,
            body,
            call,
        } = outgoing;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            Metrics::count(&self.metrics.upstream_refusals, "deadline");
            return Err(UpstreamError::DeadlineExceeded);
        }
        let cut_short = remaining < self.request_timeout;
        let mut request = self
            .http
            .get()
            .request(method.clone(), self.url_for(path))
            .headers(self.headers(call, token.authorization_header()))
            .timeout(self.request_timeout.min(remaining));
        if let Some(query) = query {
            request = request.query(&[*query]);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let result = request.send().await;
        let failed = |error: reqwest::Error| {
            let error = UpstreamError::from_transport(error, cut_short);
            self.metrics.record_upstream(
                operation,
                error.metric_reason().to_owned(),
                started.elapsed(),
            );
            tracing::warn!(attempt = number, elapsed_ms = started.elapsed().as_millis() as u64, %error, "Partner Center call failed");
            error
        };
        let response = result.map_err(failed)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = response.bytes().await.map_err(failed)?;
        self.metrics
            .record_upstream(operation, status.as_str().to_owned(), started.elapsed());
        // Debug only: the request's access line carries the outcome once.
        tracing::debug!(
            attempt = number,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Partner Center answered {status}"
        );
        tracing::Span::current().record("status", status.as_u16());
        interpret(status, retry_after, &bytes).map(|answer| (status, answer))
    }

    /// The base URL (with any path prefix it has) followed by `path`.
    fn url_for(&self, path: &str) -> url::Url {
        let mut url = self.base_url.clone();
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }

    /// `closed`, `open` or `half-open`.
    pub fn circuit_state(&self) -> &'static str {
        self.breaker.state_name()
    }

    fn headers(&self, call: &UpstreamCall, authorization: HeaderValue) -> HeaderMap {
        // Room for all of them up front: no regrowth (and rehash) while they go in.
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(MS_CONTRACT_VERSION, HeaderValue::from_static("v1"));
        headers.insert(
            MS_CORRELATION_ID,
            guid_header(call.correlation_id.as_uuid()),
        );
        headers.insert(MS_REQUEST_ID, guid_header(call.request_id.as_uuid()));
        headers.insert(X_LOCALE, self.locale.clone());
        if let Ok(traceparent) =
            HeaderValue::try_from(crate::telemetry::outgoing_traceparent(&call.trace))
        {
            headers.insert(TRACEPARENT_HEADER, traceparent);
        }
        if let Some(state) = call.trace.tracestate()
            && let Ok(state) = HeaderValue::from_str(state)
        {
            headers.insert(TRACESTATE_HEADER, state);
        }
        headers
    }
}

/// What an attempt says about Partner Center's health.
fn breaker_outcome<T>(result: &Result<T, UpstreamError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Answered,
        // Every 5xx (501 and 507 too, though not worth a retry), and every broken exchange.
        Err(
            UpstreamError::ServerError { .. }
            | UpstreamError::Timeout
            | UpstreamError::Unreachable { .. }
            | UpstreamError::AnswerLost { .. },
        ) => Outcome::Failed,
        Err(UpstreamError::Rejected { .. } | UpstreamError::InvalidResponse { .. }) => {
            Outcome::Answered
        }
        Err(_) => Outcome::Neutral,
    }
}

fn guid_header(uuid: uuid::Uuid) -> HeaderValue {
    let mut buffer = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(uuid.hyphenated().encode_lower(&mut buffer))
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-0000-0000-000000000000"))
}

fn interpret<T: DeserializeOwned>(
    status: StatusCode,
    retry_after: Option<u64>,
    body: &[u8],
) -> Result<Option<T>, UpstreamError> {
    if status.is_success() {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        return serde_json::from_slice(body).map(Some).map_err(|e| {
            UpstreamError::InvalidResponse {
                reason: format!("{status} with a body that does not fit: {e}"),
            }
        });
    }
    let error = WireError::parse(body);
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(UpstreamError::Throttled {
            retry_after_secs: retry_after.or_else(|| error.retry_after_secs()),
        });
    }
    if status.is_client_error() {
        return Err(UpstreamError::Rejected {
            status,
            code: error.code(),
            description: error.description(),
        });
    }
    if status.is_server_error() {
        return Err(UpstreamError::ServerError {
            status,
            retry_after_secs: retry_after.or_else(|| error.retry_after_secs()),
            description: error.description(),
        });
    }
    Err(UpstreamError::InvalidResponse {
        reason: format!("unexpected status {status}"),
    })
}

/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(super) fn parse_retry_after(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let wait = when
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Some(wait.as_secs_f64().ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("57"), Some(57));
        let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(120);
        let wait = parse_retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!((118..=121).contains(&wait), "{wait}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
