//! Contact and free-text value types shared by operators, business systems and residents: 連絡先電話,
//! E-Mail, URLs, short optional texts and 性別 (ISO 5218).
//!
//! Each parses once at the edge and is then trusted everywhere. Keyed values (phone, e-mail, URL) are taken
//! as typed: nothing is trimmed or normalised, so what is stored is what the clerk saw. Free text is trimmed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ParseError;
use crate::ids::parse_text;

/// Implements `Display`, `TryFrom<String>` (through `parse`) and `From<T> for String` for a string newtype.
macro_rules! string_newtype {
    ($t:ident) => {
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $t {
            type Error = $crate::ParseError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$t> for String {
            fn from(value: $t) -> Self {
                value.0
            }
        }
    };
}
pub(crate) use string_newtype;

/// 連絡先電話, e.g. `03-3333-4444` or `090-1234-5678`: half-width digits with optional single hyphens between
/// them, starting with `0`; 10 digits, or 11 for numbers starting with 050, 060, 070, 080 or 090 (IP, FMC,
/// mobile and 0800 free dial). Stored as typed, hyphens included.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    /// Prefixes of the 11-digit numbers.
    const ELEVEN_DIGIT_PREFIXES: [&'static str; 5] = ["050", "060", "070", "080", "090"];

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        let well_formed = s.bytes().all(|b| b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--");
        if !well_formed {
            return Err(ParseError::InvalidPhone);
        }
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        let length_fits = match digits.len() {
            10 => true,
            11 => Self::ELEVEN_DIGIT_PREFIXES.iter().any(|p| digits.starts_with(p)),
            _ => false,
        };
        if !digits.starts_with('0') || !length_fits {
            return Err(ParseError::InvalidPhone);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(Phone);

/// E-Mail, e.g. `taro@example.jp`: printable ASCII without spaces, at most 254 characters, exactly one `@`
/// with a non-empty local part before it and a domain with a dot after it. Stored as typed.
///
/// Deliberately no more than that: whether mail arrives is for the mail server to say.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub const MAX_CHARS: usize = 254;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError::InvalidEmail);
        }
        if s.len() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        let valid = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
        if !valid {
            return Err(ParseError::InvalidEmail);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(Email);

/// A web address (業務トップURL, 業務画像 …): `http://` or `https://` (scheme in any case) followed by at least
/// one character, printable ASCII without spaces, at most 2048 characters. Stored as typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Url(String);

impl Url {
    pub const MAX_CHARS: usize = 2048;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError::InvalidUrl);
        }
        if s.len() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        let has_scheme = |scheme: &str| {
            s.get(..scheme.len()).is_some_and(|p| p.eq_ignore_ascii_case(scheme)) && s.len() > scheme.len()
        };
        if !has_scheme("http://") && !has_scheme("https://") {
            return Err(ParseError::InvalidUrl);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(Url);

/// Optional free text of at most `MAX` characters (部門, 情報, 付帯情報, 管理組織名 …): surrounding whitespace
/// (ASCII and the full-width space) is trimmed, then 1..=`MAX` characters without control characters.
///
/// An empty field is `None` at the edge, never an empty text. Use the aliases `Text100` and `Text200`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShortText<const MAX: usize>(String);

/// Free text of at most 100 characters.
pub type Text100 = ShortText<100>;
/// Free text of at most 200 characters.
pub type Text200 = ShortText<200>;

impl<const MAX: usize> ShortText<MAX> {
    pub const MAX_CHARS: usize = MAX;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_text(s, MAX).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> fmt::Display for ShortText<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> TryFrom<String> for ShortText<MAX> {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl<const MAX: usize> From<ShortText<MAX>> for String {
    fn from(text: ShortText<MAX>) -> Self {
        text.0
    }
}

/// 性別 as ISO 5218 codes; stored and sent as the digit string (`"1"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Sex {
    /// `0`: not known (the screen's 指定なし).
    NotKnown,
    /// `1`: male (男性).
    Male,
    /// `2`: female (女性).
    Female,
    /// `9`: not applicable (適用不能).
    NotApplicable,
}

impl Sex {
    pub const ALL: [Sex; 4] = [Self::NotKnown, Self::Male, Self::Female, Self::NotApplicable];

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|sex| sex.code() == s)
            .ok_or_else(|| ParseError::UnknownValue { value: s.to_owned() })
    }

    /// The ISO 5218 digit.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotKnown => "0",
            Self::Male => "1",
            Self::Female => "2",
            Self::NotApplicable => "9",
        }
    }

    /// The label on the screens.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::NotKnown => "指定なし",
            Self::Male => "男性",
            Self::Female => "女性",
            Self::NotApplicable => "適用不能",
        }
    }
}

impl fmt::Display for Sex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl TryFrom<String> for Sex {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Sex> for &'static str {
    fn from(sex: Sex) -> Self {
        sex.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn phones_as_the_screens_show_them() {
        for s in ["03-3333-4444", "0333334444", "090-1234-5678", "09012345678", "0120-123-456", "0800-123-4567"] {
            assert_eq!(Phone::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(serde_json::to_value(Phone::parse("03-3333-4444").unwrap()).unwrap(), json!("03-3333-4444"));
    }

    #[test]
    fn phone_errors() {
        assert_eq!(Phone::parse(""), Err(ParseError::Empty));
        for s in [
            "０３-３３３３-４４４４", // full-width digits
            "03ー3333ー4444",         // full-width long vowel mark as a hyphen
            "03 3333 4444",
            " 0333334444",
            "-0333334444",
            "0333334444-",
            "03--33334444",
            "3333444455",   // no leading 0
            "033333444",    // 9 digits
            "03333344445",  // 11 digits, not a mobile/IP prefix
            "090123456789", // 12 digits
            "+81-3-3333-4444",
        ] {
            assert_eq!(Phone::parse(s), Err(ParseError::InvalidPhone), "{s}");
        }
        assert!(serde_json::from_value::<Phone>(json!("03-3333-444")).is_err());
    }

    #[test]
    fn email_errors() {
        assert_eq!(Email::parse(""), Err(ParseError::Empty));
        for s in [
            "taro",
            "@example.jp",
            "taro@",
            "taro@localhost",
            "taro@@example.jp",
            "ta@ro@example.jp",
            "taro@.example.jp",
            "taro@example.jp.",
            "taro@example..jp",
            "taro @example.jp",
            "たろう@example.jp",
            "taro@example.jp\n",
        ] {
            assert_eq!(Email::parse(s), Err(ParseError::InvalidEmail), "{s}");
        }
        let long = format!("{}@example.jp", "a".repeat(244));
        assert_eq!(Email::parse(&long), Err(ParseError::TooLong { max: 254 }));
        assert!(Email::parse(&long[1..]).is_ok());
    }

    #[test]
    fn url_errors() {
        assert_eq!(Url::parse(""), Err(ParseError::Empty));
        for s in ["example.jp", "ftp://example.jp", "http://", "https://", "https://例え.jp", "https://a b", "http:/x"]
        {
            assert_eq!(Url::parse(s), Err(ParseError::InvalidUrl), "{s}");
        }
        assert_eq!(Url::parse("HTTPS://example.jp/").unwrap().as_str(), "HTTPS://example.jp/");
        let long = format!("https://example.jp/{}", "a".repeat(2048));
        assert_eq!(Url::parse(&long), Err(ParseError::TooLong { max: 2048 }));
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(Text100::parse("\u{3000}総務課 ").unwrap().as_str(), "総務課");
        assert_eq!(Text100::parse(" \u{3000}"), Err(ParseError::Empty));
        assert_eq!(Text100::parse(&"あ".repeat(101)), Err(ParseError::TooLong { max: 100 }));
        assert_eq!(Text200::parse(&"あ".repeat(201)), Err(ParseError::TooLong { max: 200 }));
        assert!(Text200::parse(&"あ".repeat(200)).is_ok());
        assert_eq!(Text100::parse("a\u{7}b"), Err(ParseError::InvalidCharacter { ch: '\u{7}' }));
        assert_eq!(Text100::MAX_CHARS, 100);
        assert!(serde_json::from_value::<Text100>(json!("")).is_err());
    }

    #[test]
    fn sex_is_iso_5218_as_a_digit_string() {
        for (sex, code) in [(Sex::NotKnown, "0"), (Sex::Male, "1"), (Sex::Female, "2"), (Sex::NotApplicable, "9")] {
            assert_eq!(sex.code(), code);
            assert_eq!(Sex::parse(code), Ok(sex));
            assert_eq!(serde_json::to_value(sex).unwrap(), json!(code));
            assert_eq!(serde_json::from_value::<Sex>(json!(code)).unwrap(), sex);
            assert!(!sex.label_ja().is_empty());
        }
        assert_eq!(Sex::parse("3"), Err(ParseError::UnknownValue { value: "3".into() }));
        assert!(serde_json::from_value::<Sex>(json!(1)).is_err());
        assert!(serde_json::from_value::<Sex>(json!("１")).is_err());
    }

    proptest! {
        #[test]
        fn landline_numbers_parse_with_or_without_hyphens(
            area in "0[1-9][0-9]{0,3}",
            rest in "[0-9]{9}",
        ) {
            let digits = format!("{area}{rest}")[..10].to_owned();
            let hyphenated = format!("{}-{}-{}", &digits[..2], &digits[2..6], &digits[6..]);
            for s in [digits.clone(), hyphenated] {
                let phone = Phone::parse(&s).unwrap();
                prop_assert_eq!(phone.as_str(), s.as_str());
                let json = serde_json::to_value(&phone).unwrap();
                prop_assert_eq!(serde_json::from_value::<Phone>(json).unwrap(), phone);
            }
        }

        #[test]
        fn eleven_digits_parse_only_with_a_mobile_or_ip_prefix(prefix in "0[0-9]0", rest in "[0-9]{8}") {
            let s = format!("{prefix}-{}-{}", &rest[..4], &rest[4..]);
            let allowed = ["050", "060", "070", "080", "090"].contains(&prefix.as_str());
            prop_assert_eq!(Phone::parse(&s).is_ok(), allowed);
        }

        #[test]
        fn phones_with_any_other_character_are_rejected(
            left in "0[0-9]{4}",
            ch in any::<char>().prop_filter("not a digit or hyphen", |c| !c.is_ascii_digit() && *c != '-'),
            right in "[0-9]{5}",
        ) {
            prop_assert_eq!(Phone::parse(&format!("{left}{ch}{right}")), Err(ParseError::InvalidPhone));
        }

        #[test]
        fn emails_parse_and_round_trip(
            local in "[A-Za-z0-9._%+-]{1,64}",
            domain in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){1,3}",
        ) {
            let s = format!("{local}@{domain}");
            let email = Email::parse(&s).unwrap();
            prop_assert_eq!(email.as_str(), s.as_str());
            let json = serde_json::to_value(&email).unwrap();
            prop_assert_eq!(serde_json::from_value::<Email>(json).unwrap(), email);
        }

        #[test]
        fn emails_without_an_at_are_rejected(s in "[A-Za-z0-9.]{1,30}") {
            prop_assert_eq!(Email::parse(&s), Err(ParseError::InvalidEmail));
        }

        #[test]
        fn emails_with_two_ats_are_rejected(a in "[a-z]{1,5}", b in "[a-z]{0,5}", c in "[a-z]{1,5}") {
            prop_assert_eq!(Email::parse(&format!("{a}@{b}@{c}.jp")), Err(ParseError::InvalidEmail));
        }

        #[test]
        fn urls_parse_and_round_trip(scheme in "https?://", rest in "[!-~]{1,200}") {
            let s = format!("{scheme}{rest}");
            let url = Url::parse(&s).unwrap();
            prop_assert_eq!(url.as_str(), s.as_str());
            let json = serde_json::to_value(&url).unwrap();
            prop_assert_eq!(serde_json::from_value::<Url>(json).unwrap(), url);
        }

        #[test]
        fn urls_with_a_space_or_non_ascii_are_rejected(
            rest in "[!-~]{0,20}",
            ch in any::<char>().prop_filter("not printable ASCII", |c| !c.is_ascii_graphic()),
        ) {
            prop_assert_eq!(Url::parse(&format!("https://{rest}{ch}")), Err(ParseError::InvalidUrl));
        }

        #[test]
        fn texts_parse_trimmed_and_round_trip(
            core in "[^\\p{Cc}\\s]([^\\p{Cc}]{0,98}[^\\p{Cc}\\s])?",
            pad in "[ \u{3000}]{0,3}",
        ) {
            let text = Text100::parse(&format!("{pad}{core}{pad}")).unwrap();
            prop_assert_eq!(text.as_str(), core.as_str());
            let json = serde_json::to_value(&text).unwrap();
            prop_assert_eq!(serde_json::from_value::<Text100>(json).unwrap(), text);
            let long = Text200::parse(&core).unwrap();
            prop_assert_eq!(long.as_str(), core.as_str());
        }

        #[test]
        fn texts_longer_than_max_are_rejected(core in "[^\\p{Cc}\\s]{201,240}") {
            prop_assert_eq!(Text100::parse(&core), Err(ParseError::TooLong { max: 100 }));
            prop_assert_eq!(Text200::parse(&core), Err(ParseError::TooLong { max: 200 }));
        }

        #[test]
        fn sex_rejects_everything_but_its_four_codes(s in "\\PC{0,3}") {
            prop_assert_eq!(Sex::parse(&s).is_ok(), ["0", "1", "2", "9"].contains(&s.as_str()));
        }
    }
}
