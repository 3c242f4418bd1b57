use serde::Serialize;
use utoipa::ToSchema;

/// One reason a request was refused, pointing at the field a caller has to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The offending field: a body property (`educationSegment`), a path parameter
    /// (`customerId`), a header (`Content-Type`) or `body` for the document as a whole.
    #[schema(example = "educationSegment")]
    pub field: String,
    #[schema(example = "is required when qualification is Education")]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// All the reasons at once, so a caller fixes a request in one round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
#[error("{}", self.summary())]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Adds `error` unless its field is already reported (e.g. as the wrong type).
    pub fn push_once(&mut self, error: FieldError) {
        if !self.mentions(&error.field) {
            self.push(error);
        }
    }

    /// Adds `error` at `index` (clamped), keeping the faults in the order of the fields.
    pub fn insert(&mut self, index: usize, error: FieldError) {
        self.0.insert(index.min(self.0.len()), error);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn extend(&mut self, other: FieldErrors) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn mentions(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }

    pub fn as_slice(&self) -> &[FieldError] {
        &self.0
    }

    /// `Ok(())` when nothing was collected, so validation can end with `errors.into_result()?`.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    fn summary(&self) -> String {
        self.0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl From<FieldError> for FieldErrors {
    fn from(error: FieldError) -> Self {
        Self(vec![error])
    }
}
