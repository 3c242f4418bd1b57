use std::sync::Arc;

use uuid::Uuid;

use super::{hex, push_hex};

/// W3C Trace Context (`traceparent`, `tracestate`): a caller's trace is continued, so the
/// gateway's log lines and its calls to Partner Center join the caller's distributed trace;
/// a request without a valid `traceparent` starts a new trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    /// The caller's span: the parent of everything the gateway does for this request.
    parent_id: Option<u64>,
    flags: u8,
    /// Passed on unchanged (at most 512 characters, as the spec lets a receiver drop more).
    tracestate: Option<Arc<str>>,
}

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

impl TraceContext {
    /// Continues `traceparent` when it is valid (version 00, or a later version read as
    /// 00 as the spec asks); otherwise starts a new, sampled trace and drops `tracestate`.
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> Self {
        match traceparent.and_then(parse_traceparent) {
            Some((trace_id, parent_id, flags)) => Self {
                trace_id,
                parent_id: Some(parent_id),
                flags,
                tracestate: tracestate
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && s.len() <= 512 && s.is_ascii())
                    .map(Arc::from),
            },
            None => Self::new(),
        }
    }

    pub fn new() -> Self {
        Self {
            trace_id: Uuid::new_v4().as_u128(),
            parent_id: None,
            flags: 0x01,
            tracestate: None,
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id.to_be_bytes())
    }

    /// Whether the trace continues one the caller sent.
    pub fn is_continued(&self) -> bool {
        self.parent_id.is_some()
    }

    /// The `traceparent` for a call the gateway makes: same trace, a new span of its own.
    pub fn child_traceparent(&self) -> String {
        let span_id = loop {
            let candidate = Uuid::new_v4().as_u64_pair().0;
            if candidate != 0 {
                break candidate;
            }
        };
        let mut traceparent = String::with_capacity(55);
        traceparent.push_str("00-");
        push_hex(&mut traceparent, &self.trace_id.to_be_bytes());
        traceparent.push('-');
        push_hex(&mut traceparent, &span_id.to_be_bytes());
        traceparent.push('-');
        push_hex(&mut traceparent, &[self.flags]);
        traceparent
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    pub fn parent_id(&self) -> Option<u64> {
        self.parent_id
    }

    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The same context in another trace: a new trace adopts the exporter's ID.
    pub fn with_trace_id(self, trace_id: u128) -> Self {
        Self { trace_id, ..self }
    }
}

impl Default for TraceContext {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_traceparent(value: &str) -> Option<(u128, u64, u8)> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2) || version == "ff" || !lower_hex(trace_id, 32) {
        return None;
    }
    if !lower_hex(parent_id, 16) || !lower_hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = u128::from_str_radix(trace_id, 16).ok()?;
    let parent_id = u64::from_str_radix(parent_id, 16).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace_id != 0 && parent_id != 0).then_some((trace_id, parent_id, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let trace = TraceContext::from_headers(Some(VALID), Some("congo=t61rcWkgMzE"));
        assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(trace.is_continued());
        let child = trace.child_traceparent();
        assert!(
            child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{child}"
        );
        assert!(child.ends_with("-01"));
        assert_ne!(
            &child[36..52],
            "00f067aa0ba902b7",
            "a span of the gateway's own"
        );
        assert_eq!(trace.tracestate(), Some("congo=t61rcWkgMzE"));
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for invalid in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            let trace = TraceContext::from_headers(Some(invalid), Some("k=v"));
            assert!(!trace.is_continued(), "{invalid}");
            assert_eq!(
                trace.tracestate(),
                None,
                "tracestate goes with an invalid parent"
            );
            assert_ne!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }

    /// Zero-padded and lowercase, leading zeros kept, as the spec spells IDs.
    #[test]
    fn ids_are_written_as_the_spec_spells_them() {
        let small = "00-00000000000000000000000000000abc-0000000000000001-00";
        let trace = TraceContext::from_headers(Some(small), None);
        assert_eq!(trace.trace_id_hex(), "00000000000000000000000000000abc");
        let child = trace.child_traceparent();
        let (trace_id, span_id, flags) = parse_traceparent(&child).expect("a valid traceparent");
        assert_eq!((trace_id, flags), (0xabc, 0));
        assert_eq!(
            child,
            format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}")
        );
    }

    #[test]
    fn a_later_version_is_read_as_00() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(TraceContext::from_headers(Some(later), None).is_continued());
    }
}
