use std::fmt;

use uuid::Uuid;

use super::FieldError;

/// A customer's Microsoft tenant ID: always a GUID, always sent upstream hyphenated and lower-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomerId(Uuid);

impl CustomerId {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        // Only the canonical 36-character form: braces or URN prefixes in a path are typos.
        if raw.len() != 36 {
            return Err(invalid());
        }
        match Uuid::try_parse(raw) {
            Ok(uuid) if !uuid.is_nil() => Ok(Self(uuid)),
            _ => Err(invalid()),
        }
    }
}

fn invalid() -> FieldError {
    FieldError::new(
        "customerId",
        "must be the customer's tenant ID as a GUID, e.g. 7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745",
    )
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_guid_in_any_case_and_normalises_it() {
        let id = CustomerId::parse("7D2456FD-2D79-46D0-9F8E-5D7ECD5F8745").unwrap();
        assert_eq!(id.to_string(), "7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745");
    }

    #[test]
    fn rejects_what_is_not_a_canonical_guid() {
        for bad in [
            "",
            "not-a-guid",
            "7d2456fd2d7946d09f8e5d7ecd5f8745",
            "{7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745}",
            "00000000-0000-0000-0000-000000000000",
            "7d2456fd-2d79-46d0-9f8e-5d7ecd5f874z",
        ] {
            let err = CustomerId::parse(bad).unwrap_err();
            assert_eq!(err.field, "customerId", "{bad}");
        }
    }
}
