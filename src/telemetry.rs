//! Structured logs and trace export. One access line per request carries the request span's
//! fields (method, route, path, caller, status, latency); every other line inside the request
//! carries only its own fields plus `correlation_id` and `trace_id`, so a request's lines are
//! cheap and still joinable. Query values are never logged, only the parameter names.
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over OTLP/HTTP, in the
//! caller's trace.

use std::fmt;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use serde_json::Value;
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

/// Builds the subscriber, logs only; `RUST_LOG` wins over the configured level.
pub fn get_subscriber<Sink>(
    default_level: &str,
    format: LogFormat,
    sink: Sink,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    get_subscriber_with_export(default_level, format, sink, None)
}

/// OTLP/HTTP span export, configured by the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and `OTEL_SERVICE_NAME`; off when neither endpoint
/// is set. Build it before the async runtime starts: its HTTP client is a blocking one, run
/// on the exporter's own thread.
pub struct TraceExport {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl TraceExport {
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let configured = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
        if !configured {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the OTLP span exporter: {e}"))?;
        let service = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| "partner-gateway".into());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build();
        Ok(Some(Self { provider }))
    }

    /// Sends what is still buffered; call once the server has stopped.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("partner-gateway: OTLP export did not shut down cleanly: {error}");
        }
    }
}

/// The subscriber, exporting spans too when `export` is given.
pub fn get_subscriber_with_export<Sink>(
    default_level: &str,
    format: LogFormat,
    sink: Sink,
    export: Option<&TraceExport>,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    use opentelemetry::trace::TracerProvider as _;
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| default_level.to_owned());
    // Per-target levels are a static filter, with no per-span bookkeeping on the hot path;
    // only directives that need it (span or field filters) get an EnvFilter.
    let filter: Box<dyn Layer<Registry> + Send + Sync> =
        match directives.parse::<tracing_subscriber::filter::Targets>() {
            Ok(targets) => Box::new(targets),
            Err(_) => Box::new(EnvFilter::new(&directives)),
        };
    let otel = export.map(|export| {
        tracing_opentelemetry::layer().with_tracer(export.provider.tracer("partner-gateway"))
    });
    let registry = Registry::default()
        .with(filter)
        .with(otel)
        .with(SpanFieldsLayer);
    match format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .event_format(CompactJson)
                    .fmt_fields(NoFields)
                    .with_ansi(false)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Pretty => {
            Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(sink)))
        }
    }
}

/// Where the lines go: a thread of its own writes them, so a slow log pipe never stalls a
/// request. None is dropped (audit records are among them): a full queue waits instead.
/// That thread writes what has queued in one go, at most every [`LOG_WRITE_PACE`]: under
/// load one write carries dozens of lines (instead of a write, and a wake-up, per line),
/// and an idle gateway's line still goes out at once.
pub fn log_writer<W: std::io::Write + Send + 'static>(
    sink: W,
) -> (
    tracing_appender::non_blocking::NonBlocking,
    tracing_appender::non_blocking::WorkerGuard,
) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("log-writer")
        .finish(PacedWrites {
            buffer: std::io::BufWriter::with_capacity(64 * 1024, sink),
            last_write: None,
        })
}

/// Lines queued for the log thread before a request waits to log: 4 s of lines at 1,000 a
/// second, 0.2 s at the bench's 20,000, while the thread writes every 2 ms. The queue's slots
/// (32 bytes each) are allocated and touched up front: tracing-appender's default of 128,000
/// held 4 MiB of resident memory, 16,384 half a MiB.
const LOG_QUEUE_LINES: usize = 4_096;

/// The longest a log line waits in the writer's buffer while lines keep coming.
const LOG_WRITE_PACE: std::time::Duration = std::time::Duration::from_millis(2);

/// Buffers lines; the log thread flushes after each batch it took from its queue, and a flush
/// within [`LOG_WRITE_PACE`] of the last one first waits out the rest, so the lines queued
/// meanwhile go in the next write.
struct PacedWrites<W: std::io::Write> {
    buffer: std::io::BufWriter<W>,
    last_write: Option<Instant>,
}

impl<W: std::io::Write> std::io::Write for PacedWrites<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.buffer().is_empty() {
            return self.buffer.flush();
        }
        if let Some(wait) = self
            .last_write
            .and_then(|at| LOG_WRITE_PACE.checked_sub(at.elapsed()))
        {
            std::thread::sleep(wait);
        }
        let flushed = self.buffer.flush();
        self.last_write = Some(Instant::now());
        flushed
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
        // Before connection_info(), whose answer holds the extensions borrowed.
        let route = crate::routes::matched_route(request.request());
        let connection = request.connection_info();
        let span = tracing::info_span!(
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
            ms_request_id = tracing::field::Empty,
            upstream_status = tracing::field::Empty,
            upstream_attempts = tracing::field::Empty,
        );
        drop(connection);
        join_exported_trace(request, &span);
        span
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
                    // Whole microseconds: `as_secs_f64() * 1000.0` printed as 9.882622000000001.
                    .map(|started| started.0.elapsed().as_micros() as f64 / 1000.0),
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

/// With export on, the request's span joins the caller's trace; a new trace takes the
/// exporter's trace ID, so logs, export and Partner Center's `traceparent` agree.
fn join_exported_trace(request: &ServiceRequest, span: &Span) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some(trace) = request.extensions().get::<TraceContext>().cloned() else {
        return;
    };
    if let Some(parent_id) = trace.parent_id() {
        let parent = SpanContext::new(
            TraceId::from(trace.trace_id()),
            SpanId::from(parent_id),
            TraceFlags::new(trace.flags()),
            true,
            trace
                .tracestate()
                .and_then(|state| state.parse::<TraceState>().ok())
                .unwrap_or_default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
        return;
    }
    let exported = span.context().span().span_context().trace_id();
    if exported != TraceId::INVALID {
        let adopted = trace.with_trace_id(u128::from_be_bytes(exported.to_bytes()));
        span.record("trace_id", adopted.trace_id_hex());
        request.extensions_mut().insert(adopted);
    }
}

/// The `traceparent` for a call made inside the current span: the exported span's own ID
/// when spans are exported, else a fresh span ID in the request's trace.
pub fn outgoing_traceparent(trace: &TraceContext) -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = Span::current().context();
    let current = context.span();
    let exported = current.span_context();
    if exported.is_valid() {
        return format!(
            "00-{}-{}-{:02x}",
            exported.trace_id(),
            exported.span_id(),
            exported.trace_flags().to_u8()
        );
    }
    trace.child_traceparent()
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

/// A span's fields, each value already encoded as JSON text, kept in its extensions so a
/// line is written by copying them.
struct SpanFields(Fields);

/// Field names with their JSON-encoded values, the values side by side in one buffer (a
/// span records a dozen fields: one allocation, not one each); a field recorded again
/// points at its new value.
#[derive(Default)]
struct Fields {
    json: String,
    index: Vec<(&'static str, std::ops::Range<usize>)>,
}

impl Fields {
    fn with_capacity(fields: usize) -> Self {
        Self {
            json: String::with_capacity(fields * 24),
            index: Vec::with_capacity(fields),
        }
    }

    fn put(&mut self, name: &'static str, encode: impl FnOnce(&mut String)) {
        let start = self.json.len();
        encode(&mut self.json);
        let value = start..self.json.len();
        match self
            .index
            .iter_mut()
            .find(|(existing, _)| *existing == name)
        {
            Some((_, slot)) => *slot = value,
            None => self.index.push((name, value)),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.index
            .iter()
            .map(|(name, value)| (*name, &self.json[value.clone()]))
    }
}

/// `value` as a JSON string (RFC 8259 §7: quote, backslash and control characters escaped),
/// straight into `out`.
fn push_json_str(out: &mut String, value: &str) {
    out.reserve(value.len() + 2);
    out.push('"');
    push_json_escaped(out, value);
    out.push('"');
}

/// Whether JSON needs `byte` escaped inside a string.
const fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// `value`'s characters as they go between a JSON string's quotes. Nearly every value
/// (IDs, paths, names) needs nothing escaped: it is checked eight bytes at a time and
/// copied whole.
fn push_json_escaped(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    let mut clean_from = 0;
    let mut at = 0;
    while at < bytes.len() {
        let end = match bytes.get(at..at + 8) {
            Some(word) if !word_needs_escape(word) => {
                at += 8;
                continue;
            }
            Some(_) => at + 8,
            None => bytes.len(),
        };
        for position in at..end {
            let byte = bytes[position];
            if !needs_escape(byte) {
                continue;
            }
            out.push_str(&value[clean_from..position]);
            match byte {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                _ => {
                    use std::fmt::Write as _;
                    let _ = write!(out, "\\u{byte:04x}");
                }
            }
            clean_from = position + 1;
        }
        at = end;
    }
    out.push_str(&value[clean_from..]);
}

/// Whether any of eight bytes needs escaping, all at once: a byte below 0x20, or equal to
/// `"` or `\\` (the usual zero-byte test, `(v - 0x01..) & !v & 0x80..`, exact as a yes/no).
fn word_needs_escape(word: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let word = u64::from_ne_bytes(word.try_into().expect("eight bytes"));
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    (below_space
        | has_zero(word ^ (ONES * u64::from(b'"')))
        | has_zero(word ^ (ONES * u64::from(b'\\'))))
        != 0
}

/// Escapes what is written through it as [`push_json_escaped`] does, so a `Display` or
/// `Debug` value goes into a line without a `String` of its own first.
struct JsonEscaping<'a>(&'a mut String);

impl fmt::Write for JsonEscaping<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        push_json_escaped(self.0, text);
        Ok(())
    }
}

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
            let mut fields = Fields::with_capacity(attrs.metadata().fields().len());
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

struct JsonVisitor<'a>(&'a mut Fields);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.put(field.name(), |out| {
            out.push_str(&Value::from(value).to_string());
        });
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0
            .put(field.name(), |out| out.push_str(&value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0
            .put(field.name(), |out| out.push_str(&value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.put(field.name(), |out| {
            out.push_str(if value { "true" } else { "false" })
        });
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.put(field.name(), |out| push_json_str(out, value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use std::fmt::Write as _;
        self.0.put(field.name(), |out| {
            out.push('"');
            let _ = write!(JsonEscaping(out), "{value:?}");
            out.push('"');
        });
    }
}

/// Span fields are kept by [`SpanFieldsLayer`]; the fmt layer's own copy is not needed.
struct NoFields;

impl<'writer> FormatFields<'writer> for NoFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _: Writer<'writer>,
        _: R,
    ) -> fmt::Result {
        Ok(())
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
        let mut own = Fields::with_capacity(metadata.fields().len());
        event.record(&mut JsonVisitor(&mut own));
        let is_access_line = metadata.target() == ACCESS_TARGET;

        let mut line = String::with_capacity(1024);
        line.push_str("{\"timestamp\":\"");
        let now = OffsetDateTime::now_utc();
        line.push_str(&now.format(&Rfc3339).unwrap_or_default());
        line.push_str("\",\"level\":\"");
        line.push_str(metadata.level().as_str());
        line.push_str("\",\"target\":");
        push_json_str(&mut line, metadata.target());
        let mut written: Vec<&str> = Vec::with_capacity(own.index.len() + 24);
        let push = |line: &mut String, name: &'static str, json: &str| {
            line.push(',');
            push_json_str(line, name);
            line.push(':');
            line.push_str(json);
        };
        for (name, json) in own.iter() {
            push(&mut line, name, json);
            written.push(name);
        }
        // The spans' fields, outermost first.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(SpanFields(fields)) = extensions.get::<SpanFields>() else {
                    continue;
                };
                let request_span = span.name() == REQUEST_SPAN;
                for (name, json) in fields.iter() {
                    let wanted = !request_span
                        || is_access_line
                        || name == "correlation_id"
                        || name == "trace_id";
                    if wanted && !written.contains(&name) {
                        push(&mut line, name, json);
                        written.push(name);
                    }
                }
            }
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that keeps each `write` call apart, to see how lines were grouped.
    #[derive(Clone, Default)]
    struct Recorded(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl std::io::Write for Recorded {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Recorded {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
        }
    }

    /// A line written while the gateway is otherwise idle reaches the sink without waiting
    /// for the buffer to fill or for the process to end.
    #[test]
    fn a_lone_line_is_written_out_without_waiting_for_more() {
        use std::io::Write;
        let sink = Recorded::default();
        let (mut writer, _guard) = log_writer(sink.clone());
        writer.write_all(b"{\"message\":\"alone\"}\n").unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while sink.text().is_empty() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "{\"message\":\"alone\"}\n");
    }

    /// Lines from several threads all arrive, each thread's in its order, by the time the
    /// guard (held by `main` until exit) is dropped.
    #[test]
    fn every_line_is_written_in_order_by_exit() {
        use std::io::Write;
        let sink = Recorded::default();
        let (writer, guard) = log_writer(sink.clone());
        let threads: Vec<_> = (0..3)
            .map(|thread| {
                let mut writer = writer.clone();
                std::thread::spawn(move || {
                    // One call per line, as the subscriber writes them.
                    for line in 0..500 {
                        writer
                            .write_all(format!("{thread} {line}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let text = sink.text();
        for thread in 0..3 {
            let lines: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{thread} ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(lines, (0..500).collect::<Vec<_>>(), "thread {thread}");
        }
    }

    /// While lines keep coming, a write follows the previous one by the pace at least, so
    /// what queued meanwhile shares it; nothing buffered, nothing waited for.
    #[test]
    fn writes_under_load_are_paced_and_an_empty_flush_does_not_wait() {
        use std::io::Write;
        let sink = Recorded::default();
        let mut paced = PacedWrites {
            buffer: std::io::BufWriter::new(sink.clone()),
            last_write: None,
        };
        paced.write_all(b"first\n").unwrap();
        paced.flush().unwrap();
        let first_written = paced.last_write.unwrap();
        // The log thread flushes after every batch, an empty one too: that is no write.
        paced.flush().unwrap();
        assert_eq!(paced.last_write, Some(first_written));
        paced.write_all(b"second\n").unwrap();
        paced.write_all(b"third\n").unwrap();
        paced.flush().unwrap();
        assert!(first_written.elapsed() >= LOG_WRITE_PACE);
        assert_eq!(
            *sink.0.lock().unwrap(),
            vec![b"first\n".to_vec(), b"second\nthird\n".to_vec()]
        );
    }

    #[test]
    fn strings_are_escaped_as_json_requires() {
        let mut texts: Vec<String> = [
            "",
            "plain",
            "quote \" and \\ slash",
            "line\nbreak\ttab\r",
            "bell \u{7} nul \u{0}",
            "ünï ✓",
        ]
        .map(String::from)
        .into();
        // Checked 16 bytes at a time: escapes on either side of a chunk's edge, in a
        // chunk of their own, and after many clean chunks.
        for at in [0, 1, 14, 15, 16, 17, 31, 32, 33, 47, 64] {
            for escaped in ['"', '\\', '\n', '\u{1f}', '\u{0}'] {
                let mut text = "x".repeat(at);
                text.push(escaped);
                text.push_str(&"é".repeat(20));
                text.push(escaped);
                texts.push(text);
            }
        }
        texts.push("\"".repeat(40));
        for text in &texts {
            let mut out = String::new();
            push_json_str(&mut out, text);
            assert_eq!(
                &serde_json::from_str::<String>(&out).unwrap(),
                text,
                "{out}"
            );
            assert_eq!(out, serde_json::to_string(text).unwrap());
        }
    }

    /// Strings of every mix (control characters, quotes, backslashes, multi-byte
    /// characters, at every offset of an eight-byte word) come out as serde_json writes them.
    #[test]
    fn any_string_is_escaped_as_serde_json_escapes_it() {
        let alphabet: Vec<char> = "ab\"\\\n\t\u{0}\u{1f}\u{7f} é✓😀/".chars().collect();
        // A fixed xorshift sequence: the same strings every run.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let length = (next() % 40) as usize;
            let text: String = (0..length)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut out = String::new();
            push_json_str(&mut out, &text);
            assert_eq!(out, serde_json::to_string(&text).unwrap(), "{text:?}");
        }
    }

    /// A `Display` or `Debug` value is escaped as it is written, not formatted first.
    #[test]
    fn formatted_values_are_escaped_on_the_way_in() {
        use std::fmt::Write as _;
        let (quoted, tab) = ("say \"hi\"\n", "tab\t");
        let mut out = String::from("[");
        write!(JsonEscaping(&mut out), "{quoted} and {tab:?}").unwrap();
        assert_eq!(out, r#"[say \"hi\"\n and \"tab\\t\""#);
    }

    #[test]
    fn only_parameter_names_are_kept() {
        assert_eq!(
            query_parameter_names("code=123456&Access_Token=eyJ&code=1").as_deref(),
            Some("code,Access_Token")
        );
        assert_eq!(query_parameter_names(""), None);
    }
}
