//! Validated identifiers.
//!
//! Every identifier on the wire (`road_id`, `bay_id`, `barrier_id`,
//! `device_id`, `event_id`) is 1-64 characters of `A-Z a-z 0-9 - _ .`. Each is
//! parsed once at the edge into its own newtype so that a bay id can never be
//! passed where a road id is expected.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest identifier accepted, in characters (all are ASCII, so also bytes).
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is {0} characters long; at most 64 are allowed")]
    TooLong(usize),
    #[error("contains {0:?}; only A-Z, a-z, 0-9, '-', '_' and '.' are allowed")]
    BadChar(char),
}

/// Checks the identifier rule shared by every id in the contract.
pub fn check_identifier(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::BadChar(c));
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(s.len()));
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Shared text: a clone is a reference count, not a copy, so the
        /// street, its index and its states hold one copy of each id.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Parses `s`, enforcing the identifier rule.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_identifier(s).map(|()| Self(Arc::from(s)))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// A road, e.g. `qingfeng-road`.
    RoadId
);
identifier!(
    /// A parking bay, stable across layout revisions, e.g. `QF-S-014`.
    BayId
);
identifier!(
    /// A barrier (planter, bollard, fence), e.g. `QF-P-033`.
    BarrierId
);
identifier!(
    /// A field device: an in-ground sensor or a warden's handheld.
    DeviceId
);
identifier!(
    /// An event's id, unique per device.
    EventId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        assert!(BayId::parse("QF-S-014").is_ok());
        assert!(RoadId::parse("a.b_c-D9").is_ok());
        assert!(EventId::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters() {
        assert_eq!(BayId::parse(""), Err(IdError::Empty));
        assert_eq!(BayId::parse(&"x".repeat(65)), Err(IdError::TooLong(65)));
        assert_eq!(BayId::parse("QF S"), Err(IdError::BadChar(' ')));
        assert_eq!(BayId::parse("庆丰"), Err(IdError::BadChar('庆')));
        assert_eq!(BayId::parse("a/b"), Err(IdError::BadChar('/')));
    }

    #[test]
    fn deserialising_enforces_the_rule() {
        assert!(serde_json::from_str::<DeviceId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<DeviceId>("\"not ok\"").is_err());
    }
}
