//! Structured logs. One access line per request carries the request span's fields (method,
//! route, path, caller, status, latency); every other line inside the request carries only
//! its own fields plus `correlation_id` and `trace_id`, so a request's lines are cheap and
//! still joinable. Query values are never logged, only the parameter names.

use std::fmt;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::subscriber::set_global_default;
use tracing::{Event, Span, Subscriber};
use tracing_actix_web::RootSpanBuilder;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::configuration::LogFormat;
use crate::domain::{CorrelationId, TraceContext};
use crate::error::ApiError;

/// The target of the one line written when a request is answered.
pub const ACCESS_TARGET: &str = "access";
const REQUEST_SPAN: &str = "HTTP request";

/// Builds the subscriber; `RUST_LOG` wins over the configured level.
pub fn get_subscriber<Sink>(
    default_level: &str,
    format: LogFormat,
    sink: Sink,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let registry = Registry::default().with(filter).with(SpanFieldsLayer);
    match format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .event_format(CompactJson)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Pretty => {
            Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(sink)))
        }
    }
}

/// Installs the subscriber once per process; a second call is a no-op, so tests can share one.
pub fn init_subscriber(subscriber: Box<dyn tracing::Subscriber + Send + Sync>) {
    let _ = set_global_default(subscriber);
}

/// When the request arrived, for the access line's latency.
struct RequestStarted(Instant);

/// The request's root span: correlation and trace IDs, what was asked, and (once
/// authenticated) the caller. Its fields are written once, on the access line.
pub struct GatewayRootSpan;

impl RootSpanBuilder for GatewayRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request
            .extensions_mut()
            .insert(RequestStarted(Instant::now()));
        let (correlation_id, trace_id) = {
            let extensions = request.extensions();
            (
                extensions
                    .get::<CorrelationId>()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                extensions
                    .get::<TraceContext>()
                    .map(TraceContext::trace_id_hex)
                    .unwrap_or_default(),
            )
        };
        let connection = request.connection_info();
        let route = request.match_pattern();
        tracing::info_span!(
            REQUEST_SPAN,
            http.method = %request.method(),
            http.route = route.as_deref().unwrap_or("unmatched"),
            http.path = request.path(),
            http.query_params = query_parameter_names(request.query_string()).as_deref(),
            http.client_ip = connection.realip_remote_addr().unwrap_or(""),
            http.user_agent = request
                .headers()
                .get(actix_web::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            correlation_id = %correlation_id,
            trace_id = %trace_id,
            caller = tracing::field::Empty,
            caller_issuer = tracing::field::Empty,
            caller_app = tracing::field::Empty,
            caller_name = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let _entered = span.enter();
        let (status, error, latency_ms) = match outcome {
            Ok(response) => (
                response.status(),
                response.response().error(),
                response
                    .request()
                    .extensions()
                    .get::<RequestStarted>()
                    .map(|started| started.0.elapsed().as_secs_f64() * 1000.0),
            ),
            Err(error) => (error.as_response_error().status_code(), Some(error), None),
        };
        let api_error = error.and_then(|e| e.as_error::<ApiError>());
        let problem = api_error.map(ApiError::slug);
        let reason = api_error.map(ToString::to_string);
        let status = status.as_u16();
        if status >= 500 {
            tracing::warn!(target: ACCESS_TARGET, status, latency_ms, problem, reason, "answered");
        } else {
            tracing::info!(target: ACCESS_TARGET, status, latency_ms, problem, reason, "answered");
        }
    }
}

/// `a=1&b=2&a=3` → `a,b`: which parameters came, never their values (a token or a code
/// sent by mistake must not land in the logs).
fn query_parameter_names(query: &str) -> Option<String> {
    if query.is_empty() {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for (name, _) in url::form_urlencoded::parse(query.as_bytes()) {
        let name: String = name.chars().take(64).collect();
        if !names.contains(&name) && names.len() < 16 {
            names.push(name);
        }
    }
    Some(names.join(","))
}

/// A span's fields as JSON, kept in its extensions for the formatter.
struct SpanFields(Map<String, Value>);

/// Records every span's fields (and later `record`s) so lines can be written from them.
struct SpanFieldsLayer;

impl<S> Layer<S> for SpanFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut fields = Map::new();
            attrs.record(&mut JsonVisitor(&mut fields));
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut JsonVisitor(&mut fields.0));
        }
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

/// One JSON object per line: `timestamp`, `level`, `target`, the event's fields, then the
/// enclosing spans' fields; of the request span, only the IDs, except on the access line.
struct CompactJson;

impl<S, N> FormatEvent<S, N> for CompactJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::from(
                OffsetDateTime::now_utc()
                    .format(&Rfc3339)
                    .unwrap_or_default(),
            ),
        );
        line.insert("level".into(), Value::from(metadata.level().as_str()));
        line.insert("target".into(), Value::from(metadata.target()));
        event.record(&mut JsonVisitor(&mut line));
        let is_access_line = metadata.target() == ACCESS_TARGET;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(SpanFields(fields)) = extensions.get::<SpanFields>() else {
                    continue;
                };
                let request_span = span.name() == REQUEST_SPAN;
                for (name, value) in fields {
                    let wanted = !request_span
                        || is_access_line
                        || name == "correlation_id"
                        || name == "trace_id";
                    if wanted && !line.contains_key(name) {
                        line.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_parameter_names_are_kept() {
        assert_eq!(
            query_parameter_names("code=123456&Access_Token=eyJ&code=1").as_deref(),
            Some("code,Access_Token")
        );
        assert_eq!(query_parameter_names(""), None);
    }
}
