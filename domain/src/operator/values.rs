//! The operator's value types: login ID, name, roles, the management information of the registration screen
//! (手引き I 2.1(5)①) and the business-internal ID (業務内ID) a business-system administrator maps him to.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ParseError;
use crate::contact::{Email, Phone, Sex, Text100, Text200, string_newtype};
use crate::ids::{parse_alphanumeric, parse_text};

/// オペレータID, the login ID, e.g. `OP0501`: half-width alphanumeric (手引き I 2.1(5)①), 1..=32 characters.
///
/// The source gives no maximum length; 32 is ours. Case is kept as typed and nothing is trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperatorId(String);

impl OperatorId {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_alphanumeric(s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(OperatorId);

/// 氏名・組織名 (required): trimmed, 1..=100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperatorName(String);

impl OperatorName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_text(s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(OperatorName);

/// 内線 (extension), e.g. `1234` or `12-345`: 1..=10 half-width digits or hyphens, taken as typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Extension(String);

impl Extension {
    pub const MAX_CHARS: usize = 10;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if let Some(ch) = s.chars().find(|&c| !c.is_ascii_digit() && c != '-') {
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

string_newtype!(Extension);

/// 業務内ID, e.g. `1000000010`: the operator's identity inside one business system, which carries that
/// system's own rights (手引き I 2.1(2)③). 1..=32 half-width alphanumerics, taken as typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InternalId(String);

impl InternalId {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_alphanumeric(s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(InternalId);

/// What an operator may do. Only the system administrator works across municipalities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// システム管理: registers municipalities, bulk operator work, migration. Belongs to no municipality.
    SystemAdmin,
    /// 運用管理部門: registers the municipality's operators and biometrics.
    OperationsManager,
    /// 業務システムの管理者: maps operators to business-internal IDs.
    BusinessAdmin,
    /// 窓口: registers residents.
    Clerk,
    /// Reads history, changes nothing.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Self::SystemAdmin, Self::OperationsManager, Self::BusinessAdmin, Self::Clerk, Self::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SystemAdmin => "system_admin",
            Self::OperationsManager => "operations_manager",
            Self::BusinessAdmin => "business_admin",
            Self::Clerk => "clerk",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| ParseError::UnknownValue { value: s.to_owned() })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operator management information (操作者管理情報) of the registration screen; only the name is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorProfile {
    /// 氏名・組織名.
    pub name: OperatorName,
    /// 部門.
    pub department: Option<Text100>,
    /// 性別.
    pub sex: Option<Sex>,
    /// 連絡先電話.
    pub phone: Option<Phone>,
    /// 内線.
    pub extension: Option<Extension>,
    /// E-Mail.
    pub email: Option<Email>,
    /// 情報: free text the municipality uses as it likes (also an export filter).
    pub info: Option<Text200>,
    /// 付帯情報: further free text.
    pub extra: Option<Text200>,
}

impl OperatorProfile {
    /// A profile with only the required name.
    pub fn named(name: OperatorName) -> Self {
        Self { name, department: None, sex: None, phone: None, extension: None, email: None, info: None, extra: None }
    }
}

/// Some fields of the operator management information (a PATCH): `None` leaves a field as it is, `Some(None)`
/// clears an optional one. Merged with the profile as it is when the change is decided, so a concurrent change
/// of another field is never reverted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OperatorProfilePatch {
    pub name: Option<OperatorName>,
    pub department: Option<Option<Text100>>,
    pub sex: Option<Option<Sex>>,
    pub phone: Option<Option<Phone>>,
    pub extension: Option<Option<Extension>>,
    pub email: Option<Option<Email>>,
    pub info: Option<Option<Text200>>,
    pub extra: Option<Option<Text200>>,
}

impl OperatorProfilePatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The profile after this patch.
    pub fn apply(&self, current: &OperatorProfile) -> OperatorProfile {
        use crate::patch::merged as merge;
        OperatorProfile {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            department: merge(&current.department, &self.department),
            sex: merge(&current.sex, &self.sex),
            phone: merge(&current.phone, &self.phone),
            extension: merge(&current.extension, &self.extension),
            email: merge(&current.email, &self.email),
            info: merge(&current.info, &self.info),
            extra: merge(&current.extra, &self.extra),
        }
    }
}

/// One business system's 業務内ID for an operator, with that system's role (業務権限) as its administrator
/// names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InternalIdAssignment {
    pub internal_id: InternalId,
    pub role: Option<Text100>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn roles_parse_their_own_names_only() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
            assert_eq!(serde_json::to_value(role).unwrap(), json!(role.as_str()));
        }
        assert_eq!(Role::parse("admin"), Err(ParseError::UnknownValue { value: "admin".into() }));
    }

    #[test]
    fn operator_id_and_name_errors() {
        assert_eq!(OperatorId::parse(""), Err(ParseError::Empty));
        assert_eq!(OperatorId::parse(" OP0501"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(OperatorId::parse("ＯＰ０５０１"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(OperatorId::parse("op_0501"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(OperatorName::parse("\u{3000}"), Err(ParseError::Empty));
        assert_eq!(OperatorName::parse(&"x".repeat(101)), Err(ParseError::TooLong { max: 100 }));
        assert_eq!(OperatorName::parse("南江戸市\u{7f}"), Err(ParseError::InvalidCharacter { ch: '\u{7f}' }));
    }

    #[test]
    fn extension_errors() {
        assert_eq!(Extension::parse("12-345").unwrap().as_str(), "12-345");
        assert_eq!(Extension::parse(""), Err(ParseError::Empty));
        assert_eq!(Extension::parse("１２３"), Err(ParseError::InvalidCharacter { ch: '１' }));
        assert_eq!(Extension::parse("123 "), Err(ParseError::InvalidCharacter { ch: ' ' }));
        assert_eq!(Extension::parse("12345678901"), Err(ParseError::TooLong { max: 10 }));
    }

    #[test]
    fn internal_id_errors() {
        assert_eq!(InternalId::parse("1000000010").unwrap().as_str(), "1000000010");
        assert_eq!(InternalId::parse(""), Err(ParseError::Empty));
        assert_eq!(InternalId::parse("1000-0010"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(InternalId::parse(&"1".repeat(33)), Err(ParseError::TooLong { max: 32 }));
    }

    proptest! {
        #[test]
        fn alphanumeric_ids_up_to_32_parse_and_round_trip(s in "[A-Za-z0-9]{1,32}") {
            let id = OperatorId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(id.to_string(), s.clone());
            let json = serde_json::to_value(&id).unwrap();
            prop_assert_eq!(serde_json::from_value::<OperatorId>(json).unwrap(), id);
            let internal = InternalId::parse(&s).unwrap();
            prop_assert_eq!(internal.as_str(), s.as_str());
            let json = serde_json::to_value(&internal).unwrap();
            prop_assert_eq!(serde_json::from_value::<InternalId>(json).unwrap(), internal);
        }

        #[test]
        fn ids_longer_than_32_are_rejected(s in "[A-Za-z0-9]{33,64}") {
            prop_assert_eq!(OperatorId::parse(&s), Err(ParseError::TooLong { max: 32 }));
            prop_assert_eq!(InternalId::parse(&s), Err(ParseError::TooLong { max: 32 }));
        }

        #[test]
        fn ids_with_any_other_character_are_rejected(
            left in "[A-Za-z0-9]{0,10}",
            ch in any::<char>().prop_filter("not ASCII alphanumeric", |c| !c.is_ascii_alphanumeric()),
            right in "[A-Za-z0-9]{0,10}",
        ) {
            let s = format!("{left}{ch}{right}");
            prop_assert_eq!(OperatorId::parse(&s), Err(ParseError::NotHalfWidthAlphanumeric));
            prop_assert_eq!(InternalId::parse(&s), Err(ParseError::NotHalfWidthAlphanumeric));
        }

        #[test]
        fn names_parse_trimmed_and_round_trip(
            core in "[^\\p{Cc}\\s]([^\\p{Cc}]{0,98}[^\\p{Cc}\\s])?",
            pad in "[ \u{3000}]{0,3}",
        ) {
            let name = OperatorName::parse(&format!("{pad}{core}{pad}")).unwrap();
            prop_assert_eq!(name.as_str(), core.as_str());
            let json = serde_json::to_value(&name).unwrap();
            prop_assert_eq!(serde_json::from_value::<OperatorName>(json).unwrap(), name);
        }

        #[test]
        fn names_longer_than_100_are_rejected(core in "[^\\p{Cc}\\s]{101,140}") {
            prop_assert_eq!(OperatorName::parse(&core), Err(ParseError::TooLong { max: 100 }));
        }

        #[test]
        fn extensions_of_digits_and_hyphens_parse_and_round_trip(s in "[0-9-]{1,10}") {
            let ext = Extension::parse(&s).unwrap();
            prop_assert_eq!(ext.as_str(), s.as_str());
            let json = serde_json::to_value(&ext).unwrap();
            prop_assert_eq!(serde_json::from_value::<Extension>(json).unwrap(), ext);
        }

        #[test]
        fn extensions_with_another_character_or_too_long_are_rejected(
            s in "[0-9-]{0,5}",
            ch in any::<char>().prop_filter("not a digit or hyphen", |c| !c.is_ascii_digit() && *c != '-'),
            long in "[0-9-]{11,20}",
        ) {
            prop_assert_eq!(Extension::parse(&format!("{s}{ch}")), Err(ParseError::InvalidCharacter { ch }));
            prop_assert_eq!(Extension::parse(&long), Err(ParseError::TooLong { max: 10 }));
        }
    }
}
