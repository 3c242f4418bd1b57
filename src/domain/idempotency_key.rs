use super::FieldError;

/// A caller's `Idempotency-Key` (IETF httpapi draft): 1 to 255 visible ASCII characters,
/// bare or as a quoted structured-field string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let unquoted = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(raw);
        let fits = (1..=255).contains(&unquoted.len())
            && unquoted.bytes().all(|b| b.is_ascii_graphic() && b != b'"');
        if fits {
            Ok(Self(unquoted.to_owned()))
        } else {
            Err(FieldError::new(
                IDEMPOTENCY_KEY_HEADER,
                "must be 1 to 255 visible ASCII characters, e.g. a UUID",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_quoted_keys_are_the_same_key() {
        let bare = IdempotencyKey::parse("8e03978e-40d5-43e8-bc93-6894a57f9324").unwrap();
        let quoted = IdempotencyKey::parse("\"8e03978e-40d5-43e8-bc93-6894a57f9324\"").unwrap();
        assert_eq!(bare, quoted);
    }

    #[test]
    fn empty_long_and_non_ascii_keys_are_refused() {
        for bad in ["", "\"\"", "has space", "caf\u{e9}", &"k".repeat(256)] {
            let error = IdempotencyKey::parse(bad).unwrap_err();
            assert_eq!(error.field, "Idempotency-Key", "{bad:?}");
        }
    }
}
