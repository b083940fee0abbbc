//! Value types of a resident (利用者) as the 利用者登録 screen takes them: カナ氏名, 漢字氏名, 生年月日 (`EYYMMDD`),
//! 郵便番号, カードFID and 職業. 性別, 連絡先 and メールアドレス reuse `Sex`, `Phone` and `Email` from `contact`.
//!
//! Each parses once at the edge and is then trusted everywhere; serde goes through `parse`. Pure: no IO, no
//! clock, no calendar crate (the small Gregorian logic for `EraDate` lives here). The 個人番号 is never a field.
//!
//! Length: about half of this file is its given/when/then tests, one per branch of `decide`; the code is under 600
//! lines.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ParseError;
use crate::contact::string_newtype;
use crate::ids::{parse_alphanumeric, parse_text};

/// Longest カナ氏名 / 漢字氏名 part (姓 or 名) and 職業, in characters.
const NAME_MAX_CHARS: usize = 50;

/// Full-width forms of the half-width katakana U+FF66 (ｦ) … U+FF9F (ﾟ), in code point order.
const HALF_WIDTH_KANA: &str = "ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン゛゜";

/// The full-width form of a half-width katakana (or the half-width middle dot U+FF65), else `None`.
fn half_width_kana_to_full(c: char) -> Option<char> {
    match c {
        '\u{FF65}' => Some('・'),
        '\u{FF66}'..='\u{FF9F}' => HALF_WIDTH_KANA.chars().nth((u32::from(c) - 0xFF66) as usize),
        _ => None,
    }
}

/// A full-width katakana with a (han)dakuten added: カ + ゛ → ガ, ハ + ゜ → パ, ウ + ゛ → ヴ; `None` if it takes none.
fn with_sound_mark(base: char, semi_voiced: bool) -> Option<char> {
    let b = u32::from(base);
    let ha_row = (0x30CF..=0x30DB).contains(&b) && (b - 0x30CF) % 3 == 0;
    let offset = if semi_voiced {
        ha_row.then_some(2)
    } else if b == 0x30A6 {
        Some(0x30F4 - 0x30A6)
    } else {
        // カ … チ (odd code points), ツ テ ト, and the ハ row each have their voiced form right after them.
        let ka_to_chi = (0x30AB..=0x30C1).contains(&b) && b % 2 == 1;
        (ka_to_chi || matches!(b, 0x30C4 | 0x30C6 | 0x30C8) || ha_row).then_some(1)
    };
    offset.and_then(|o| char::from_u32(b + o))
}

/// Half-width katakana to full-width, a following (han)dakuten (half-width ﾞ ﾟ or combining U+3099 U+309A)
/// folded into the katakana before it. Everything else is left alone, so U+3000 stays U+3000 (unlike NFKC).
pub(crate) fn to_full_width_katakana(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let full = half_width_kana_to_full(c).unwrap_or(c);
        let composed = match chars.peek() {
            Some('\u{FF9E}' | '\u{3099}') => with_sound_mark(full, false),
            Some('\u{FF9F}' | '\u{309A}') => with_sound_mark(full, true),
            _ => None,
        };
        match composed {
            Some(voiced) => {
                out.push(voiced);
                chars.next();
            }
            None => out.push(full),
        }
    }
    out
}

fn is_kana_name_char(c: char) -> bool {
    matches!(c, '\u{30A1}'..='\u{30F6}' | 'ー' | '・' | '\u{3000}')
}

/// カナ氏名 (姓 or 名), e.g. `ヤマダ` or `ガルシア・マルケス`: full-width katakana ァ–ヶ (U+30A1–U+30F6), ー, ・
/// and the full-width space, 1..=50 characters.
///
/// Surrounding whitespace is trimmed; half-width katakana is converted to full-width, a following ﾞ/ﾟ joining
/// the character before it (`ｶﾞ` → `ガ`, `ﾊﾟ` → `パ`, `ｳﾞ` → `ヴ`). Hiragana, ASCII (also an inner half-width
/// space), kanji and other symbols are rejected. The limit counts the converted characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KanaName(String);

impl KanaName {
    pub const MAX_CHARS: usize = NAME_MAX_CHARS;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        let full = to_full_width_katakana(s);
        if let Some(ch) = full.chars().find(|c| c.is_control()) {
            return Err(ParseError::InvalidCharacter { ch });
        }
        if let Some(ch) = full.chars().find(|&c| !is_kana_name_char(c)) {
            return Err(ParseError::NotFullWidthKatakana { ch });
        }
        if full.chars().count() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        Ok(Self(full))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(KanaName);

/// Whether `c` is a half-width character: ASCII, the half-width katakana and hangul (U+FF61–U+FFDC) and the
/// half-width symbols (U+FFE8–U+FFEE).
fn is_half_width(c: char) -> bool {
    c.is_ascii() || matches!(c, '\u{FF61}'..='\u{FFDC}' | '\u{FFE8}'..='\u{FFEE}')
}

/// 漢字氏名 (姓 or 名), e.g. `山田` or `太郎`: full-width text of 1..=50 characters.
///
/// Surrounding whitespace is trimmed; no control characters and no half-width characters (ASCII, also an inner
/// half-width space, half-width katakana and symbols). Kanji, kana, full-width letters and the full-width space
/// are fine. Half-width katakana is rejected, not converted: a kanji name is copied from a document, not keyed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KanjiName(String);

impl KanjiName {
    pub const MAX_CHARS: usize = NAME_MAX_CHARS;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if let Some(ch) = s.chars().find(|c| c.is_control()) {
            return Err(ParseError::InvalidCharacter { ch });
        }
        if let Some(ch) = s.chars().find(|&c| is_half_width(c)) {
            return Err(ParseError::NotFullWidth { ch });
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(KanjiName);

/// A Japanese era (元号) as the first digit of `EYYMMDD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Era {
    /// `1` 明治, from 1868-01-25.
    Meiji,
    /// `2` 大正, from 1912-07-30.
    Taisho,
    /// `3` 昭和, from 1926-12-25.
    Showa,
    /// `4` 平成, from 1989-01-08.
    Heisei,
    /// `5` 令和, from 2019-05-01.
    Reiwa,
}

impl Era {
    pub const ALL: [Era; 5] = [Self::Meiji, Self::Taisho, Self::Showa, Self::Heisei, Self::Reiwa];

    /// The digit of `EYYMMDD`, 1..=5.
    pub fn code(self) -> u8 {
        match self {
            Self::Meiji => 1,
            Self::Taisho => 2,
            Self::Showa => 3,
            Self::Heisei => 4,
            Self::Reiwa => 5,
        }
    }

    fn from_digit(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|era| era.code() + b'0' == b)
    }

    pub fn name_ja(self) -> &'static str {
        match self {
            Self::Meiji => "明治",
            Self::Taisho => "大正",
            Self::Showa => "昭和",
            Self::Heisei => "平成",
            Self::Reiwa => "令和",
        }
    }

    /// The first day (元年の改元日) as Gregorian (year, month, day). 明治 uses 1868-01-25 (some systems use
    /// 1868-10-23); dates before 1873 are taken as Gregorian, not converted from the old lunisolar calendar.
    pub fn first_day(self) -> (i32, u32, u32) {
        match self {
            Self::Meiji => (1868, 1, 25),
            Self::Taisho => (1912, 7, 30),
            Self::Showa => (1926, 12, 25),
            Self::Heisei => (1989, 1, 8),
            Self::Reiwa => (2019, 5, 1),
        }
    }

    fn next(self) -> Option<Self> {
        match self {
            Self::Meiji => Some(Self::Taisho),
            Self::Taisho => Some(Self::Showa),
            Self::Showa => Some(Self::Heisei),
            Self::Heisei => Some(Self::Reiwa),
            Self::Reiwa => None,
        }
    }

    /// Whether the Gregorian date lies in this era: on or after its first day and before the next era's.
    fn contains(self, date: (i32, u32, u32)) -> bool {
        date >= self.first_day()
            && match self.next() {
                Some(next) => date < next.first_day(),
                None => true,
            }
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name_ja())
    }
}

fn is_leap_year(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

pub(crate) fn date_exists(y: i32, m: u32, d: u32) -> bool {
    d >= 1 && d <= days_in_month(y, m)
}

/// 生年月日 as `EYYMMDD`, e.g. `3640107` (昭和64年1月7日 = 1989-01-07): seven half-width digits, era 1 明治,
/// 2 大正, 3 昭和, 4 平成, 5 令和, then the year of the era (01–99, `00` is invalid), month and day.
///
/// The date must exist in the Gregorian calendar (leap years included) and lie in its era: `3640108` is
/// rejected because 1989-01-08 is already 平成. Taken as typed: nothing is trimmed. Orders chronologically.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EraDate {
    /// The `EYYMMDD` text; first, so the derived order is the text's, which is chronological.
    code: String,
    era: Era,
    year_of_era: u32,
    month: u32,
    day: u32,
}

impl EraDate {
    const LEN: usize = 7;
    /// The largest year of an era `YY` can hold.
    const MAX_YEAR_OF_ERA: u32 = 99;

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
        let b = s.as_bytes();
        let era = Era::from_digit(b[0]).ok_or(ParseError::UnknownEra { code: char::from(b[0]) })?;
        let two = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
        let (year_of_era, month, day) = (two(1), two(3), two(5));
        if year_of_era == 0 {
            return Err(ParseError::NonexistentDate);
        }
        Self::build(era, year_of_era, month, day)
    }

    /// The date in the era it falls in: `from_gregorian(1989, 1, 7)` is `3640107`, `(1989, 1, 8)` is `4010108`.
    ///
    /// `NonexistentDate` if there is no such day, `DateOutsideEra` before 明治 (1868-01-25) or after 令和99年.
    pub fn from_gregorian(year: i32, month: u32, day: u32) -> Result<Self, ParseError> {
        if !date_exists(year, month, day) {
            return Err(ParseError::NonexistentDate);
        }
        let era = Era::ALL
            .into_iter()
            .rev()
            .find(|era| (year, month, day) >= era.first_day())
            .ok_or(ParseError::DateOutsideEra)?;
        let year_of_era = u32::try_from(year - era.first_day().0 + 1).map_err(|_| ParseError::DateOutsideEra)?;
        if year_of_era > Self::MAX_YEAR_OF_ERA {
            return Err(ParseError::DateOutsideEra);
        }
        Self::build(era, year_of_era, month, day)
    }

    /// Checks an era date whose year of era is 1..=99 and builds its code.
    fn build(era: Era, year_of_era: u32, month: u32, day: u32) -> Result<Self, ParseError> {
        let year = gregorian_year(era, year_of_era);
        if !date_exists(year, month, day) {
            return Err(ParseError::NonexistentDate);
        }
        if !era.contains((year, month, day)) {
            return Err(ParseError::DateOutsideEra);
        }
        let code = format!("{}{year_of_era:02}{month:02}{day:02}", era.code());
        Ok(Self { code, era, year_of_era, month, day })
    }

    /// The same day as Gregorian (year, month, day).
    pub fn to_gregorian(&self) -> (i32, u32, u32) {
        (gregorian_year(self.era, self.year_of_era), self.month, self.day)
    }

    pub fn era(&self) -> Era {
        self.era
    }

    /// The year of the era, 1..=99 (1 is 元年).
    pub fn year_of_era(&self) -> u32 {
        self.year_of_era
    }

    pub fn month(&self) -> u32 {
        self.month
    }

    pub fn day(&self) -> u32 {
        self.day
    }

    /// The `EYYMMDD` text.
    pub fn as_str(&self) -> &str {
        &self.code
    }

    /// As the screens print it, e.g. `昭和64年1月7日`, `平成元年1月8日`.
    pub fn label_ja(&self) -> String {
        let era = self.era.name_ja();
        match self.year_of_era {
            1 => format!("{era}元年{}月{}日", self.month, self.day),
            y => format!("{era}{y}年{}月{}日", self.month, self.day),
        }
    }
}

/// Year of era 1..=99 to the Gregorian year (first year + YY − 1).
fn gregorian_year(era: Era, year_of_era: u32) -> i32 {
    // year_of_era is at most 99 wherever an EraDate is built, so it always fits.
    era.first_day().0 + i32::try_from(year_of_era).unwrap_or(0) - 1
}

impl fmt::Display for EraDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

impl TryFrom<String> for EraDate {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EraDate> for String {
    fn from(date: EraDate) -> Self {
        date.code
    }
}

/// 郵便番号, e.g. `100-0001`: seven half-width digits, typed as `NNN-NNNN` or `NNNNNNN` and stored as `NNN-NNNN`.
/// Nothing is trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PostalCode(String);

impl PostalCode {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        let digits = match s.as_bytes() {
            [a @ .., b'-', _, _, _, _] if a.len() == 3 => s.replacen('-', "", 1),
            _ => s.to_owned(),
        };
        if digits.len() != 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::InvalidPostalCode);
        }
        Ok(Self(format!("{}-{}", &digits[..3], &digits[3..])))
    }

    /// `NNN-NNNN`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The seven digits without the hyphen, e.g. `1000001`.
    pub fn digits(&self) -> String {
        self.0.replace('-', "")
    }
}

string_newtype!(PostalCode);

/// カードFID: the identifier the card reader reports for a card, e.g. `0A1B2C3D4E5F`.
///
/// Rule chosen here: 1..=32 half-width letters and digits (A-Z, a-z, 0-9), nothing trimmed. An FID is
/// hexadecimal-like and a reader may report it in either case, so it compares case-insensitively and is held
/// in upper case: `0a1b` and `0A1B` are one card, one stream (`card::stream_key`) and one row, so one physical
/// card cannot be registered twice, and a lookup finds it in either case. Stored events that carry a lower-case
/// FID decode to the upper-case one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CardFid(String);

impl CardFid {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_alphanumeric(s, Self::MAX_CHARS).map(|s| Self(s.to_ascii_uppercase()))
    }

    /// The FID in upper case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(CardFid);

/// 職業, e.g. `会社員`: free text, surrounding whitespace (ASCII and full-width space) trimmed, then 1..=50
/// characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Occupation(String);

impl Occupation {
    pub const MAX_CHARS: usize = NAME_MAX_CHARS;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_text(s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(Occupation);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Localized;
    use proptest::prelude::*;
    use serde_json::json;

    /// Full-width katakana → its half-width spelling (one or two characters), for every katakana that has one.
    fn half_width_spellings() -> BTreeMap<char, String> {
        let mut map = BTreeMap::from([('・', "\u{FF65}".to_owned())]);
        for (i, full) in HALF_WIDTH_KANA.chars().enumerate().take(56) {
            let half = char::from_u32(0xFF66 + i as u32).unwrap();
            map.insert(full, half.to_string());
            if let Some(voiced) = with_sound_mark(full, false) {
                map.insert(voiced, format!("{half}\u{FF9E}"));
            }
            if let Some(semi) = with_sound_mark(full, true) {
                map.insert(semi, format!("{half}\u{FF9F}"));
            }
        }
        map
    }

    /// Howard Hinnant's `days_from_civil`: an independent oracle for the calendar logic.
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
        era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
    }

    fn civil_from_days(z: i64) -> (i32, u32, u32) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y as i32, m as u32, d as u32)
    }

    fn meiji_day() -> i64 {
        days_from_civil(1868, 1, 25)
    }

    /// 令和99年12月31日, the last day `EYYMMDD` can hold.
    fn last_day() -> i64 {
        days_from_civil(2117, 12, 31)
    }

    #[test]
    fn kana_names_as_typed() {
        for s in ["ヤマダ", "タロウ", "ガルシア・マルケス", "ヴァン\u{3000}デル", "ァヶー", "ッ"]
        {
            assert_eq!(KanaName::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(KanaName::parse(" \u{3000}ヤマダ\u{3000}").unwrap().as_str(), "ヤマダ");
        assert_eq!(serde_json::to_value(KanaName::parse("ヤマダ").unwrap()).unwrap(), json!("ヤマダ"));
        assert_eq!(serde_json::from_value::<KanaName>(json!("ﾔﾏﾀﾞ")).unwrap().as_str(), "ヤマダ");
    }

    #[test]
    fn half_width_kana_becomes_full_width() {
        for (half, full) in [
            ("ｶﾞ", "ガ"),
            ("ﾊﾟ", "パ"),
            ("ｳﾞ", "ヴ"),
            ("ﾔﾏﾀﾞ ﾀﾛｳ", ""),
            ("ﾔﾏﾀﾞ\u{3000}ﾀﾛｳ", "ヤマダ\u{3000}タロウ"),
            ("ｷｬﾝﾍﾞﾙ･ｽｰﾌﾟ", "キャンベル・スープ"),
            ("ﾎﾟﾎﾞﾎ", "ポボホ"),
            ("ｦｧｯｰﾝ", "ヲァッーン"),
            ("カﾞ", "ガ"),                     // full-width base, half-width mark
            ("カ\u{3099}ハ\u{309A}", "ガパ"), // combining marks (NFD input)
        ] {
            if full.is_empty() {
                assert_eq!(KanaName::parse(half), Err(ParseError::NotFullWidthKatakana { ch: ' ' }), "{half}");
            } else {
                assert_eq!(KanaName::parse(half).unwrap().as_str(), full, "{half}");
            }
        }
        // A half-width mark that cannot join stays a mark, which a name may not hold.
        assert_eq!(KanaName::parse("ｱﾞ"), Err(ParseError::NotFullWidthKatakana { ch: '゛' }));
        assert_eq!(KanaName::parse("ﾟ"), Err(ParseError::NotFullWidthKatakana { ch: '゜' }));
        assert_eq!(KanaName::parse("ﾜﾞ"), Err(ParseError::NotFullWidthKatakana { ch: '゛' }));
        assert_eq!(KanaName::parse("ｱ｡"), Err(ParseError::NotFullWidthKatakana { ch: '｡' }));
        // ｶﾞ counts as one character.
        assert!(KanaName::parse(&"ｶﾞ".repeat(50)).is_ok());
    }

    #[test]
    fn kana_name_errors() {
        assert_eq!(KanaName::parse(""), Err(ParseError::Empty));
        assert_eq!(KanaName::parse(" \u{3000} "), Err(ParseError::Empty));
        assert_eq!(KanaName::parse("やまだ"), Err(ParseError::NotFullWidthKatakana { ch: 'や' }));
        assert_eq!(KanaName::parse("ヤマダ taro"), Err(ParseError::NotFullWidthKatakana { ch: ' ' }));
        assert_eq!(KanaName::parse("Yamada"), Err(ParseError::NotFullWidthKatakana { ch: 'Y' }));
        assert_eq!(KanaName::parse("山田"), Err(ParseError::NotFullWidthKatakana { ch: '山' }));
        assert_eq!(KanaName::parse("ヮ").unwrap().as_str(), "ヮ"); // U+30EE lies in ァ–ヶ
        assert_eq!(KanaName::parse("ヽ"), Err(ParseError::NotFullWidthKatakana { ch: 'ヽ' }));
        assert_eq!(KanaName::parse("ヷ"), Err(ParseError::NotFullWidthKatakana { ch: 'ヷ' }));
        assert_eq!(KanaName::parse("ヤ\tマ"), Err(ParseError::InvalidCharacter { ch: '\t' }));
        assert_eq!(KanaName::parse(&"ア".repeat(51)), Err(ParseError::TooLong { max: 50 }));
        assert!(KanaName::parse(&"ア".repeat(50)).is_ok());
        assert!(serde_json::from_value::<KanaName>(json!("やまだ")).is_err());
        assert_eq!(
            ParseError::NotFullWidthKatakana { ch: 'や' }.message_ja(),
            "全角カタカナで入力してください（「や」は使用できません）"
        );
        assert_eq!(
            ParseError::NotFullWidthKatakana { ch: ' ' }.message_ja(),
            "全角カタカナで入力してください（半角スペースは使用できません）"
        );
    }

    #[test]
    fn kanji_names() {
        for s in ["山田", "太郎", "髙橋", "ジョン\u{3000}スミス", "ＡＢＣ", "さくら"] {
            assert_eq!(KanjiName::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(KanjiName::parse("\u{3000}山田 ").unwrap().as_str(), "山田");
        assert_eq!(KanjiName::parse(""), Err(ParseError::Empty));
        assert_eq!(KanjiName::parse("山田 太郎"), Err(ParseError::NotFullWidth { ch: ' ' }));
        assert_eq!(KanjiName::parse("Yamada"), Err(ParseError::NotFullWidth { ch: 'Y' }));
        assert_eq!(KanjiName::parse("ﾔﾏﾀﾞ"), Err(ParseError::NotFullWidth { ch: 'ﾔ' }));
        assert_eq!(KanjiName::parse("山\u{7}田"), Err(ParseError::InvalidCharacter { ch: '\u{7}' }));
        assert_eq!(KanjiName::parse(&"山".repeat(51)), Err(ParseError::TooLong { max: 50 }));
        assert_eq!(serde_json::to_value(KanjiName::parse("山田").unwrap()).unwrap(), json!("山田"));
        assert!(serde_json::from_value::<KanjiName>(json!("yamada")).is_err());
        assert_eq!(
            ParseError::NotFullWidth { ch: 'Y' }.message_ja(),
            "全角で入力してください（「Y」は使用できません）"
        );
    }

    #[test]
    fn era_boundaries() {
        for (code, ymd) in [
            ("1010125", (1868, 1, 25)),
            ("1450729", (1912, 7, 29)),
            ("2010730", (1912, 7, 30)),
            ("2151224", (1926, 12, 24)),
            ("3011225", (1926, 12, 25)),
            ("3640107", (1989, 1, 7)),
            ("4010108", (1989, 1, 8)),
            ("4310430", (2019, 4, 30)),
            ("5010501", (2019, 5, 1)),
            ("5991231", (2117, 12, 31)),
        ] {
            let date = EraDate::parse(code).unwrap();
            assert_eq!(date.to_gregorian(), ymd, "{code}");
            assert_eq!(EraDate::from_gregorian(ymd.0, ymd.1, ymd.2), Ok(date.clone()), "{code}");
            assert_eq!(date.as_str(), code);
        }
        for code in ["1010124", "1450730", "2010729", "2151225", "3011224", "3640108", "4010107", "4310501", "5010430"]
        {
            assert_eq!(EraDate::parse(code), Err(ParseError::DateOutsideEra), "{code}");
        }
    }

    #[test]
    fn era_dates_must_exist() {
        assert!(EraDate::parse("4040229").is_ok()); // 1992
        assert!(EraDate::parse("4120229").is_ok()); // 2000: divisible by 400
        assert!(EraDate::parse("3590229").is_ok()); // 1984
        for code in [
            "4050229", // 1993
            "1330229", // 1900: divisible by 100, not by 400
            "5000101", // YY 00
            "5011301", "5010001", "5010500", "5010631", "5010532",
        ] {
            assert_eq!(EraDate::parse(code), Err(ParseError::NonexistentDate), "{code}");
        }
        assert_eq!(EraDate::from_gregorian(1993, 2, 29), Err(ParseError::NonexistentDate));
        assert_eq!(EraDate::from_gregorian(2020, 13, 1), Err(ParseError::NonexistentDate));
        assert_eq!(EraDate::from_gregorian(1868, 1, 24), Err(ParseError::DateOutsideEra));
        assert_eq!(EraDate::from_gregorian(2118, 1, 1), Err(ParseError::DateOutsideEra));
        assert_eq!(EraDate::from_gregorian(-5, 1, 1), Err(ParseError::DateOutsideEra));
    }

    #[test]
    fn era_date_errors_and_accessors() {
        assert_eq!(EraDate::parse(""), Err(ParseError::Empty));
        assert_eq!(EraDate::parse("364010"), Err(ParseError::WrongLength { expected: 7 }));
        assert_eq!(EraDate::parse("36401070"), Err(ParseError::WrongLength { expected: 7 }));
        assert_eq!(EraDate::parse("３６４０１０７"), Err(ParseError::NotHalfWidthDigits));
        assert_eq!(EraDate::parse("S640107"), Err(ParseError::NotHalfWidthDigits));
        assert_eq!(EraDate::parse(" 3640107"), Err(ParseError::NotHalfWidthDigits));
        assert_eq!(EraDate::parse("6010101"), Err(ParseError::UnknownEra { code: '6' }));
        assert_eq!(EraDate::parse("0010101"), Err(ParseError::UnknownEra { code: '0' }));
        let date = EraDate::parse("3640107").unwrap();
        assert_eq!((date.era(), date.year_of_era(), date.month(), date.day()), (Era::Showa, 64, 1, 7));
        assert_eq!(date.label_ja(), "昭和64年1月7日");
        assert_eq!(EraDate::parse("4010108").unwrap().label_ja(), "平成元年1月8日");
        assert_eq!(date.to_string(), "3640107");
        assert_eq!(serde_json::to_value(&date).unwrap(), json!("3640107"));
        assert_eq!(serde_json::from_value::<EraDate>(json!("3640107")).unwrap(), date);
        assert!(serde_json::from_value::<EraDate>(json!("3640108")).is_err());
        assert!(serde_json::from_value::<EraDate>(json!(3640107)).is_err());
        assert_eq!(ParseError::DateOutsideEra.message_ja(), "元号の期間外の日付です");
        assert_eq!(ParseError::NonexistentDate.message_ja(), "存在しない日付です");
        assert!(ParseError::UnknownEra { code: '6' }.message_ja().contains("5（令和）"));
        for era in Era::ALL {
            assert_eq!(Era::from_digit(era.code() + b'0'), Some(era));
            assert_eq!(era.to_string(), era.name_ja());
        }
    }

    #[test]
    fn postal_codes() {
        for s in ["100-0001", "1000001"] {
            let code = PostalCode::parse(s).unwrap();
            assert_eq!(code.as_str(), "100-0001");
            assert_eq!(code.digits(), "1000001");
        }
        assert_eq!(PostalCode::parse(""), Err(ParseError::Empty));
        for s in
            ["100-001", "10-00001", "1000-001", "100--0001", "１００-０００１", "100ー0001", " 1000001", "100 0001"]
        {
            assert_eq!(PostalCode::parse(s), Err(ParseError::InvalidPostalCode), "{s}");
        }
        let code = PostalCode::parse("1000001").unwrap();
        assert_eq!(serde_json::to_value(&code).unwrap(), json!("100-0001"));
        assert_eq!(serde_json::from_value::<PostalCode>(json!("1000001")).unwrap(), code);
        assert!(serde_json::from_value::<PostalCode>(json!("100-000")).is_err());
        assert!(ParseError::InvalidPostalCode.message_ja().contains("100-0001"));
    }

    #[test]
    fn card_fids_and_occupations() {
        assert_eq!(CardFid::parse("0A1b2C").unwrap().as_str(), "0A1B2C");
        assert_eq!(CardFid::parse("0a1b2c"), CardFid::parse("0A1B2C"));
        assert_eq!(serde_json::from_value::<CardFid>(json!("abc")).unwrap().as_str(), "ABC");
        assert_eq!(CardFid::parse(""), Err(ParseError::Empty));
        assert_eq!(CardFid::parse("0A-1"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(CardFid::parse(" 0A1"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(CardFid::parse(&"A".repeat(33)), Err(ParseError::TooLong { max: 32 }));
        assert!(CardFid::parse(&"A".repeat(32)).is_ok());
        assert!(serde_json::from_value::<CardFid>(json!("ＡＢ")).is_err());

        assert_eq!(Occupation::parse("\u{3000}会社員 ").unwrap().as_str(), "会社員");
        assert_eq!(Occupation::parse(" "), Err(ParseError::Empty));
        assert_eq!(Occupation::parse(&"あ".repeat(51)), Err(ParseError::TooLong { max: 50 }));
        assert_eq!(Occupation::parse("会社\n員"), Err(ParseError::InvalidCharacter { ch: '\n' }));
        assert_eq!(serde_json::to_value(Occupation::parse("教員").unwrap()).unwrap(), json!("教員"));
    }

    proptest! {
        #[test]
        fn kana_names_parse_trimmed_and_round_trip(
            core in "[ァ-ヶー・]([ァ-ヶー・\u{3000}]{0,48}[ァ-ヶー・])?",
            pad in "[ \u{3000}]{0,3}",
        ) {
            let name = KanaName::parse(&format!("{pad}{core}{pad}")).unwrap();
            prop_assert_eq!(name.as_str(), core.as_str());
            let json = serde_json::to_value(&name).unwrap();
            prop_assert_eq!(serde_json::from_value::<KanaName>(json).unwrap(), name);
        }

        #[test]
        fn half_width_spelling_parses_to_the_full_width_name(
            picks in prop::collection::vec(any::<prop::sample::Index>(), 1..=50),
        ) {
            let spellings = half_width_spellings();
            let keys: Vec<char> = spellings.keys().copied().collect();
            let full: String = picks.iter().map(|i| keys[i.index(keys.len())]).collect();
            let half: String = full.chars().map(|c| spellings[&c].as_str()).collect();
            let name = KanaName::parse(&half).unwrap();
            prop_assert_eq!(name.as_str(), full.as_str());
            prop_assert_eq!(KanaName::parse(&half), KanaName::parse(&full));
        }

        #[test]
        fn kana_names_with_a_foreign_character_are_rejected(
            left in "[ァ-ヶ]{0,5}",
            ch in any::<char>().prop_filter("not allowed, not convertible", |&c| {
                !is_kana_name_char(c) && !('\u{FF65}'..='\u{FF9F}').contains(&c) && !matches!(c, '\u{3099}' | '\u{309A}')
            }),
            right in "[ァ-ヶ]{1,5}",
        ) {
            let expected = if ch.is_control() {
                ParseError::InvalidCharacter { ch }
            } else {
                ParseError::NotFullWidthKatakana { ch }
            };
            prop_assert_eq!(KanaName::parse(&format!("ア{left}{ch}{right}")), Err(expected));
        }

        #[test]
        fn hiragana_is_rejected(s in "[ァ-ヶ]{0,5}[ぁ-ゖ][ァ-ヶ]{0,5}") {
            let rejected = matches!(KanaName::parse(&s), Err(ParseError::NotFullWidthKatakana { .. }));
            prop_assert!(rejected);
        }

        #[test]
        fn kana_names_longer_than_50_are_rejected(s in "[ァ-ヶー]{51,80}") {
            prop_assert_eq!(KanaName::parse(&s), Err(ParseError::TooLong { max: 50 }));
        }

        #[test]
        fn kanji_names_parse_trimmed_and_round_trip(
            core in "[一-鿿ぁ-ゖァ-ヶ々ー]([一-鿿ぁ-ゖァ-ヶ々ー\u{3000}Ａ-ｚ]{0,48}[一-鿿ぁ-ゖ])?",
            pad in "[ \u{3000}]{0,3}",
        ) {
            let name = KanjiName::parse(&format!("{pad}{core}{pad}")).unwrap();
            prop_assert_eq!(name.as_str(), core.as_str());
            let json = serde_json::to_value(&name).unwrap();
            prop_assert_eq!(serde_json::from_value::<KanjiName>(json).unwrap(), name);
        }

        #[test]
        fn kanji_names_with_a_half_width_character_are_rejected(
            left in "[一-鿿]{1,5}",
            ch in "[!-~｡-ﾟ ]",
            right in "[一-鿿]{1,5}",
        ) {
            let ch = ch.chars().next().unwrap();
            prop_assert_eq!(KanjiName::parse(&format!("{left}{ch}{right}")), Err(ParseError::NotFullWidth { ch }));
        }

        #[test]
        fn kanji_names_longer_than_50_are_rejected(s in "[一-鿿]{51,80}") {
            prop_assert_eq!(KanjiName::parse(&s), Err(ParseError::TooLong { max: 50 }));
        }

        #[test]
        fn every_day_from_meiji_to_reiwa_99_round_trips(n in meiji_day()..=last_day()) {
            let (y, m, d) = civil_from_days(n);
            let date = EraDate::from_gregorian(y, m, d).unwrap();
            prop_assert_eq!(date.to_gregorian(), (y, m, d));
            prop_assert!(date.era().contains((y, m, d)));
            prop_assert_eq!(EraDate::parse(date.as_str()).unwrap(), date.clone());
            let json = serde_json::to_value(&date).unwrap();
            prop_assert_eq!(serde_json::from_value::<EraDate>(json).unwrap(), date);
        }

        #[test]
        fn the_next_day_is_a_later_era_date(n in meiji_day()..last_day()) {
            let (y, m, d) = civil_from_days(n);
            let (y2, m2, d2) = civil_from_days(n + 1);
            let today = EraDate::from_gregorian(y, m, d).unwrap();
            let tomorrow = EraDate::from_gregorian(y2, m2, d2).unwrap();
            prop_assert!(today < tomorrow);
            prop_assert!(today.era() == tomorrow.era() || tomorrow.year_of_era() == 1);
        }

        #[test]
        fn days_outside_the_eras_are_rejected(
            n in prop_oneof![(meiji_day() - 100_000)..meiji_day(), (last_day() + 1)..(last_day() + 100_000)],
        ) {
            let (y, m, d) = civil_from_days(n);
            prop_assert_eq!(EraDate::from_gregorian(y, m, d), Err(ParseError::DateOutsideEra));
        }

        #[test]
        fn era_codes_parse_exactly_when_the_day_exists_in_its_era(
            era in 1u8..=5, yy in 0u32..=99, mm in 0u32..=13, dd in 0u32..=32,
        ) {
            let code = format!("{era}{yy:02}{mm:02}{dd:02}");
            let first = Era::ALL[usize::from(era - 1)].first_day();
            let y = i64::from(first.0) + i64::from(yy) - 1;
            let n = days_from_civil(y, i64::from(mm), i64::from(dd));
            let exists = yy > 0 && (1..=12).contains(&mm) && dd >= 1
                && civil_from_days(n) == (y as i32, mm, dd);
            let next = Era::ALL.get(usize::from(era)).map(|e| e.first_day());
            let in_era = n >= days_from_civil(first.0.into(), first.1.into(), first.2.into())
                && next.is_none_or(|(ny, nm, nd)| n < days_from_civil(ny.into(), nm.into(), nd.into()));
            match EraDate::parse(&code) {
                Ok(date) => {
                    prop_assert!(exists && in_era, "{}", code);
                    prop_assert_eq!(date.as_str(), code.as_str());
                    let (gy, gm, gd) = date.to_gregorian();
                    prop_assert_eq!(EraDate::from_gregorian(gy, gm, gd).unwrap(), date);
                }
                Err(ParseError::NonexistentDate) => prop_assert!(!exists, "{}", code),
                Err(ParseError::DateOutsideEra) => prop_assert!(exists && !in_era, "{}", code),
                Err(e) => prop_assert!(false, "{code}: {e}"),
            }
        }

        #[test]
        fn era_date_rejects_other_digit_strings(s in "[0-9]{1,6}|[0-9]{8,10}") {
            prop_assert_eq!(EraDate::parse(&s), Err(ParseError::WrongLength { expected: 7 }));
        }

        #[test]
        fn era_date_rejects_non_digits(s in "\\PC{0,7}") {
            prop_assume!(s.chars().any(|c| !c.is_ascii_digit()));
            prop_assert_eq!(EraDate::parse(&s), Err(ParseError::NotHalfWidthDigits));
        }

        #[test]
        fn postal_codes_parse_with_or_without_hyphen(d in "[0-9]{7}") {
            let hyphenated = format!("{}-{}", &d[..3], &d[3..]);
            for s in [d.clone(), hyphenated.clone()] {
                let code = PostalCode::parse(&s).unwrap();
                prop_assert_eq!(code.as_str(), hyphenated.as_str());
                prop_assert_eq!(code.digits(), d.clone());
                let json = serde_json::to_value(&code).unwrap();
                prop_assert_eq!(serde_json::from_value::<PostalCode>(json).unwrap(), code);
            }
        }

        #[test]
        fn postal_codes_of_another_shape_are_rejected(s in "[0-9-]{1,12}") {
            let shape_ok = s.len() == 7 && !s.contains('-')
                || s.len() == 8 && s.find('-') == Some(3) && s.matches('-').count() == 1;
            prop_assert_eq!(PostalCode::parse(&s).is_ok(), shape_ok);
        }

        #[test]
        fn card_fids_parse_and_round_trip(s in "[A-Za-z0-9]{1,32}") {
            let fid = CardFid::parse(&s).unwrap();
            prop_assert_eq!(fid.as_str(), &*s.to_ascii_uppercase());
            let json = serde_json::to_value(&fid).unwrap();
            prop_assert_eq!(serde_json::from_value::<CardFid>(json).unwrap(), fid);
        }

        #[test]
        fn a_card_fid_is_the_same_in_either_case(s in "[A-Za-z0-9]{1,32}") {
            let lower = CardFid::parse(&s.to_ascii_lowercase()).unwrap();
            let upper = CardFid::parse(&s.to_ascii_uppercase()).unwrap();
            prop_assert_eq!(&lower, &upper);
            prop_assert_eq!(crate::card::stream_key(&lower), crate::card::stream_key(&upper));
            prop_assert_eq!(CardFid::parse(&s).unwrap(), upper);
        }

        #[test]
        fn card_fids_with_another_character_are_rejected(
            s in "[A-Za-z0-9]{0,10}",
            ch in any::<char>().prop_filter("not ASCII alphanumeric", |c| !c.is_ascii_alphanumeric()),
        ) {
            prop_assert_eq!(CardFid::parse(&format!("{s}{ch}")), Err(ParseError::NotHalfWidthAlphanumeric));
        }

        #[test]
        fn occupations_parse_trimmed_and_round_trip(
            core in "[^\\p{Cc}\\s]([^\\p{Cc}]{0,48}[^\\p{Cc}\\s])?",
            pad in "[ \u{3000}]{0,3}",
        ) {
            let job = Occupation::parse(&format!("{pad}{core}{pad}")).unwrap();
            prop_assert_eq!(job.as_str(), core.as_str());
            let json = serde_json::to_value(&job).unwrap();
            prop_assert_eq!(serde_json::from_value::<Occupation>(json).unwrap(), job);
        }

        #[test]
        fn occupations_longer_than_50_are_rejected(core in "[^\\p{Cc}\\s]{51,80}") {
            prop_assert_eq!(Occupation::parse(&core), Err(ParseError::TooLong { max: 50 }));
        }
    }
}
