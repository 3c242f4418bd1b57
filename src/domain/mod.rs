//! Validated types: once a value is one of these, it cannot be wrong.

mod customer_id;
mod field_error;
mod idempotency_key;
mod ids;
mod qualification;
mod qualification_request;
mod qualification_status;
mod trace_context;

pub use customer_id::CustomerId;
pub use field_error::{FieldError, FieldErrors};
pub use idempotency_key::{IDEMPOTENCY_KEY_HEADER, IdempotencyKey};
pub use ids::{CorrelationId, RequestId};
pub(crate) use ids::{hex, push_hex};
pub use qualification::{EducationSegment, Qualification, SettableQualification, VettingStatus};
pub use qualification_request::{QualificationRequest, QualificationRequestBody, ValidationCode};
pub use qualification_status::{PartnerValidationCode, QualificationStatus};
pub use trace_context::{TRACEPARENT, TRACESTATE, TraceContext};
