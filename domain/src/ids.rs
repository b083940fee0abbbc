//! Identifiers and the one parse error every value type of the domain shares.
//!
//! Owns `MunicipalityCode` (全国地方公共団体コード with its check digit, or an association's own id), `BusinessId`
//! (業務ID), `OperatorKey` (an
//! operator's stable internal identity) and the crate-private text rules reused by the value types. Nothing here
//! does IO.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::municipality::MunicipalityKind;

/// Why a value could not be parsed.
///
/// `Display` is for logs and developers; `message_ja` is what a clerk at the counter reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the value must not be empty")]
    Empty,
    #[error("the value must be at most {max} characters long")]
    TooLong { max: usize },
    #[error("the value must consist of half-width digits (0-9) only")]
    NotHalfWidthDigits,
    #[error("the value must consist of half-width letters and digits (A-Z, a-z, 0-9) only")]
    NotHalfWidthAlphanumeric,
    #[error("the value must be exactly {expected} characters long")]
    WrongLength { expected: usize },
    #[error("the check digit is wrong")]
    BadCheckDigit,
    #[error("the value contains the invalid character {ch:?}")]
    InvalidCharacter { ch: char },
    #[error("the value must be between {min} and {max}")]
    OutOfRange { min: i64, max: i64 },
    #[error("{value:?} is not one of the allowed values")]
    UnknownValue { value: String },
    #[error("the value must be at least {min} characters long")]
    TooShort { min: usize },
    #[error("not a phone number: half-width digits and hyphens, 10 digits (11 for 050/060/070/080/090 numbers)")]
    InvalidPhone,
    #[error("not an e-mail address")]
    InvalidEmail,
    #[error("not an http:// or https:// URL (half-width characters without spaces)")]
    InvalidUrl,
    #[error(
        "not a redirect URI: an https:// URL (or http:// to localhost, 127.0.0.1 or [::1]) without #fragment or user@, half-width characters without spaces"
    )]
    InvalidRedirectUri,
    #[error("the value must be full-width katakana (ァ-ヶ, ー, ・, full-width space); {ch:?} is not")]
    NotFullWidthKatakana { ch: char },
    #[error("the value must be full-width text; {ch:?} is not full-width")]
    NotFullWidth { ch: char },
    #[error("unknown era {code:?}: 1 Meiji, 2 Taisho, 3 Showa, 4 Heisei, 5 Reiwa")]
    UnknownEra { code: char },
    #[error("the date does not exist")]
    NonexistentDate,
    #[error("the date lies outside its era")]
    DateOutsideEra,
    #[error("not a postal code: 7 half-width digits, NNN-NNNN or NNNNNNN")]
    InvalidPostalCode,
    #[error("a field key is 1..=32 of a-z, 0-9 and _, starting with a letter")]
    InvalidFieldKey,
    #[error("not a resident ID (a UUID)")]
    InvalidResidentId,
    #[error("not a 標準ID: a municipality code (or association ID) and 10 half-width digits")]
    InvalidStandardId,
    #[error("not an association ID: A followed by 5 half-width digits, e.g. A00001")]
    InvalidAssociationId,
    #[error(
        "a municipality is registered with its 全国地方公共団体コード (6 half-width digits), not an association ID"
    )]
    NotAMunicipalityCode,
    #[error(
        "an association has no 全国地方公共団体コード: register it with an association ID (A followed by 5 digits, e.g. A00001)"
    )]
    NotAnAssociationId,
    #[error("not base64url (A-Z, a-z, 0-9, - and _, without padding)")]
    NotBase64Url,
    #[error("not an AAGUID: a UUID such as 0fb9bcbc-a0d4-4042-bbb0-559bc1631e28")]
    InvalidAaguid,
    #[error("not a library user number (図書ID): 1 to 32 half-width letters, digits and hyphens")]
    InvalidLibraryId,
    #[error("not a time of day: HH:MM in half-width digits, 00:00 to 24:00 (e.g. 06:30)")]
    InvalidTimeOfDay,
    #[error("not a day of the year: MM-DD in half-width digits, a date that exists (e.g. 12-29)")]
    InvalidMonthDay,
}

impl crate::message::Localized for ParseError {
    /// A short Japanese message for the operator who typed the value.
    fn message_ja(&self) -> String {
        match self {
            Self::Empty => "入力してください".to_owned(),
            Self::TooLong { max } => format!("{max}文字以内で入力してください"),
            Self::NotHalfWidthDigits => "半角数字で入力してください".to_owned(),
            Self::NotHalfWidthAlphanumeric => "半角英数字で入力してください".to_owned(),
            Self::WrongLength { expected } => format!("{expected}桁で入力してください"),
            Self::BadCheckDigit => "検査数字が正しくありません".to_owned(),
            Self::InvalidCharacter { ch } if ch.is_control() => {
                format!("使用できない文字（U+{:04X}）が含まれています", u32::from(*ch))
            }
            Self::InvalidCharacter { ch } => format!("使用できない文字「{ch}」が含まれています"),
            Self::OutOfRange { min, max } => format!("{min}から{max}までの数値で入力してください"),
            Self::UnknownValue { value } => format!("「{value}」は選択できない値です"),
            Self::TooShort { min } => format!("{min}文字以上で入力してください"),
            Self::InvalidPhone => {
                "電話番号は半角数字とハイフンで入力してください（10桁、050・060・070・080・090で始まる番号は11桁）"
                    .to_owned()
            }
            Self::InvalidEmail => "メールアドレスの形式が正しくありません（例: taro@example.jp）".to_owned(),
            Self::InvalidUrl => "http:// または https:// で始まるURLを半角で入力してください".to_owned(),
            Self::InvalidRedirectUri => {
                "リダイレクトURIは https:// で始まるURL（localhost・127.0.0.1・[::1] は http:// も可）を半角で、\
                 #以降と user@ を含めずに入力してください"
                    .to_owned()
            }
            Self::NotFullWidthKatakana { ch } if *ch == ' ' => {
                "全角カタカナで入力してください（半角スペースは使用できません）".to_owned()
            }
            Self::NotFullWidthKatakana { ch } => format!("全角カタカナで入力してください（「{ch}」は使用できません）"),
            Self::NotFullWidth { ch } if *ch == ' ' => {
                "全角で入力してください（半角スペースは使用できません）".to_owned()
            }
            Self::NotFullWidth { ch } => format!("全角で入力してください（「{ch}」は使用できません）"),
            Self::UnknownEra { .. } => {
                "元号は1（明治）・2（大正）・3（昭和）・4（平成）・5（令和）のいずれかで入力してください".to_owned()
            }
            Self::NonexistentDate => "存在しない日付です".to_owned(),
            Self::DateOutsideEra => "元号の期間外の日付です".to_owned(),
            Self::InvalidPostalCode => "郵便番号は半角数字7桁（例: 100-0001）で入力してください".to_owned(),
            Self::InvalidFieldKey => {
                "項目キーは半角英小文字で始まる英小文字・数字・_ の32文字以内で入力してください".to_owned()
            }
            Self::InvalidResidentId => "利用者IDの形式が正しくありません".to_owned(),
            Self::InvalidStandardId => {
                "標準IDは市町村コード6桁（任意団体はA＋数字5桁）と半角数字10桁で入力してください".to_owned()
            }
            Self::InvalidAssociationId => "任意団体IDは「A」と半角数字5桁（例: A00001）で入力してください".to_owned(),
            Self::NotAMunicipalityCode => "市町村は全国地方公共団体コード（半角数字6桁）で登録してください".to_owned(),
            Self::NotAnAssociationId => {
                "任意団体は全国地方公共団体コードではなく任意団体ID（「A」と半角数字5桁、例: A00001）で登録してください"
                    .to_owned()
            }
            Self::NotBase64Url => "base64url（半角英数字・-・_、パディングなし）で入力してください".to_owned(),
            Self::InvalidAaguid => {
                "AAGUIDはUUIDの形式（例: 0fb9bcbc-a0d4-4042-bbb0-559bc1631e28）で入力してください".to_owned()
            }
            Self::InvalidLibraryId => {
                "図書ID（利用者番号）は半角英数字とハイフンの1〜32文字で入力してください".to_owned()
            }
            Self::InvalidTimeOfDay => {
                "時刻は半角で「時:分」（00:00〜24:00、例: 06:30）の形式で入力してください".to_owned()
            }
            Self::InvalidMonthDay => {
                "日付は半角で「月-日」（例: 12-29）の形式で、存在する日付を入力してください".to_owned()
            }
        }
    }
}

/// Free text such as a name: surrounding whitespace (ASCII and the full-width space) is trimmed, then
/// 1..=`max` characters without control characters.
pub(crate) fn parse_text(s: &str, max: usize) -> Result<String, ParseError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    if let Some(ch) = s.chars().find(|c| c.is_control()) {
        return Err(ParseError::InvalidCharacter { ch });
    }
    if s.chars().count() > max {
        return Err(ParseError::TooLong { max });
    }
    Ok(s.to_owned())
}

/// A keyed identifier: 1..=`max` half-width letters and digits, taken as typed (nothing trimmed, case kept).
pub(crate) fn parse_alphanumeric(s: &str, max: usize) -> Result<String, ParseError> {
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ParseError::NotHalfWidthAlphanumeric);
    }
    if s.len() > max {
        return Err(ParseError::TooLong { max });
    }
    Ok(s.to_owned())
}

/// The id of a tenant (市町村・任意団体), the `{code}` of `/api/v1/municipalities/{code}/…`, in one of two forms:
///
/// - a municipality's 全国地方公共団体コード: five digits of JIS X 0402 plus a check digit, e.g. `131016` (千代田区);
/// - an association's ID (任意団体・協議会, e.g. 西関東協議会, which has no such code): `A` followed by five
///   half-width digits, e.g. `A00001`, chosen by the system administrator when he registers it. It starts with a
///   letter, so it can never be (or be mistaken for) a real code, and it has the same length, so every key,
///   column and 標準ID built from a code (`card::StandardId`) holds it unchanged.
///
/// Only half-width ASCII is accepted (the `A` in upper case), and nothing is trimmed: a code is keyed, never
/// guessed. `is_association` tells the forms apart; `parse_for` also checks the form against a tenant's kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MunicipalityCode(String);

impl MunicipalityCode {
    const LEN: usize = 6;
    /// The first character of an association ID.
    pub const ASSOCIATION_PREFIX: char = 'A';

    /// Either form: a check-digit-valid 全国地方公共団体コード or an association ID.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        // Anything that starts with a letter was meant as an association ID: say what that looks like.
        if s.starts_with(|c: char| c.is_ascii_alphabetic()) {
            let number = s.strip_prefix(Self::ASSOCIATION_PREFIX).ok_or(ParseError::InvalidAssociationId)?;
            if number.len() != Self::LEN - 1 || !number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::InvalidAssociationId);
            }
            return Ok(Self(s.to_owned()));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::NotHalfWidthDigits);
        }
        let digits: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
        if digits.len() != Self::LEN {
            return Err(ParseError::WrongLength { expected: Self::LEN });
        }
        if check_digit(&digits[..Self::LEN - 1]) != digits[Self::LEN - 1] {
            return Err(ParseError::BadCheckDigit);
        }
        Ok(Self(s.to_owned()))
    }

    /// The code a tenant of `kind` is registered with: a 全国地方公共団体コード for a municipality, an association
    /// ID for an association (an association has no 全国地方公共団体コード; a municipality always has one).
    pub fn parse_for(kind: MunicipalityKind, s: &str) -> Result<Self, ParseError> {
        let code = Self::parse(s)?;
        match (kind, code.is_association()) {
            (MunicipalityKind::Municipality, true) => Err(ParseError::NotAMunicipalityCode),
            (MunicipalityKind::Association, false) => Err(ParseError::NotAnAssociationId),
            _ => Ok(code),
        }
    }

    /// Whether this is an association ID (`A` + 5 digits) rather than a 全国地方公共団体コード.
    pub fn is_association(&self) -> bool {
        self.0.starts_with(Self::ASSOCIATION_PREFIX)
    }

    /// The kind of tenant this form of code belongs to.
    pub fn kind(&self) -> MunicipalityKind {
        if self.is_association() { MunicipalityKind::Association } else { MunicipalityKind::Municipality }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// S = 6·d1 + 5·d2 + 4·d3 + 3·d4 + 2·d5; check = (11 − S mod 11) mod 10.
fn check_digit(prefix: &[u8]) -> u8 {
    let sum: u32 = prefix.iter().zip((2..=6).rev()).map(|(&d, w)| u32::from(d) * w).sum();
    // Both remainders are below 11, so the result always fits in a digit.
    ((11 - sum % 11) % 10) as u8
}

impl fmt::Display for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for MunicipalityCode {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<MunicipalityCode> for String {
    fn from(code: MunicipalityCode) -> Self {
        code.0
    }
}

/// 業務ID: two half-width digits naming a business system, e.g. `01`.
///
/// `00`–`02` are the built-ins present from the first start (cardap administration, certificate issuance,
/// library); `03`–`99` are free for other systems (the source registers `05`, 手引き I 2.2). Taken as typed:
/// nothing is trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BusinessId(Cow<'static, str>);

impl BusinessId {
    const LEN: usize = 2;

    /// `00`: cardap itself (システム管理, operator administration).
    pub const ADMINISTRATION: BusinessId = BusinessId(Cow::Borrowed("00"));
    /// `01`: 証明書等自動交付 (certificate issuance at kiosks and issuing machines).
    pub const CERTIFICATE_ISSUANCE: BusinessId = BusinessId(Cow::Borrowed("01"));
    /// `02`: 図書館 (the card as a library card).
    pub const LIBRARY: BusinessId = BusinessId(Cow::Borrowed("02"));
    /// The built-ins in order.
    pub const BUILTIN: [BusinessId; 3] = [Self::ADMINISTRATION, Self::CERTIFICATE_ISSUANCE, Self::LIBRARY];

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::NotHalfWidthDigits);
        }
        if s.len() != Self::LEN {
            return Err(ParseError::WrongLength { expected: Self::LEN });
        }
        Ok(Self(Cow::Owned(s.to_owned())))
    }

    pub fn administration() -> Self {
        Self::ADMINISTRATION
    }

    pub fn certificate_issuance() -> Self {
        Self::CERTIFICATE_ISSUANCE
    }

    pub fn library() -> Self {
        Self::LIBRARY
    }

    /// Whether this is one of `00`, `01`, `02`, which exist from the start and are never retired.
    pub fn is_builtin(&self) -> bool {
        Self::BUILTIN.contains(self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BusinessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BusinessId {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<BusinessId> for String {
    fn from(id: BusinessId) -> Self {
        id.0.into_owned()
    }
}

/// The stable internal identity of an operator; unlike the login `OperatorId` it is unique across
/// municipalities. Derived from the login with `OperatorKey::for_login` (see `operator`), so the same
/// municipality + operator ID always gives the same key, also after revocation and re-registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperatorKey(Uuid);

impl OperatorKey {
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for OperatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Localized;
    use proptest::prelude::*;

    fn code_with_check(prefix: u32) -> String {
        let p = format!("{prefix:05}");
        let digits: Vec<u8> = p.bytes().map(|b| b - b'0').collect();
        format!("{p}{}", check_digit(&digits))
    }

    fn full_width(s: &str) -> String {
        s.chars().map(|c| char::from_u32('０' as u32 + (c as u32 - '0' as u32)).unwrap()).collect()
    }

    #[test]
    fn known_codes_parse() {
        for code in ["131016", "011002", "271004", "012025"] {
            assert_eq!(MunicipalityCode::parse(code).unwrap().as_str(), code);
        }
    }

    #[test]
    fn every_five_digit_prefix_has_exactly_one_valid_last_digit() {
        for prefix in 0..100_000 {
            let valid = code_with_check(prefix);
            for last in '0'..='9' {
                let s = format!("{}{last}", &valid[..5]);
                assert_eq!(MunicipalityCode::parse(&s).is_ok(), s == valid, "{s}");
            }
        }
    }

    #[test]
    fn code_errors_name_the_reason() {
        assert_eq!(MunicipalityCode::parse(""), Err(ParseError::Empty));
        assert_eq!(MunicipalityCode::parse("13101"), Err(ParseError::WrongLength { expected: 6 }));
        assert_eq!(MunicipalityCode::parse("1310160"), Err(ParseError::WrongLength { expected: 6 }));
        assert_eq!(MunicipalityCode::parse("131017"), Err(ParseError::BadCheckDigit));
        assert_eq!(MunicipalityCode::parse(" 131016"), Err(ParseError::NotHalfWidthDigits));
        assert_eq!(MunicipalityCode::parse("１３１０１６"), Err(ParseError::NotHalfWidthDigits));
        assert_eq!(MunicipalityCode::parse("١٣١٠١٦"), Err(ParseError::NotHalfWidthDigits));
    }

    #[test]
    fn code_is_a_plain_json_string_and_deserializes_through_parse() {
        let code = MunicipalityCode::parse("131016").unwrap();
        assert_eq!(serde_json::to_value(&code).unwrap(), serde_json::json!("131016"));
        assert_eq!(serde_json::from_str::<MunicipalityCode>("\"131016\"").unwrap(), code);
        assert!(serde_json::from_str::<MunicipalityCode>("\"131017\"").is_err());
        assert!(serde_json::from_str::<MunicipalityCode>("131016").is_err());
    }

    #[test]
    fn an_association_id_is_a_then_five_digits_and_never_a_real_code() {
        let id = MunicipalityCode::parse("A00001").unwrap();
        assert_eq!(id.as_str(), "A00001");
        assert!(id.is_association());
        assert_eq!(id.kind(), MunicipalityKind::Association);
        assert!(!MunicipalityCode::parse("131016").unwrap().is_association());
        assert_eq!(MunicipalityCode::parse("131016").unwrap().kind(), MunicipalityKind::Municipality);
        for bad in ["A", "A0001", "A000001", "A0000a", "a00001", "AA0001", "A００００１", "A-0001", "B00001", "abc"]
        {
            assert_eq!(MunicipalityCode::parse(bad), Err(ParseError::InvalidAssociationId), "{bad}");
        }
        assert_eq!(serde_json::to_value(&id).unwrap(), serde_json::json!("A00001"));
        assert_eq!(serde_json::from_str::<MunicipalityCode>("\"A00001\"").unwrap(), id);
    }

    #[test]
    fn the_form_of_the_code_must_match_the_kind_of_tenant() {
        use MunicipalityKind::{Association, Municipality};
        assert_eq!(MunicipalityCode::parse_for(Municipality, "131016"), MunicipalityCode::parse("131016"));
        assert_eq!(MunicipalityCode::parse_for(Association, "A00001"), MunicipalityCode::parse("A00001"));
        assert_eq!(MunicipalityCode::parse_for(Municipality, "A00001"), Err(ParseError::NotAMunicipalityCode));
        assert_eq!(MunicipalityCode::parse_for(Association, "131016"), Err(ParseError::NotAnAssociationId));
        // A form error is reported as such, whatever the kind.
        assert_eq!(MunicipalityCode::parse_for(Association, "131017"), Err(ParseError::BadCheckDigit));
        assert_eq!(MunicipalityCode::parse_for(Municipality, "A1"), Err(ParseError::InvalidAssociationId));
        for e in [ParseError::InvalidAssociationId, ParseError::NotAMunicipalityCode, ParseError::NotAnAssociationId] {
            assert!(e.message_ja().contains('A') || e.message_ja().contains("全国地方公共団体コード"), "{e}");
        }
    }

    #[test]
    fn messages_ja_are_short_and_specific() {
        assert_eq!(ParseError::WrongLength { expected: 6 }.message_ja(), "6桁で入力してください");
        assert_eq!(ParseError::BadCheckDigit.message_ja(), "検査数字が正しくありません");
        assert_eq!(ParseError::TooLong { max: 50 }.message_ja(), "50文字以内で入力してください");
        assert_eq!(
            ParseError::InvalidCharacter { ch: '\t' }.message_ja(),
            "使用できない文字（U+0009）が含まれています"
        );
    }

    #[test]
    fn operator_key_is_a_transparent_uuid() {
        let uuid = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001);
        let key = OperatorKey::from_uuid(uuid);
        assert_eq!(key.as_uuid(), uuid);
        assert_eq!(key.to_string(), uuid.to_string());
        assert_eq!(serde_json::to_value(key).unwrap(), serde_json::json!(uuid.to_string()));
        assert_eq!(serde_json::from_value::<OperatorKey>(serde_json::json!(uuid.to_string())).unwrap(), key);
    }

    #[test]
    fn builtin_business_ids() {
        assert_eq!(BusinessId::ADMINISTRATION.as_str(), "00");
        assert_eq!(BusinessId::certificate_issuance(), BusinessId::parse("01").unwrap());
        assert_eq!(BusinessId::library().to_string(), "02");
        for id in BusinessId::BUILTIN {
            assert!(id.is_builtin());
            assert_eq!(BusinessId::parse(id.as_str()), Ok(id.clone()));
        }
        assert!(!BusinessId::parse("03").unwrap().is_builtin());
        assert!(!BusinessId::parse("10").unwrap().is_builtin());
        // Borrowed and owned compare, order and hash by their digits.
        assert!(BusinessId::LIBRARY < BusinessId::parse("10").unwrap());
        assert_eq!(serde_json::to_value(BusinessId::LIBRARY).unwrap(), serde_json::json!("02"));
    }

    #[test]
    fn business_id_errors_name_the_reason() {
        assert_eq!(BusinessId::parse(""), Err(ParseError::Empty));
        assert_eq!(BusinessId::parse("1"), Err(ParseError::WrongLength { expected: 2 }));
        assert_eq!(BusinessId::parse("001"), Err(ParseError::WrongLength { expected: 2 }));
        assert_eq!(BusinessId::parse("０１"), Err(ParseError::NotHalfWidthDigits));
        assert_eq!(BusinessId::parse(" 1"), Err(ParseError::NotHalfWidthDigits));
        assert!(serde_json::from_str::<BusinessId>("\"1a\"").is_err());
        assert!(serde_json::from_str::<BusinessId>("1").is_err());
    }

    #[test]
    fn alphanumeric_rule() {
        assert_eq!(parse_alphanumeric("Ab0", 3), Ok("Ab0".to_owned()));
        assert_eq!(parse_alphanumeric("", 3), Err(ParseError::Empty));
        assert_eq!(parse_alphanumeric("Ab01", 3), Err(ParseError::TooLong { max: 3 }));
        assert_eq!(parse_alphanumeric("A-1", 3), Err(ParseError::NotHalfWidthAlphanumeric));
    }

    #[test]
    fn new_messages_ja() {
        assert_eq!(ParseError::TooShort { min: 8 }.message_ja(), "8文字以上で入力してください");
        for e in [ParseError::InvalidPhone, ParseError::InvalidEmail, ParseError::InvalidUrl] {
            assert!(!e.message_ja().is_empty() && !e.to_string().is_empty());
        }
    }

    proptest! {
        #[test]
        fn every_two_digit_business_id_parses_and_round_trips(n in 0u32..100) {
            let s = format!("{n:02}");
            let id = BusinessId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(id.is_builtin(), n <= 2);
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<BusinessId>(&json).unwrap(), id.clone());
            prop_assert_eq!(String::from(id), s);
        }

        #[test]
        fn business_ids_of_another_length_are_rejected(s in "[0-9]{3,8}|[0-9]") {
            prop_assert_eq!(BusinessId::parse(&s), Err(ParseError::WrongLength { expected: 2 }));
        }

        #[test]
        fn business_ids_with_a_non_digit_are_rejected(s in "\\PC{1,4}") {
            prop_assume!(s.chars().any(|c| !c.is_ascii_digit()));
            prop_assert_eq!(BusinessId::parse(&s), Err(ParseError::NotHalfWidthDigits));
        }

        #[test]
        fn every_prefix_with_its_check_digit_parses_and_round_trips(prefix in 0u32..100_000) {
            let s = code_with_check(prefix);
            let code = MunicipalityCode::parse(&s).unwrap();
            prop_assert_eq!(code.as_str(), s.as_str());
            prop_assert_eq!(code.to_string(), s.clone());
            let json = serde_json::to_string(&code).unwrap();
            prop_assert_eq!(serde_json::from_str::<MunicipalityCode>(&json).unwrap(), code.clone());
            prop_assert_eq!(String::from(code), s);
        }

        #[test]
        fn any_other_last_digit_is_rejected(prefix in 0u32..100_000, bump in 1u8..10) {
            let valid = code_with_check(prefix);
            let last = valid.as_bytes()[5] - b'0';
            let s = format!("{}{}", &valid[..5], (last + bump) % 10);
            prop_assert_eq!(MunicipalityCode::parse(&s), Err(ParseError::BadCheckDigit));
        }

        #[test]
        fn a_non_ascii_digit_anywhere_is_rejected(
            prefix in 0u32..100_000,
            at in 0usize..6,
            ch in any::<char>().prop_filter("not an ASCII digit", |c| !c.is_ascii_digit()),
        ) {
            // A letter in front makes it (an attempt at) an association ID, tested on its own.
            prop_assume!(at != 0 || !ch.is_ascii_alphabetic());
            let mut chars: Vec<char> = code_with_check(prefix).chars().collect();
            chars[at] = ch;
            let s: String = chars.into_iter().collect();
            prop_assert_eq!(MunicipalityCode::parse(&s), Err(ParseError::NotHalfWidthDigits));
        }

        #[test]
        fn strings_with_any_non_digit_are_rejected(s in "\\PC*") {
            prop_assume!(s.chars().any(|c| !c.is_ascii_digit()));
            let association = s.len() == 6 && s.starts_with('A') && s[1..].bytes().all(|b| b.is_ascii_digit());
            prop_assume!(!association);
            prop_assert!(MunicipalityCode::parse(&s).is_err());
        }

        #[test]
        fn every_association_id_parses_round_trips_and_is_no_municipality_code(n in 0u32..100_000) {
            let s = format!("A{n:05}");
            let id = MunicipalityCode::parse(&s).unwrap();
            prop_assert!(id.is_association());
            prop_assert_eq!(id.as_str(), s.as_str());
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<MunicipalityCode>(&json).unwrap(), id.clone());
            prop_assert_eq!(
                MunicipalityCode::parse_for(MunicipalityKind::Municipality, &s),
                Err(ParseError::NotAMunicipalityCode)
            );
            // A real code never takes this form, and is never an association.
            let real = MunicipalityCode::parse(&code_with_check(n)).unwrap();
            prop_assert!(!real.is_association());
            prop_assert_ne!(real, id);
        }

        #[test]
        fn full_width_digits_are_rejected(prefix in 0u32..100_000) {
            let s = full_width(&code_with_check(prefix));
            prop_assert_eq!(MunicipalityCode::parse(&s), Err(ParseError::NotHalfWidthDigits));
        }

        #[test]
        fn digit_strings_of_another_length_are_rejected(s in "[0-9]{1,5}|[0-9]{7,12}") {
            prop_assert_eq!(MunicipalityCode::parse(&s), Err(ParseError::WrongLength { expected: 6 }));
        }
    }
}
