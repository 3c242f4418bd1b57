use std::collections::HashMap;
use std::fmt;

use serde_json::Value;
use utoipa::openapi::schema::{
    AdditionalProperties, Discriminator, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::{EducationSegment, FieldError, FieldErrors, SettableQualification};

/// What a caller may ask for, one variant per qualification, so an Education request
/// without a segment or a GCC request without a code cannot exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QualificationRequest {
    Education {
        segment: EducationSegment,
        website: Option<String>,
    },
    GovernmentCommunityCloud {
        validation_code: ValidationCode,
    },
    StateOwnedEntity,
}

/// A GCC validation code as listed by `GET /v1/validation-codes`.
#[derive(Clone, PartialEq, Eq)]
pub struct ValidationCode(String);

impl ValidationCode {
    const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                "validationCode",
                "must be 1 to 64 letters, digits, '-', '_' or '.' (a validation ID from GET /v1/validation-codes)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For the audit trail: all but the last two characters hidden (`****56`); a code of two
    /// characters or fewer is hidden whole.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        let shown = if chars.len() > 2 { 2 } else { 0 };
        let mut masked = "*".repeat(chars.len() - shown);
        masked.extend(&chars[chars.len() - shown..]);
        masked
    }
}

/// Redacted: a validation code grants GCC creates, so it stays out of logs like a secret.
impl fmt::Debug for ValidationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ValidationCode([REDACTED])")
    }
}

/// The request body as documented in the OpenAPI spec: one schema per qualification, chosen
/// by `qualification`. Parsing goes through [`QualificationRequest::from_json`], which names
/// every faulty field at once; the two agree field for field (schemathesis checks it in CI).
pub struct QualificationRequestBody;

const EDUCATION_SCHEMA: &str = "EducationQualificationRequest";
const GCC_SCHEMA: &str = "GovernmentCommunityCloudQualificationRequest";
const SOE_SCHEMA: &str = "StateOwnedEntityQualificationRequest";
/// What `parse_website` accepts: 1 to 253 characters, none of them whitespace or control.
/// (ECMA-262's `\s` also covers U+FEFF, which Rust's `is_whitespace` does not: named here so
/// the schema and the code refuse the same strings.)
pub const WEBSITE_PATTERN: &str = r"^[^\s\x00-\x1f\x7f-\x9f\uFEFF]{1,253}$";
pub const VALIDATION_CODE_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";

impl utoipa::PartialSchema for QualificationRequestBody {
    fn schema() -> RefOr<Schema> {
        let reference = |name: &str| format!("#/components/schemas/{name}");
        OneOfBuilder::new()
            .item(Ref::from_schema_name(EDUCATION_SCHEMA))
            .item(Ref::from_schema_name(GCC_SCHEMA))
            .item(Ref::from_schema_name(SOE_SCHEMA))
            .discriminator(Some(Discriminator::with_mapping(
                QUALIFICATION,
                [
                    ("Education", reference(EDUCATION_SCHEMA)),
                    ("GovernmentCommunityCloud", reference(GCC_SCHEMA)),
                    ("StateOwnedEntity", reference(SOE_SCHEMA)),
                ],
            )))
            .into()
    }
}

impl ToSchema for QualificationRequestBody {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let tag = |value: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([value]))
        };
        let text = |pattern: &str, example: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
                .examples([example])
        };
        let closed = |builder: ObjectBuilder, example: Value| -> RefOr<Schema> {
            builder
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                .examples([example])
                .build()
                .into()
        };
        schemas.push((
            EDUCATION_SCHEMA.into(),
            closed(
                ObjectBuilder::new()
                    .description(Some("Education: the segment is required; a website speeds up vetting."))
                    .property(QUALIFICATION, tag("Education"))
                    .required(QUALIFICATION)
                    .property(EDUCATION_SEGMENT, Ref::from_schema_name("EducationSegment"))
                    .required(EDUCATION_SEGMENT)
                    .property(
                        WEBSITE,
                        text(WEBSITE_PATTERN, "contoso.edu")
                            .description(Some("The institution's website: a host name or URL.")),
                    ),
                serde_json::json!({"qualification": "Education", "educationSegment": "K12", "website": "contoso.edu"}),
            ),
        ));
        schemas.push((
            GCC_SCHEMA.into(),
            closed(
                ObjectBuilder::new()
                    .description(Some("GovernmentCommunityCloud: a validation ID from GET /v1/validation-codes is required."))
                    .property(QUALIFICATION, tag("GovernmentCommunityCloud"))
                    .required(QUALIFICATION)
                    .property(VALIDATION_CODE, text(VALIDATION_CODE_PATTERN, "123456"))
                    .required(VALIDATION_CODE),
                serde_json::json!({"qualification": "GovernmentCommunityCloud", "validationCode": "123456"}),
            ),
        ));
        schemas.push((
            SOE_SCHEMA.into(),
            closed(
                ObjectBuilder::new()
                    .description(Some("StateOwnedEntity: nothing else to send."))
                    .property(QUALIFICATION, tag("StateOwnedEntity"))
                    .required(QUALIFICATION),
                serde_json::json!({"qualification": "StateOwnedEntity"}),
            ),
        ));
        schemas.push(("EducationSegment".into(), EducationSegment::schema()));
    }
}

const QUALIFICATION: &str = "qualification";
const EDUCATION_SEGMENT: &str = "educationSegment";
const WEBSITE: &str = "website";
const VALIDATION_CODE: &str = "validationCode";
const FIELDS: [&str; 4] = [QUALIFICATION, EDUCATION_SEGMENT, WEBSITE, VALIDATION_CODE];
const MAX_WEBSITE_LEN: usize = 253;

impl QualificationRequest {
    pub fn qualification(&self) -> SettableQualification {
        match self {
            Self::Education { .. } => SettableQualification::Education,
            Self::GovernmentCommunityCloud { .. } => {
                SettableQualification::GovernmentCommunityCloud
            }
            Self::StateOwnedEntity => SettableQualification::StateOwnedEntity,
        }
    }

    /// The request's content in one canonical form (sorted keys, no whitespace, parsed
    /// values), so the same request serialised another way is recognised as the same.
    pub fn canonical_form(&self) -> String {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(QUALIFICATION, self.qualification().as_str());
        match self {
            Self::Education { segment, website } => {
                fields.insert(EDUCATION_SEGMENT, segment.as_str());
                if let Some(website) = website {
                    fields.insert(WEBSITE, website.as_str());
                }
            }
            Self::GovernmentCommunityCloud { validation_code } => {
                fields.insert(VALIDATION_CODE, validation_code.as_str());
            }
            Self::StateOwnedEntity => {}
        }
        serde_json::to_string(&fields).unwrap_or_default()
    }

    /// Parses a caller's JSON body, collecting every problem instead of stopping at the first.
    pub fn from_json(body: &[u8]) -> Result<Self, FieldErrors> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(FieldError::new(
                "body",
                "is required: a JSON object such as {\"qualification\": \"StateOwnedEntity\"}",
            )
            .into());
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| FieldError::new("body", format!("is not valid JSON ({e})")))?;
        let Value::Object(object) = value else {
            return Err(FieldError::new("body", "must be a JSON object").into());
        };

        let mut errors = FieldErrors::default();
        let mut fields: HashMap<&'static str, String> = HashMap::new();
        for (key, value) in object {
            let Some(known) = FIELDS.iter().copied().find(|f| *f == key) else {
                errors.push(unknown_field(&key));
                continue;
            };
            // `null` is refused like any other non-string: leave a field out to omit it.
            match value {
                Value::String(s) => {
                    fields.insert(known, s);
                }
                _ => errors.push(FieldError::new(known, "must be a string")),
            }
        }

        let request = Self::from_fields(&mut fields, &mut errors);
        errors.into_result()?;
        // from_fields only returns None after pushing an error.
        request.ok_or_else(FieldErrors::default)
    }

    fn from_fields(
        fields: &mut HashMap<&'static str, String>,
        errors: &mut FieldErrors,
    ) -> Option<Self> {
        let qualification = match fields.remove(QUALIFICATION) {
            None => {
                errors.push_once(FieldError::new(
                    QUALIFICATION,
                    format!("is required: one of {}", settable_list()),
                ));
                return None;
            }
            Some(raw) => match parse_settable(&raw) {
                Ok(q) => q,
                Err(e) => {
                    errors.push(e);
                    return None;
                }
            },
        };

        let mut refuse_unless = |field: &'static str, allowed: SettableQualification| {
            if qualification != allowed && fields.contains_key(field) {
                errors.push(FieldError::new(
                    field,
                    format!("is only accepted when qualification is {allowed}"),
                ));
            }
        };
        refuse_unless(EDUCATION_SEGMENT, SettableQualification::Education);
        refuse_unless(WEBSITE, SettableQualification::Education);
        refuse_unless(
            VALIDATION_CODE,
            SettableQualification::GovernmentCommunityCloud,
        );

        match qualification {
            SettableQualification::Education => {
                let segment = match fields.get(EDUCATION_SEGMENT).map(String::as_str) {
                    None => Err(FieldError::new(
                        EDUCATION_SEGMENT,
                        "is required when qualification is Education: HigherEducation or K12",
                    )),
                    Some(raw) => EducationSegment::ALL
                        .into_iter()
                        .find(|s| s.as_str() == raw)
                        .ok_or_else(|| {
                            FieldError::new(EDUCATION_SEGMENT, "must be HigherEducation or K12")
                        }),
                };
                let website = fields.remove(WEBSITE).map(parse_website).transpose();
                match (segment, website) {
                    (Ok(segment), Ok(website)) => Some(Self::Education { segment, website }),
                    (segment, website) => {
                        if let Err(e) = segment {
                            errors.push_once(e);
                        }
                        if let Err(e) = website {
                            errors.push_once(e);
                        }
                        None
                    }
                }
            }
            SettableQualification::GovernmentCommunityCloud => {
                match fields
                    .get(VALIDATION_CODE)
                    .map(|c| ValidationCode::parse(c))
                {
                    None => {
                        errors.push_once(FieldError::new(
                            VALIDATION_CODE,
                            "is required when qualification is GovernmentCommunityCloud: pick one from GET /v1/validation-codes",
                        ));
                        None
                    }
                    Some(Err(e)) => {
                        errors.push(e);
                        None
                    }
                    Some(Ok(validation_code)) => {
                        Some(Self::GovernmentCommunityCloud { validation_code })
                    }
                }
            }
            SettableQualification::StateOwnedEntity => Some(Self::StateOwnedEntity),
        }
    }
}

fn settable_list() -> String {
    SettableQualification::ALL
        .iter()
        .map(|q| q.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_settable(raw: &str) -> Result<SettableQualification, FieldError> {
    if let Some(q) = SettableQualification::ALL
        .into_iter()
        .find(|q| q.as_str() == raw)
    {
        return Ok(q);
    }
    let message = if raw.eq_ignore_ascii_case("None") || raw.eq_ignore_ascii_case("Nonprofit") {
        format!(
            "{raw} cannot be set through Partner Center's API; settable values are {}",
            settable_list()
        )
    } else {
        format!("must be one of {}", settable_list())
    };
    Err(FieldError::new(QUALIFICATION, message))
}

fn parse_website(raw: String) -> Result<String, FieldError> {
    let length = raw.chars().count();
    let valid = (1..=MAX_WEBSITE_LEN).contains(&length)
        && !raw
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\u{feff}');
    if valid {
        Ok(raw)
    } else {
        Err(FieldError::new(
            WEBSITE,
            format!(
                "must be a host name or URL of 1 to {MAX_WEBSITE_LEN} characters without spaces"
            ),
        ))
    }
}

fn unknown_field(key: &str) -> FieldError {
    let hint = FIELDS
        .iter()
        .find(|f| f.eq_ignore_ascii_case(key))
        .map(|f| format!(" (did you mean {f}?)"))
        .unwrap_or_default();
    FieldError::new(
        key,
        format!(
            "is not a known field{hint}; known fields are {}",
            FIELDS.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<QualificationRequest, FieldErrors> {
        QualificationRequest::from_json(json.as_bytes())
    }

    fn fields(json: &str) -> Vec<String> {
        parse(json)
            .unwrap_err()
            .as_slice()
            .iter()
            .map(|e| e.field.clone())
            .collect()
    }

    #[test]
    fn the_canonical_form_ignores_whitespace_and_key_order() {
        let one = parse(
            r#"{"qualification":"Education","educationSegment":"K12","website":"contoso.edu"}"#,
        );
        let other = parse(
            "{ \"website\" : \"contoso.edu\",\n \"educationSegment\":\"K12\", \"qualification\": \"Education\" }",
        );
        assert_eq!(
            one.unwrap().canonical_form(),
            other.unwrap().canonical_form()
        );
        let segment = parse(
            r#"{"qualification":"Education","educationSegment":"HigherEducation","website":"contoso.edu"}"#,
        );
        assert_ne!(
            parse(
                r#"{"qualification":"Education","educationSegment":"K12","website":"contoso.edu"}"#
            )
            .unwrap()
            .canonical_form(),
            segment.unwrap().canonical_form()
        );
    }

    #[test]
    fn a_masked_code_shows_only_its_last_two_characters() {
        let masked = |raw: &str| ValidationCode::parse(raw).unwrap().masked();
        assert_eq!(masked("123456"), "****56");
        assert_eq!(masked("abc"), "*bc");
        assert_eq!(masked("ab"), "**");
        assert_eq!(masked("a"), "*");
    }

    #[test]
    fn the_three_documented_bodies_parse() {
        assert_eq!(
            parse(
                r#"{"qualification":"Education","educationSegment":"K12","website":"contoso.edu"}"#
            )
            .unwrap(),
            QualificationRequest::Education {
                segment: EducationSegment::K12,
                website: Some("contoso.edu".into())
            }
        );
        assert_eq!(
            parse(r#"{"qualification":"GovernmentCommunityCloud","validationCode":"123456"}"#)
                .unwrap()
                .qualification(),
            SettableQualification::GovernmentCommunityCloud
        );
        assert_eq!(
            parse(r#"{"qualification":"StateOwnedEntity"}"#).unwrap(),
            QualificationRequest::StateOwnedEntity
        );
    }

    #[test]
    fn null_is_not_absent_and_spaces_are_not_trimmed() {
        // As the published schema says: a field is a string or left out.
        assert_eq!(
            fields(r#"{"qualification":"StateOwnedEntity","website":null}"#),
            ["website"]
        );
        assert_eq!(
            fields(
                r#"{"qualification":"Education","educationSegment":"K12","website":" contoso.edu"}"#
            ),
            ["website"]
        );
        // Length counts characters, as JSON Schema's maxLength does.
        let long_but_fine = "é".repeat(253);
        assert!(parse(&format!(
            r#"{{"qualification":"Education","educationSegment":"K12","website":"{long_but_fine}"}}"#
        ))
        .is_ok());
    }

    #[test]
    fn the_published_website_pattern_refuses_what_the_parser_refuses() {
        // Rust's regex reads `\s` as Unicode White_Space, as the parser does; U+FEFF is
        // named in the pattern because ECMA-262's `\s` includes it.
        let pattern = regex::Regex::new(WEBSITE_PATTERN).unwrap();
        let characters = [
            ' ', '\t', '\n', '\u{0}', '\u{7f}', '\u{85}', '\u{9f}', '\u{a0}', '\u{1680}',
            '\u{2000}', '\u{200a}', '\u{2028}', '\u{202f}', '\u{3000}', '\u{feff}', 'é', '-', '/',
            ':', '\u{200b}',
        ];
        for c in characters {
            let website = format!("contoso{c}.edu");
            assert_eq!(
                pattern.is_match(&website),
                parse_website(website.clone()).is_ok(),
                "U+{:04X}",
                c as u32
            );
        }
        for website in ["", &"a".repeat(254)] {
            assert!(!pattern.is_match(website) && parse_website(website.to_owned()).is_err());
        }
    }

    #[test]
    fn none_and_nonprofit_get_a_message_saying_they_cannot_be_set() {
        for q in ["None", "Nonprofit"] {
            let err = parse(&format!(r#"{{"qualification":"{q}"}}"#)).unwrap_err();
            assert_eq!(err.as_slice()[0].field, "qualification");
            assert!(err.as_slice()[0].message.contains("cannot be set"), "{err}");
        }
    }

    #[test]
    fn every_fault_is_named() {
        assert_eq!(fields(""), ["body"]);
        assert_eq!(fields("[1]"), ["body"]);
        assert_eq!(fields("{"), ["body"]);
        assert_eq!(fields("{}"), ["qualification"]);
        assert_eq!(fields(r#"{"qualification":1}"#), ["qualification"]);
        assert_eq!(
            fields(r#"{"qualification":"Education"}"#),
            ["educationSegment"]
        );
        assert_eq!(
            fields(r#"{"qualification":"Education","educationSegment":"Primary"}"#),
            ["educationSegment"]
        );
        assert_eq!(
            fields(r#"{"qualification":"GovernmentCommunityCloud"}"#),
            ["validationCode"]
        );
        assert_eq!(
            fields(r#"{"qualification":"GovernmentCommunityCloud","validationCode":"12 34"}"#),
            ["validationCode"]
        );
        assert_eq!(
            fields(r#"{"qualification":"StateOwnedEntity","validationCode":"1"}"#),
            ["validationCode"]
        );
        assert_eq!(
            fields(r#"{"qualification":"StateOwnedEntity","extra":"1"}"#),
            ["extra"]
        );
    }

    #[test]
    fn several_faults_are_reported_together() {
        let mut got = fields(r#"{"qualification":"Education","validationCode":"1","website":""}"#);
        got.sort();
        assert_eq!(got, ["educationSegment", "validationCode", "website"]);
    }

    #[test]
    fn a_miscased_field_gets_a_hint() {
        let err = parse(r#"{"Qualification":"Education"}"#).unwrap_err();
        assert!(
            err.as_slice()[0]
                .message
                .contains("did you mean qualification?")
        );
    }
}
