use std::fmt;

use uuid::Uuid;

/// `bytes` as lowercase hex, two digits a byte: digests, fingerprints and Trace Context's IDs.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// [`hex`] onto the end of `out`, from a table (every request writes two trace IDs, which
/// `format!` per byte or `{:032x}` took the formatting machinery for).
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

/// Ties together every log line and upstream call of one caller request
/// (sent upstream as `MS-CorrelationId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CorrelationId(Uuid);

impl CorrelationId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Reuses a caller's `X-Correlation-ID` only when it is a GUID, because Partner Center
    /// requires `MS-CorrelationId` to be one.
    pub fn from_header(value: Option<&str>) -> Self {
        value
            .and_then(|v| Uuid::try_parse(v.trim()).ok())
            .filter(|uuid| !uuid.is_nil())
            .map(Self)
            .unwrap_or_default()
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Identifies one logical upstream call (`MS-RequestId`); Partner Center de-duplicates
/// writes by it, so every retry of the same call must reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(Uuid);

/// Namespace of request IDs derived from a caller's idempotency key.
const IDEMPOTENT_REQUEST_NAMESPACE: Uuid =
    Uuid::from_u128(0x6a1f_3c2e_8b4d_5f70_9e21_4c7a_d0b3_e815);

impl RequestId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// The same ID for the same caller and idempotency key, on every replica and after a
    /// restart (UUID v5), so Partner Center de-duplicates a retry wherever it lands.
    pub fn derived_from(caller_and_key: &str) -> Self {
        Self(Uuid::new_v5(
            &IDEMPOTENT_REQUEST_NAMESPACE,
            caller_and_key.as_bytes(),
        ))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guid_from_the_caller_is_reused() {
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(CorrelationId::from_header(Some(id)).to_string(), id);
    }

    #[test]
    fn anything_else_is_replaced_by_a_fresh_guid() {
        for bad in [
            None,
            Some(""),
            Some("abc"),
            Some("00000000-0000-0000-0000-000000000000"),
        ] {
            let id = CorrelationId::from_header(bad);
            assert!(!id.as_uuid().is_nil());
            assert_ne!(Some(id.to_string().as_str()), bad);
        }
    }
}
