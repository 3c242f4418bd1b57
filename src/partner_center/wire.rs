//! Partner Center's JSON as it comes, in all its documented shapes; converted to domain types here only.

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::{PartnerValidationCode, Qualification, QualificationStatus, VettingStatus};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireQualification {
    #[serde(alias = "Qualification")]
    qualification: Option<String>,
    vetting_status: Option<String>,
    vetting_reason: Option<String>,
    /// Some examples spell it `vettingCreatedDate`.
    #[serde(alias = "vettingCreatedDate")]
    vetting_create_date: Option<String>,
}

/// The list answer: a bare array in some documentation, wrapped in others.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WireQualificationList {
    Bare(Vec<WireQualification>),
    Wrapped {
        #[serde(alias = "items")]
        qualifications: Vec<WireQualification>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireValidationCode {
    validation_id: String,
    partner_id: Option<String>,
    organization_name: Option<String>,
    max_creates: Option<u32>,
    remaining_creates: Option<u32>,
    #[serde(alias = "etag")]
    e_tag: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WireValidationCodeList {
    Bare(Vec<WireValidationCode>),
    Wrapped {
        #[serde(alias = "validations")]
        items: Vec<WireValidationCode>,
    },
}

/// Both error shapes: `{code, description}` and the throttling `{statusCode, message}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireError {
    code: Option<Value>,
    description: Option<String>,
    status_code: Option<Value>,
    message: Option<String>,
}

impl WireQualification {
    /// `fallback` names the qualification when Partner Center's answer leaves it out.
    pub fn into_domain(self, fallback: Option<Qualification>) -> Option<QualificationStatus> {
        let qualification = self
            .qualification
            .as_deref()
            .map(Qualification::parse)
            .or(fallback)?;
        Some(QualificationStatus {
            qualification,
            vetting_status: self.vetting_status.as_deref().map(VettingStatus::parse),
            vetting_reason: self.vetting_reason.filter(|r| !r.is_empty()),
            vetting_create_date: self.vetting_create_date.as_deref().and_then(parse_date),
        })
    }
}

impl WireQualificationList {
    pub fn into_domain(self) -> Vec<QualificationStatus> {
        let items = match self {
            Self::Bare(items)
            | Self::Wrapped {
                qualifications: items,
            } => items,
        };
        items
            .into_iter()
            .filter_map(|q| q.into_domain(None))
            .collect()
    }
}

impl WireValidationCodeList {
    pub fn into_domain(self) -> Vec<PartnerValidationCode> {
        let items = match self {
            Self::Bare(items) | Self::Wrapped { items } => items,
        };
        items
            .into_iter()
            .map(|c| PartnerValidationCode {
                validation_id: c.validation_id,
                partner_id: c.partner_id,
                organization_name: c.organization_name,
                max_creates: c.max_creates,
                remaining_creates: c.remaining_creates,
                etag: c.e_tag,
            })
            .collect()
    }
}

impl WireError {
    /// An error object in either shape; or, when Partner Center sent a bare JSON string,
    /// plain text or an HTML page instead, that text as the description.
    pub fn parse(body: &[u8]) -> Self {
        let text_only = |text: &str| Self {
            description: readable_text(text),
            ..Self::default()
        };
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(_)) => serde_json::from_slice(body).unwrap_or_default(),
            Ok(Value::String(text)) => text_only(&text),
            Ok(Value::Null) => Self::default(),
            Ok(other) => text_only(&other.to_string()),
            Err(_) => text_only(&String::from_utf8_lossy(body)),
        }
    }

    pub fn code(&self) -> Option<String> {
        self.code
            .as_ref()
            .or(self.status_code.as_ref())
            .map(value_text)
    }

    pub fn description(&self) -> Option<String> {
        self.description.clone().or_else(|| self.message.clone())
    }

    /// "Rate limit is exceeded. Try again in 57 seconds." → 57.
    pub fn retry_after_secs(&self) -> Option<u64> {
        let message = self.description()?;
        let (_, after) = message.split_once("Try again in ")?;
        after.split_whitespace().next()?.parse().ok()
    }
}

/// At most this much of an error text is passed on.
const MAX_DESCRIPTION_CHARS: usize = 300;

/// Tags (and script or style contents) dropped, common entities decoded, whitespace
/// collapsed, cut to a readable length; `None` when nothing is left.
fn readable_text(raw: &str) -> Option<String> {
    let looks_like_html = raw.contains('<') && raw.contains('>');
    let mut text = String::with_capacity(raw.len().min(4096));
    if looks_like_html {
        let mut rest = raw;
        while let Some(open) = rest.find('<') {
            text.push_str(&rest[..open]);
            text.push(' ');
            let tag = &rest[open..];
            let lower = tag.get(..7).unwrap_or(tag).to_ascii_lowercase();
            let skip_to = if lower.starts_with("<script") || lower.starts_with("<style") {
                let closing = if lower.starts_with("<script") {
                    "</script"
                } else {
                    "</style"
                };
                tag.to_ascii_lowercase()
                    .find(closing)
                    .map(|at| at + closing.len())
            } else {
                Some(0)
            };
            let after = skip_to
                .and_then(|from| tag[from..].find('>').map(|end| from + end + 1))
                .unwrap_or(tag.len());
            rest = &tag[after..];
        }
        text.push_str(rest);
        for (entity, plain) in [
            ("&nbsp;", " "),
            ("&lt;", "<"),
            ("&gt;", ">"),
            ("&quot;", "\""),
            ("&#39;", "'"),
            ("&amp;", "&"),
        ] {
            text = text.replace(entity, plain);
        }
    } else {
        text.push_str(raw);
    }
    let collapsed: Vec<&str> = text.split_whitespace().collect();
    let collapsed = collapsed.join(" ");
    if collapsed.is_empty() {
        return None;
    }
    let mut cut: String = collapsed.chars().take(MAX_DESCRIPTION_CHARS).collect();
    if cut.len() < collapsed.len() {
        cut.push('…');
    }
    Some(cut)
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A date Partner Center sends that is not RFC 3339 is dropped, not fatal to the whole answer.
fn parse_date(raw: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{raw}Z"), &Rfc3339))
        .inspect_err(|_| tracing::warn!(date = raw, "ignoring a vetting date that is not RFC 3339"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_that_is_not_an_object_becomes_its_text() {
        let described = |body: &str| WireError::parse(body.as_bytes()).description();
        assert_eq!(
            described(r#""Customer tagging denied.""#).as_deref(),
            Some("Customer tagging denied.")
        );
        assert_eq!(
            described("Service Unavailable\r\n").as_deref(),
            Some("Service Unavailable")
        );
        assert_eq!(described(""), None);
        assert_eq!(described("null"), None);
        assert_eq!(
            described("<html><head><title>502 Bad Gateway</title><style>body{color:red}</style></head><body><h1>Bad&nbsp;Gateway</h1><script>var x = '<b>';</script></body></html>").as_deref(),
            Some("502 Bad Gateway Bad Gateway")
        );
        let long = "x".repeat(1000);
        assert_eq!(described(&long).unwrap().chars().count(), 301);
    }

    #[test]
    fn both_list_shapes_and_both_date_spellings_are_read() {
        let bare: WireQualificationList = serde_json::from_str(
            r#"[{"qualification":"Education","vettingStatus":"Approved","vettingCreatedDate":"2020-12-04T20:54:24Z"}]"#,
        )
        .unwrap();
        let wrapped: WireQualificationList = serde_json::from_str(
            r#"{"qualifications":[{"qualification":"Education","vettingStatus":"Approved","vettingCreateDate":"2020-12-04T20:54:24Z"}]}"#,
        )
        .unwrap();
        assert_eq!(bare.into_domain(), wrapped.into_domain());
    }

    #[test]
    fn throttling_message_yields_a_wait() {
        let e = WireError::parse(
            br#"{"statusCode":429,"message":"Rate limit is exceeded. Try again in 57 seconds."}"#,
        );
        assert_eq!(e.retry_after_secs(), Some(57));
        assert_eq!(e.code().as_deref(), Some("429"));
    }

    #[test]
    fn a_date_without_zone_is_read_as_utc() {
        assert!(parse_date("2020-12-04T20:54:24").is_some());
        assert!(parse_date("yesterday").is_none());
    }
}
