//! The cell formats of the CSV files municipal systems exchange (住基 exports, 住基ネットCS, the operator
//! screens' files): 生年月日 as registries and cards write it (和暦 `EYYMMDD`, `YYYYMMDD`, `YYYY-MM-DD`, the era in
//! words), 性別 as a digit or a word, and an operator's 業務内IDs in one cell. Pure text ⇄ value: each format has a `parse` that accepts every form a
//! clerk's file may hold and a `format` that writes the one canonical form, so that a written cell reads back as
//! the same value.

use std::collections::BTreeMap;

use crate::contact::{Sex, Text100};
use crate::operator::{InternalId, InternalIdAssignment};
use crate::resident::EraDate;
use crate::{BusinessId, ParseError};

/// Why a cell could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    /// Not a date in any accepted form.
    #[error(
        "birth date must be EYYMMDD (e.g. 3640107), YYYYMMDD (e.g. 19890107), YYYY-MM-DD or YYYY/MM/DD, or the era \
         form 昭和64年1月7日"
    )]
    DateFormat,
    /// A date in an accepted form that does not exist or lies outside its era.
    #[error(transparent)]
    Date(ParseError),
    /// Neither an ISO 5218 digit nor a word for one.
    #[error("sex must be an ISO 5218 digit (1 male, 2 female, 9 not applicable, 0 not known) or 男/女")]
    Sex,
    /// A 業務内ID entry that is not `business_id:internal_id[:role]`.
    #[error(
        "{entry:?}: 業務内ID entries are business_id:internal_id or business_id:internal_id:role, separated by spaces"
    )]
    InternalIdFormat { entry: String },
    /// A part of a 業務内ID entry that does not parse.
    #[error("{entry:?}: {error}")]
    InternalId { entry: String, error: ParseError },
    /// Two entries for one business system.
    #[error("business system {0} has two 業務内IDs")]
    InternalIdTwice(BusinessId),
}

impl crate::message::Localized for CellError {
    /// A short Japanese message for the clerk whose file it is.
    fn message_ja(&self) -> String {
        match self {
            Self::DateFormat => "生年月日は EYYMMDD（例: 3640107）、YYYYMMDD（例: 19890107）、YYYY-MM-DD、\
                                 または和暦（例: 昭和64年1月7日）で入力してください"
                .to_owned(),
            Self::Date(e) => e.message_ja(),
            Self::Sex => {
                "性別は 1（男）・2（女）・9（適用不能）・0（指定なし）の数字、または 男・女 で入力してください"
                    .to_owned()
            }
            Self::InternalIdFormat { entry } => format!(
                "「{entry}」: 業務内IDは 業務ID:業務内ID（役割があれば 業務ID:業務内ID:役割）を空白で区切って入力してください"
            ),
            Self::InternalId { entry, error } => format!("「{entry}」: {}", error.message_ja()),
            Self::InternalIdTwice(b) => format!("業務ID {b} の業務内IDが2つあります"),
        }
    }
}

/// Full-width ASCII forms (Ａ, ０, －, ／ …) and the full-width space as ASCII, long dashes as `-`: for keys,
/// dates and codes typed on a Japanese keyboard.
pub fn half_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            'ー' | '―' | '‐' => '-',
            c => c,
        })
        .collect()
}

/// 生年月日 cells.
#[derive(Debug, Clone, Copy)]
pub struct BirthDateCell;

impl BirthDateCell {
    /// A birth date as registries and cards write it: `EYYMMDD`, `YYYYMMDD` (the card's form), `YYYY-MM-DD`,
    /// `YYYY/M/D`, `YYYY.M.D`, or the era in words (`昭和64年1月7日`, `平成元年1月8日`). Full-width digits and
    /// spaces anywhere are accepted.
    pub fn parse(s: &str) -> Result<EraDate, CellError> {
        let s: String = half_width(s).chars().filter(|c| !c.is_whitespace()).collect();
        let date_error = |e: ParseError| match e {
            ParseError::NonexistentDate | ParseError::DateOutsideEra | ParseError::UnknownEra { .. } => {
                CellError::Date(e)
            }
            _ => CellError::DateFormat,
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let number = |t: &str| t.parse::<u32>().map_err(|_| CellError::DateFormat);
        let year = |t: &str| i32::try_from(number(t)?).map_err(|_| CellError::DateFormat);
        if digits(&s) && s.len() == 7 {
            return EraDate::parse(&s).map_err(date_error);
        }
        if digits(&s) && s.len() == 8 {
            return EraDate::from_gregorian(year(&s[..4])?, number(&s[4..6])?, number(&s[6..])?).map_err(date_error);
        }
        for separator in ['-', '/', '.'] {
            let parts: Vec<&str> = s.split(separator).collect();
            if let [y, m, d] = parts[..]
                && y.len() == 4
                && (1..=2).contains(&m.len())
                && (1..=2).contains(&d.len())
                && [y, m, d].into_iter().all(digits)
            {
                return EraDate::from_gregorian(year(y)?, number(m)?, number(d)?).map_err(date_error);
            }
        }
        for (code, era) in [('1', "明治"), ('2', "大正"), ('3', "昭和"), ('4', "平成"), ('5', "令和")] {
            let Some(rest) = s.strip_prefix(era) else { continue };
            let (year, rest) = rest.split_once('年').ok_or(CellError::DateFormat)?;
            let (month, rest) = rest.split_once('月').ok_or(CellError::DateFormat)?;
            let day = rest.strip_suffix('日').ok_or(CellError::DateFormat)?;
            let year = if year == "元" {
                1
            } else if digits(year) {
                number(year)?
            } else {
                return Err(CellError::DateFormat);
            };
            if !(digits(month) && digits(day)) || year > 99 {
                return Err(CellError::DateFormat);
            }
            let code = format!("{code}{year:02}{:02}{:02}", number(month)?, number(day)?);
            return EraDate::parse(&code).map_err(date_error);
        }
        Err(CellError::DateFormat)
    }

    /// The canonical cell: `EYYMMDD`.
    pub fn format(date: &EraDate) -> String {
        date.as_str().to_owned()
    }
}

/// 性別 cells.
#[derive(Debug, Clone, Copy)]
pub struct SexCell;

impl SexCell {
    /// The ISO 5218 digit (half or full width), or the words registries and the screens write (男, 女, 男性,
    /// 女性, 指定なし, 不明, 適用不能). Surrounding spaces are ignored.
    pub fn parse(s: &str) -> Result<Sex, CellError> {
        let s = half_width(s);
        match s.trim() {
            "男" | "男性" => Ok(Sex::Male),
            "女" | "女性" => Ok(Sex::Female),
            "指定なし" | "不明" => Ok(Sex::NotKnown),
            "適用不能" => Ok(Sex::NotApplicable),
            digit => Sex::parse(digit).map_err(|_| CellError::Sex),
        }
    }

    /// The canonical cell: the screen's word (指定なし, 男性, 女性, 適用不能).
    pub fn format(sex: Sex) -> &'static str {
        sex.label_ja()
    }
}

/// 業務内ID cells: an operator's 業務内IDs (one per business system), each `business_id:internal_id`, or
/// `business_id:internal_id:role` when that system names a role, separated by whitespace (`01:1000000010
/// 02:A77:窓口担当`). In the role, `%` and whitespace are written as `%` and their UTF-8 bytes in hex (`窓口%20担当`),
/// so that any role reads back as it was.
#[derive(Debug, Clone, Copy)]
pub struct InternalIdsCell;

impl InternalIdsCell {
    /// The assignments of a cell, by business system. An empty cell has none.
    pub fn parse(s: &str) -> Result<BTreeMap<BusinessId, InternalIdAssignment>, CellError> {
        let mut out = BTreeMap::new();
        for entry in s.split_whitespace() {
            let format_error = || CellError::InternalIdFormat { entry: entry.to_owned() };
            let part_error = |error| CellError::InternalId { entry: entry.to_owned(), error };
            let (business, rest) = entry.split_once(':').ok_or_else(format_error)?;
            let (internal, role) = match rest.split_once(':') {
                Some((internal, role)) => (internal, Some(role)),
                None => (rest, None),
            };
            let business_id = BusinessId::parse(business).map_err(part_error)?;
            let internal_id = InternalId::parse(internal).map_err(part_error)?;
            let role = match role {
                None => None,
                Some(role) => {
                    let role = unescape(role).ok_or_else(format_error)?;
                    Some(Text100::parse(&role).map_err(part_error)?)
                }
            };
            if out.contains_key(&business_id) {
                return Err(CellError::InternalIdTwice(business_id));
            }
            out.insert(business_id, InternalIdAssignment { internal_id, role });
        }
        Ok(out)
    }

    /// The canonical cell: the entries in business-ID order, one space between them.
    pub fn format<'a>(assignments: impl IntoIterator<Item = (&'a BusinessId, &'a InternalIdAssignment)>) -> String {
        assignments
            .into_iter()
            .map(|(b, a)| match &a.role {
                Some(role) => format!("{}:{}:{}", b.as_str(), a.internal_id.as_str(), escape(role.as_str())),
                None => format!("{}:{}", b.as_str(), a.internal_id.as_str()),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `%` and whitespace as `%XX` (their UTF-8 bytes).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c.is_whitespace() {
            let mut buf = [0_u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// [`escape`] undone; `None` for a `%` not followed by two hex digits or bytes that are not UTF-8.
fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Localized;
    use proptest::prelude::*;

    #[test]
    fn birth_dates_in_every_accepted_form() {
        for s in ["3640107", "19890107", "1989-01-07", "1989/1/7", "昭和64年1月7日", "１９８９０１０７", " 3640107 "]
        {
            assert_eq!(BirthDateCell::parse(s).unwrap().as_str(), "3640107", "{s}");
        }
        assert_eq!(BirthDateCell::parse("平成元年1月8日").unwrap().as_str(), "4010108");
        assert_eq!(BirthDateCell::parse("3640108"), Err(CellError::Date(ParseError::DateOutsideEra)));
        assert_eq!(BirthDateCell::parse("19890230"), Err(CellError::Date(ParseError::NonexistentDate)));
        for s in ["", "S640107", "1989-1", "89-01-07", "昭和64年1月", "364010", "昭和123年1月1日"] {
            assert_eq!(BirthDateCell::parse(s), Err(CellError::DateFormat), "{s}");
        }
    }

    #[test]
    fn sex_as_digit_or_word() {
        assert_eq!(SexCell::parse("1"), Ok(Sex::Male));
        assert_eq!(SexCell::parse("女"), Ok(Sex::Female));
        assert_eq!(SexCell::parse("２"), Ok(Sex::Female));
        assert_eq!(SexCell::parse("9"), Ok(Sex::NotApplicable));
        assert_eq!(SexCell::parse(" 指定なし "), Ok(Sex::NotKnown));
        assert_eq!(SexCell::parse("M"), Err(CellError::Sex));
        assert_eq!(SexCell::format(Sex::Male), "男性");
    }

    #[test]
    fn internal_ids_as_pairs_with_an_optional_role() {
        let ids = InternalIdsCell::parse(" 02:A77:窓口%20担当%25\u{3000}01:1000000010 ").unwrap();
        let b = |s: &str| BusinessId::parse(s).unwrap();
        assert_eq!(ids[&b("01")].internal_id.as_str(), "1000000010");
        assert_eq!(ids[&b("01")].role, None);
        assert_eq!(ids[&b("02")].role.as_ref().unwrap().as_str(), "窓口 担当%");
        assert_eq!(InternalIdsCell::format(&ids), "01:1000000010 02:A77:窓口%20担当%25");
        assert!(InternalIdsCell::parse("").unwrap().is_empty());
        for bad in ["01", "01:", "1:X", "01:X-1", "01:X:%G0", "01:X 01:Y", "01:X:%E3%80"] {
            assert!(InternalIdsCell::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_are_japanese() {
        let entry = "x".to_owned();
        for e in [
            CellError::DateFormat,
            CellError::Date(ParseError::NonexistentDate),
            CellError::Sex,
            CellError::InternalIdFormat { entry: entry.clone() },
            CellError::InternalId { entry, error: ParseError::Empty },
            CellError::InternalIdTwice(BusinessId::parse("01").unwrap()),
        ] {
            assert!(!e.message_ja().is_empty());
            assert!(!e.message_ja().is_ascii(), "{e}");
        }
    }

    /// Every day 明治 to 令和 as (year, month, day), Gregorian.
    fn any_day() -> impl Strategy<Value = EraDate> {
        (1868_i32..=2100, 1_u32..=12, 1_u32..=31)
            .prop_filter_map("an existing day inside the eras", |(y, m, d)| EraDate::from_gregorian(y, m, d).ok())
    }

    proptest! {
        #[test]
        fn a_formatted_birth_date_reads_back_as_itself(date in any_day()) {
            let cell = BirthDateCell::format(&date);
            prop_assert_eq!(BirthDateCell::parse(&cell), Ok(date.clone()));
            // format(parse(x)) == x over the canonical cells.
            prop_assert_eq!(BirthDateCell::format(&BirthDateCell::parse(&cell).unwrap()), cell);
        }

        #[test]
        fn every_written_form_of_a_day_is_the_same_date(date in any_day()) {
            let (y, m, d) = date.to_gregorian();
            let forms = [
                format!("{y:04}{m:02}{d:02}"),
                format!("{y:04}-{m:02}-{d:02}"),
                format!("{y}/{m}/{d}"),
                format!("{y}.{m}.{d}"),
                date.label_ja(),
                format!(" {} ", date.as_str()),
            ];
            for form in forms {
                prop_assert_eq!(BirthDateCell::parse(&form), Ok(date.clone()), "{}", form);
            }
        }

        #[test]
        fn a_formatted_sex_reads_back_as_itself(sex in prop::sample::select(Sex::ALL.to_vec())) {
            let cell = SexCell::format(sex);
            prop_assert_eq!(SexCell::parse(cell), Ok(sex));
            prop_assert_eq!(SexCell::format(SexCell::parse(cell).unwrap()), cell);
            prop_assert_eq!(SexCell::parse(sex.code()), Ok(sex));
        }

        #[test]
        fn parsing_any_text_never_panics(s in "\\PC{0,24}") {
            let _ = BirthDateCell::parse(&s);
            let _ = SexCell::parse(&s);
            let _ = InternalIdsCell::parse(&s);
        }

        #[test]
        fn formatted_internal_ids_read_back_as_themselves(
            entries in prop::collection::btree_map(
                "0[0-2]",
                ("[A-Za-z0-9]{1,32}", prop::option::of("[^\\p{C}\\s]([^\\p{C}]{0,20}[^\\p{C}\\s])?")),
                0..3,
            )
        ) {
            let ids: BTreeMap<BusinessId, InternalIdAssignment> = entries
                .iter()
                .filter_map(|(b, (i, r))| {
                    let role = match r {
                        Some(r) => Some(Text100::parse(r).ok()?),
                        None => None,
                    };
                    Some((BusinessId::parse(b).ok()?, InternalIdAssignment { internal_id: InternalId::parse(i).ok()?, role }))
                })
                .collect();
            let cell = InternalIdsCell::format(&ids);
            prop_assert_eq!(InternalIdsCell::parse(&cell), Ok(ids.clone()));
            prop_assert_eq!(InternalIdsCell::format(&InternalIdsCell::parse(&cell).unwrap()), cell);
        }

        #[test]
        fn parsing_digit_and_era_shaped_text_never_panics(
            s in "(明治|大正|昭和|平成|令和)?[0-9０-９元]{0,9}[年月日/.\\-]?[0-9]{0,4}[年月日/.\\-]?[0-9]{0,4}日?"
        ) {
            let _ = BirthDateCell::parse(&s);
        }
    }
}
