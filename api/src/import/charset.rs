//! The character encodings of a CSV file: what a request declares (`Content-Type: text/csv; charset=…`), what
//! a body is actually read in (a UTF-8 BOM wins; undeclared must be UTF-8), decoding one cell, encoding Shift_JIS
//! output, and the formula guard (`'` before `=`, `+`, `-`, `@`) that keeps an export from running anything
//! when a spreadsheet opens it.

use std::borrow::Cow;

use axum::http::{HeaderMap, header};
use encoding_rs::{EncoderResult, SHIFT_JIS};

use crate::error::ApiError;
use crate::i18n::Text;

pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// 〓 (geta) in Shift_JIS: the customary stand-in for a character the code page cannot hold.
const SJIS_GETA: &[u8] = b"\x81\xAC";

/// The character encodings a CSV file may come in or go out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Utf8,
    /// Shift_JIS as Windows has it (windows-31j / CP932: NEC and IBM extensions included).
    ShiftJis,
}

impl Charset {
    /// The charset named by a `charset=` label (case-insensitive), if we support it.
    pub fn from_label(label: &str) -> Option<Charset> {
        let label = label.trim().trim_matches('"').to_ascii_lowercase();
        match label.as_str() {
            "utf-8" | "utf8" => Some(Charset::Utf8),
            "shift_jis" | "shift-jis" | "sjis" | "x-sjis" | "windows-31j" | "cp932" | "ms932" | "ms_kanji" => {
                Some(Charset::ShiftJis)
            }
            _ => None,
        }
    }

    /// The name to put in a `Content-Type`.
    pub fn name(self) -> &'static str {
        match self {
            Charset::Utf8 => "UTF-8",
            Charset::ShiftJis => "Shift_JIS",
        }
    }

    /// `text/csv; charset=…`.
    pub fn content_type(self) -> String {
        format!("text/csv; charset={}", self.name())
    }
}

/// What the expected `Content-Type` is, for 415 answers.
const EXPECTED: &str = "text/csv; charset=UTF-8 または text/csv; charset=Shift_JIS";

/// The charset a CSV request declares: `Some` when its `Content-Type` names one, `None` when it names none.
/// Anything but `text/csv` (or `application/csv`), or a charset we cannot read, is a 415.
pub fn declared_charset(headers: &HeaderMap) -> Result<Option<Charset>, ApiError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !(media.eq_ignore_ascii_case("text/csv") || media.eq_ignore_ascii_case("application/csv")) {
        return Err(ApiError::unsupported_media_type(EXPECTED));
    }
    for part in parts {
        let Some((name, value)) = part.split_once('=') else { continue };
        if name.trim().eq_ignore_ascii_case("charset") {
            return match Charset::from_label(value) {
                Some(c) => Ok(Some(c)),
                None => Err(ApiError::unsupported_media_type(EXPECTED).with_detail(Text::new(
                    format!(
                        "文字コード {} には対応していません。UTF-8 または Shift_JIS を指定してください",
                        value.trim()
                    ),
                    format!("charset {} is not supported; use UTF-8 or Shift_JIS", value.trim()),
                ))),
            };
        }
    }
    Ok(None)
}

/// The 415 for a file that is not UTF-8 and does not say what it is.
pub fn not_utf8() -> ApiError {
    ApiError::unsupported_media_type(EXPECTED).with_detail(Text::new(
        "ファイルが UTF-8 ではありません。Shift_JIS のファイルは Content-Type: text/csv; charset=Shift_JIS \
         を指定して送信してください",
        "the file is not UTF-8; send a Shift_JIS file with Content-Type: text/csv; charset=Shift_JIS",
    ))
}

/// The charset a whole (in-memory) body is read in, and the body without its byte order mark.
///
/// A UTF-8 BOM means UTF-8 whatever the label says (as browsers decide). Without a declared charset the body
/// must be valid UTF-8: a Shift_JIS file must say so (`charset=Shift_JIS`), since guessing could garble names.
pub fn body_charset(declared: Option<Charset>, body: &[u8]) -> Result<(Charset, &[u8]), ApiError> {
    if let Some(rest) = body.strip_prefix(UTF8_BOM) {
        return Ok((Charset::Utf8, rest));
    }
    match declared {
        Some(charset) => Ok((charset, body)),
        None if std::str::from_utf8(body).is_ok() => Ok((Charset::Utf8, body)),
        None => Err(not_utf8()),
    }
}

/// One cell as text: decoded in the file's charset (cell by cell: a Shift_JIS byte never looks like a comma, a
/// quote or a line end, so the CSV parser can split the raw bytes), trimmed (full-width spaces too), and a
/// formula guard `'` taken off.
pub fn decode_cell(bytes: &[u8], charset: Charset) -> Result<String, Text> {
    let text: Cow<'_, str> = match charset {
        Charset::Utf8 => Cow::Borrowed(std::str::from_utf8(bytes).map_err(|_| {
            Text::new("UTF-8 として読み取れない文字があります", "contains bytes that are not valid UTF-8")
        })?),
        Charset::ShiftJis => SHIFT_JIS.decode_without_bom_handling_and_without_replacement(bytes).ok_or_else(|| {
            Text::new("Shift_JIS として読み取れない文字があります", "contains bytes that are not valid Shift_JIS")
        })?,
    };
    Ok(unguard(text.trim()).to_owned())
}

/// Whether a spreadsheet would take a cell starting with `c` for a formula (OWASP "CSV injection").
fn starts_formula(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

/// A cell as written: with a leading `'` if a spreadsheet would take it for a formula.
pub fn guard(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some(c) if starts_formula(c) => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// A cell as read: the `'` that [`guard`] added taken off again.
pub fn unguard(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.chars().next().is_some_and(starts_formula) => rest,
        _ => cell,
    }
}

/// `text` in Shift_JIS (windows-31j), with 〓 for what it cannot hold.
pub fn encode_sjis(text: &str) -> Vec<u8> {
    let mut encoder = SHIFT_JIS.new_encoder();
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    loop {
        // Shift_JIS never needs more bytes than UTF-8 for the same text, plus room for a 〓.
        out.reserve(rest.len() + SJIS_GETA.len());
        let (result, read) = encoder.encode_from_utf8_to_vec_without_replacement(rest, &mut out, true);
        rest = &rest[read..];
        match result {
            EncoderResult::InputEmpty => return out,
            EncoderResult::OutputFull => {}
            EncoderResult::Unmappable(_) => out.extend_from_slice(SJIS_GETA),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use axum::http::HeaderValue;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        h
    }

    #[test]
    fn charsets_are_named_as_municipal_systems_name_them() {
        for label in ["Shift_JIS", "shift_jis", "windows-31j", "CP932", "MS932", "\"Shift_JIS\""] {
            assert_eq!(Charset::from_label(label), Some(Charset::ShiftJis), "{label}");
        }
        for label in ["UTF-8", "utf8"] {
            assert_eq!(Charset::from_label(label), Some(Charset::Utf8), "{label}");
        }
        assert_eq!(Charset::from_label("EUC-JP"), None);
    }

    #[test]
    fn the_content_type_must_be_csv_and_its_charset_known() {
        assert_eq!(declared_charset(&headers("text/csv")).unwrap(), None);
        assert_eq!(declared_charset(&headers("text/csv; charset=UTF-8")).unwrap(), Some(Charset::Utf8));
        assert_eq!(declared_charset(&headers("Text/CSV;charset=cp932")).unwrap(), Some(Charset::ShiftJis));
        assert_eq!(declared_charset(&headers("application/json")).unwrap_err().status().as_u16(), 415);
        assert_eq!(declared_charset(&headers("text/csv; charset=EUC-JP")).unwrap_err().status().as_u16(), 415);
        assert_eq!(declared_charset(&HeaderMap::new()).unwrap_err().status().as_u16(), 415);
    }

    #[test]
    fn a_bom_means_utf8_and_an_undeclared_body_must_be_utf8() {
        let (c, rest) = body_charset(Some(Charset::ShiftJis), b"\xEF\xBB\xBFa,b").unwrap();
        assert_eq!((c, rest), (Charset::Utf8, &b"a,b"[..]));
        assert_eq!(body_charset(None, "氏名".as_bytes()).unwrap().0, Charset::Utf8);
        let sjis = encode_sjis("氏名");
        assert_eq!(body_charset(None, &sjis).unwrap_err().status().as_u16(), 415);
        assert_eq!(body_charset(Some(Charset::ShiftJis), &sjis).unwrap().0, Charset::ShiftJis);
    }

    #[test]
    fn cells_are_decoded_trimmed_and_unguarded() {
        assert_eq!(decode_cell("\u{3000}髙橋 ".as_bytes(), Charset::Utf8).unwrap(), "髙橋");
        assert_eq!(decode_cell(&encode_sjis("髙橋"), Charset::ShiftJis).unwrap(), "髙橋");
        assert_eq!(decode_cell(b"'=1", Charset::Utf8).unwrap(), "=1");
        assert!(decode_cell(b"\x82", Charset::ShiftJis).is_err());
        assert!(decode_cell(b"\xff", Charset::Utf8).is_err());
    }

    #[test]
    fn formula_cells_are_guarded_on_the_way_out_and_unguarded_on_the_way_in() {
        for cell in ["=1+2", "+81", "-", "@SUM(A1)"] {
            let written = guard(cell);
            assert!(written.starts_with('\''), "{cell}");
            assert_eq!(unguard(&written), cell);
        }
        assert_eq!(guard("窓口 太郎"), "窓口 太郎");
        assert_eq!(unguard("'quoted"), "'quoted", "only a guard in front of a formula character is taken off");
    }
}
