use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Qualification, VettingStatus};

/// A qualification and its vetting, as the gateway promises it whatever shape Partner Center used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualificationStatus {
    /// Education, GovernmentCommunityCloud, StateOwnedEntity, Nonprofit, or a value Partner Center adds later.
    #[schema(value_type = String, example = "Education")]
    pub qualification: Qualification,
    /// InReview, Approved or Denied; unknown upstream values pass through. Absent for StateOwnedEntity.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "InReview")]
    pub vetting_status: Option<VettingStatus>,
    /// Why vetting denied the qualification.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Not an Education Customer")]
    pub vetting_reason: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime, example = "2020-12-04T20:54:24Z")]
    pub vetting_create_date: Option<OffsetDateTime>,
}

/// One of the partner's GCC validation codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerValidationCode {
    /// Send this as `validationCode` in a GovernmentCommunityCloud request.
    #[schema(example = "123456")]
    pub validation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Contoso Government")]
    pub organization_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_creates: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_creates: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}
