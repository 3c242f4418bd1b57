use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};

use super::{Qualification, VettingStatus};

/// A qualification and its vetting, as the gateway promises it whatever shape Partner Center used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualificationStatus {
    #[schema(schema_with = qualification_schema)]
    pub qualification: Qualification,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = vetting_status_schema)]
    pub vetting_status: Option<VettingStatus>,
    /// Why vetting denied the qualification.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "Not an Education Customer")]
    pub vetting_reason: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(nullable = false, value_type = Option<String>, format = DateTime, example = "2020-12-04T20:54:24Z")]
    pub vetting_create_date: Option<OffsetDateTime>,
}

/// The known values, and any other string: Partner Center adds values over time and the
/// gateway passes them on rather than failing.
fn open_ended(known: &[&str], description: &str, example: &str) -> Schema {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(known.iter().copied())),
        )
        .item(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .examples([example])
        .build()
        .into()
}

fn qualification_schema() -> Schema {
    open_ended(
        &[
            "Education",
            "GovernmentCommunityCloud",
            "StateOwnedEntity",
            "Nonprofit",
            "None",
        ],
        "The qualification; a value Partner Center adds later passes through as it is.",
        "Education",
    )
}

fn vetting_status_schema() -> Schema {
    open_ended(
        &["InReview", "Approved", "Denied"],
        "Where vetting stands; a value Partner Center adds later passes through as it is. Absent for StateOwnedEntity.",
        "InReview",
    )
}

/// One of the partner's GCC validation codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerValidationCode {
    /// Send this as `validationCode` in a GovernmentCommunityCloud request.
    #[schema(example = "123456")]
    pub validation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub partner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "Contoso Government")]
    pub organization_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub max_creates: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub remaining_creates: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub etag: Option<String>,
}
