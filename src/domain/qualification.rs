use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

/// The qualifications a partner may ask Partner Center to vet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum SettableQualification {
    Education,
    GovernmentCommunityCloud,
    StateOwnedEntity,
}

impl SettableQualification {
    pub const ALL: [SettableQualification; 3] = [
        Self::Education,
        Self::GovernmentCommunityCloud,
        Self::StateOwnedEntity,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Education => "Education",
            Self::GovernmentCommunityCloud => "GovernmentCommunityCloud",
            Self::StateOwnedEntity => "StateOwnedEntity",
        }
    }
}

impl fmt::Display for SettableQualification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A qualification as Partner Center reports it. Open-ended: a value Microsoft adds later
/// is passed through rather than failing the whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Qualification {
    Settable(SettableQualification),
    None,
    Nonprofit,
    Other(String),
}

impl Qualification {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "None" => Self::None,
            "Nonprofit" => Self::Nonprofit,
            other => SettableQualification::ALL
                .into_iter()
                .find(|q| q.as_str().eq_ignore_ascii_case(other))
                .map(Self::Settable)
                .unwrap_or_else(|| Self::Other(other.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Settable(q) => q.as_str(),
            Self::None => "None",
            Self::Nonprofit => "Nonprofit",
            Self::Other(other) => other,
        }
    }
}

impl From<SettableQualification> for Qualification {
    fn from(q: SettableQualification) -> Self {
        Self::Settable(q)
    }
}

impl Serialize for Qualification {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Qualification {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Self::parse(&s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EducationSegment {
    HigherEducation,
    K12,
}

impl EducationSegment {
    pub const ALL: [EducationSegment; 2] = [Self::HigherEducation, Self::K12];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::HigherEducation => "HigherEducation",
            Self::K12 => "K12",
        }
    }
}

/// Where Partner Center's asynchronous vetting stands. Open-ended like [`Qualification`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VettingStatus {
    InReview,
    Approved,
    Denied,
    Other(String),
}

impl VettingStatus {
    pub fn parse(raw: &str) -> Self {
        match raw {
            s if s.eq_ignore_ascii_case("InReview") => Self::InReview,
            s if s.eq_ignore_ascii_case("Approved") => Self::Approved,
            s if s.eq_ignore_ascii_case("Denied") => Self::Denied,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::InReview => "InReview",
            Self::Approved => "Approved",
            Self::Denied => "Denied",
            Self::Other(other) => other,
        }
    }
}

impl Serialize for VettingStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for VettingStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Self::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_upstream_values_pass_through_unchanged() {
        assert_eq!(Qualification::parse("Charity").as_str(), "Charity");
        assert_eq!(VettingStatus::parse("Escalated").as_str(), "Escalated");
    }

    #[test]
    fn known_values_are_normalised() {
        assert_eq!(
            Qualification::parse("education"),
            Qualification::Settable(SettableQualification::Education)
        );
        assert_eq!(VettingStatus::parse("inreview"), VettingStatus::InReview);
        assert_eq!(Qualification::parse("Nonprofit"), Qualification::Nonprofit);
    }
}
