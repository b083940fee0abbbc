//! Why and when a resident's personal data may be erased (消去, issue 12 point 6): the reason an erasure records,
//! the reference of a documented request, and the retention period after a move-out.
//!
//! Owns [`ErasureReason`], [`ErasureReference`] and [`RetentionPeriod`]. None of them is personal data: the
//! erasure event that carries them stays readable for good (and may be forwarded to business systems), so the
//! reference takes only half-width letters, digits and `-_/.#` — a document number, never a name or an address.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ParseError;
use crate::contact::string_newtype;

/// Why a resident is erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureReason {
    /// He moved out (転出) and the municipality's retention period since then has passed.
    RetentionExpired,
    /// A documented request (本人の申出・文書による請求), named by the document's reference number; allowed
    /// before a move-out too.
    Request { reference: ErasureReference },
}

impl ErasureReason {
    /// The stored and transmitted name of the kind: `retention_expired` or `request`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RetentionExpired => "retention_expired",
            Self::Request { .. } => "request",
        }
    }

    /// The request's reference, if any.
    pub fn reference(&self) -> Option<&ErasureReference> {
        match self {
            Self::RetentionExpired => None,
            Self::Request { reference } => Some(reference),
        }
    }
}

/// The reference of a documented erasure request, e.g. `R8-SOMU-0123`: 1..=40 half-width letters, digits and
/// `-`, `_`, `/`, `.`, `#`. Only characters a document number needs, so that no name or address can be typed in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ErasureReference(String);

impl ErasureReference {
    pub const MAX_CHARS: usize = 40;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if let Some(ch) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_/.#".contains(*c))) {
            return Err(ParseError::InvalidCharacter { ch });
        }
        if s.len() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(ErasureReference);

/// How long a moved-out resident's personal data is kept before it may be erased, in whole days (1 or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetentionPeriod(u32);

impl RetentionPeriod {
    /// Five years (1826 days): a common 文書保存年限.
    pub const FIVE_YEARS: RetentionPeriod = RetentionPeriod(1826);

    pub fn days(days: u32) -> Result<Self, ParseError> {
        if days == 0 {
            return Err(ParseError::OutOfRange { min: 1, max: i64::from(u32::MAX) });
        }
        Ok(Self(days))
    }

    pub fn in_days(self) -> u32 {
        self.0
    }

    pub fn seconds(self) -> i64 {
        i64::from(self.0) * 86_400
    }
}

impl fmt::Display for RetentionPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} days", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_reference_is_a_document_number() {
        assert_eq!(ErasureReference::parse(" R8-SOMU/0123#2 ").unwrap().as_str(), "R8-SOMU/0123#2");
        assert_eq!(ErasureReference::parse(""), Err(ParseError::Empty));
        assert_eq!(ErasureReference::parse("山田太郎"), Err(ParseError::InvalidCharacter { ch: '山' }));
        assert_eq!(ErasureReference::parse("Yamada Taro"), Err(ParseError::InvalidCharacter { ch: ' ' }));
        assert_eq!(ErasureReference::parse(&"A".repeat(41)), Err(ParseError::TooLong { max: 40 }));
    }

    #[test]
    fn a_retention_period_has_at_least_one_day() {
        assert!(RetentionPeriod::days(0).is_err());
        assert_eq!(RetentionPeriod::days(2).unwrap().seconds(), 172_800);
    }

    proptest! {
        #[test]
        fn references_round_trip(s in "[A-Za-z0-9_/.#-]{1,40}") {
            let parsed = ErasureReference::parse(&s).unwrap();
            prop_assert_eq!(parsed.as_str(), s.as_str());
            prop_assert_eq!(ErasureReference::parse(parsed.as_str()).unwrap(), parsed);
        }

        #[test]
        fn references_refuse_anything_else(s in "[A-Za-z0-9]{0,5}[^A-Za-z0-9_/.#\\s-][A-Za-z0-9]{0,5}") {
            let refused = matches!(ErasureReference::parse(&s), Err(ParseError::InvalidCharacter { .. }));
            prop_assert!(refused, "{:?} was accepted", s);
        }
    }
}
