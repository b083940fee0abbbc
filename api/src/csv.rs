//! CSV at the HTTP edge: the charset of an uploaded file (UTF-8 with or without BOM, or Shift_JIS as municipal
//! systems and Excel on Japanese Windows write it), reading it row by row with the row numbers a clerk sees in
//! his spreadsheet, and writing CSV that Excel opens (UTF-8 with BOM, or Shift_JIS; CRLF line ends).
//!
//! Owns the file format only: what the columns mean is the routes' business. Cells that a spreadsheet would
//! take for a formula (`=`, `+`, `-`, `@` first) are written with a leading `'` so that opening an export never
//! runs anything, and the reader takes that `'` off again, so an export imports as it was.

use std::borrow::Cow;

use axum::http::{HeaderMap, header};
use encoding_rs::{EncoderResult, SHIFT_JIS};

use crate::error::{ApiError, FieldError};
use crate::i18n::Text;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

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

/// The charset the body is actually read in, and the body without its byte order mark.
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
        None => Err(ApiError::unsupported_media_type(EXPECTED).with_detail(Text::new(
            "ファイルが UTF-8 ではありません。Shift_JIS のファイルは Content-Type: text/csv; charset=Shift_JIS \
             を指定して送信してください",
            "the file is not UTF-8; send a Shift_JIS file with Content-Type: text/csv; charset=Shift_JIS",
        ))),
    }
}

/// One data row: its number as a spreadsheet shows it, and its cells, trimmed, each decoded or not.
#[derive(Debug)]
pub struct CsvRow {
    /// The line the row starts on (the header is row 1 in a file that starts with it).
    pub row: u64,
    /// `Err` for a cell that is not valid text in the file's charset.
    pub cells: Vec<Result<String, Text>>,
}

impl CsvRow {
    /// Whether every cell is empty (a blank row a spreadsheet left behind, e.g. `,,,`).
    pub fn is_blank(&self) -> bool {
        self.cells.iter().all(|c| c.as_ref().is_ok_and(String::is_empty))
    }
}

/// A CSV file being read: the header row, then the data rows one at a time.
pub struct CsvTable<'a> {
    body: &'a [u8],
    /// Line numbers are counted by us: `csv` counts neither blank lines nor CRLF line ends the way a clerk does.
    counted_to: usize,
    line: u64,
    reader: ::csv::Reader<&'a [u8]>,
    charset: Charset,
    record: ::csv::ByteRecord,
    header: Vec<String>,
    header_row: u64,
}

impl std::fmt::Debug for CsvTable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvTable").field("charset", &self.charset).field("header", &self.header).finish()
    }
}

impl<'a> CsvTable<'a> {
    /// Reads the header row. A file without one, or with a header cell that is not text, is refused.
    pub fn open(body: &'a [u8], charset: Charset) -> Result<Self, FieldError> {
        let reader = ::csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(body);
        let mut table = CsvTable {
            body,
            counted_to: 0,
            line: 1,
            reader,
            charset,
            record: ::csv::ByteRecord::new(),
            header: vec![],
            header_row: 1,
        };
        let Some(header) = table.next_row() else {
            return Err(FieldError::new(
                "/rows",
                Text::new("ファイルが空です。1行目に見出しが必要です", "the file is empty; row 1 must be the header"),
            )
            .in_row(1));
        };
        let header = header.map_err(|e| e.into_iter().next().unwrap_or_else(|| unreadable(1)))?;
        let mut names = Vec::with_capacity(header.cells.len());
        for (i, cell) in header.cells.into_iter().enumerate() {
            match cell {
                Ok(name) => names.push(name),
                Err(message) => {
                    return Err(FieldError::new(format!("/rows/{}", header.row), message)
                        .in_cell(header.row, format!("{}列目", i + 1)));
                }
            }
        }
        table.header = names;
        table.header_row = header.row;
        Ok(table)
    }

    /// The header cells as written (trimmed).
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The row the header is on.
    pub fn header_row(&self) -> u64 {
        self.header_row
    }

    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// The next row, or a structural error located at its row. Blank lines are skipped (they keep their
    /// numbers: the rows after them are numbered as a spreadsheet would).
    pub fn next_row(&mut self) -> Option<Result<CsvRow, Vec<FieldError>>> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let row = self.line_at(self.record.position().map_or(0, |p| p.byte()));
                let cells = self.record.iter().map(|cell| decode_cell(cell, self.charset)).collect();
                Some(Ok(CsvRow { row, cells }))
            }
            Err(e) => {
                let row = self.line_at(e.position().map_or(self.counted_to as u64, |p| p.byte()));
                Some(Err(vec![unreadable(row)]))
            }
        }
    }

    /// The line (from 1) of the first character at or after `byte` that is not a line end.
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut start = usize::try_from(byte).unwrap_or(usize::MAX).min(self.body.len());
        while start < self.body.len() && matches!(self.body[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.counted_to {
            let newlines = self.body[self.counted_to..start].iter().filter(|&&b| b == b'\n').count();
            self.line += newlines as u64;
            self.counted_to = start;
        }
        self.line
    }
}

fn unreadable(row: u64) -> FieldError {
    FieldError::new(format!("/rows/{row}"), Text::new("CSV として読み取れない行です", "this row cannot be read as CSV"))
        .in_row(row)
}

/// One cell as text: decoded, trimmed (full-width spaces too), and a formula guard `'` taken off.
fn decode_cell(bytes: &[u8], charset: Charset) -> Result<String, Text> {
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
/// The header row names one column twice (`field` is its JSON name, `label` the screen's).
pub fn duplicate_column(row: u64, field: &str, label: &str, header: &str) -> FieldError {
    FieldError::new(
        format!("/rows/{row}/{field}"),
        Text::new(format!("「{label}」の列が2つあります"), format!("the column {field} appears twice")),
    )
    .in_cell(row, header.to_owned())
}

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

/// Writes CSV rows (CRLF line ends, quoted where needed, formula cells guarded) in one charset, a chunk at a
/// time, so an export can stream.
#[derive(Debug, Clone, Copy)]
pub struct CsvWriter {
    charset: Charset,
}

impl CsvWriter {
    pub fn new(charset: Charset) -> Self {
        CsvWriter { charset }
    }

    /// What the file starts with: the UTF-8 BOM (so Excel takes the file for UTF-8), nothing for Shift_JIS.
    pub fn preamble(&self) -> &'static [u8] {
        match self.charset {
            Charset::Utf8 => UTF8_BOM,
            Charset::ShiftJis => b"",
        }
    }

    /// `rows` as bytes of the file. In Shift_JIS, a character it cannot hold is written as 〓.
    pub fn chunk<R, C>(&self, rows: R) -> Result<Vec<u8>, ApiError>
    where
        R: IntoIterator<Item = C>,
        C: IntoIterator,
        C::Item: AsRef<str>,
    {
        let mut writer =
            ::csv::WriterBuilder::new().terminator(::csv::Terminator::CRLF).flexible(true).from_writer(vec![]);
        for row in rows {
            let cells: Vec<String> = row.into_iter().map(|c| guard(c.as_ref()).into_owned()).collect();
            writer.write_record(&cells).map_err(ApiError::internal)?;
        }
        let utf8 = writer.into_inner().map_err(ApiError::internal)?;
        Ok(match self.charset {
            Charset::Utf8 => utf8,
            Charset::ShiftJis => encode_sjis(&String::from_utf8(utf8).map_err(ApiError::internal)?),
        })
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
    fn rows_are_numbered_as_a_spreadsheet_numbers_them() {
        let body = "a,b\r\n1,2\r\n\r\n\"x\",\u{3000}y \r\n".as_bytes();
        let mut t = CsvTable::open(body, Charset::Utf8).unwrap();
        assert_eq!(t.header(), ["a", "b"]);
        assert_eq!(t.header_row(), 1);
        let r = t.next_row().unwrap().unwrap();
        assert_eq!(r.row, 2);
        let r = t.next_row().unwrap().unwrap();
        assert_eq!(r.row, 4, "the blank line 3 keeps its number");
        assert_eq!(r.cells.into_iter().map(Result::unwrap).collect::<Vec<_>>(), ["x", "y"]);
        assert!(t.next_row().is_none());
    }

    #[test]
    fn shift_jis_cells_decode_and_bad_bytes_are_named() {
        let mut body = encode_sjis("氏名,部門\r\n髙橋,ソフト開発課\r\n");
        body.extend_from_slice(b"\x82,x\r\n");
        let mut t = CsvTable::open(&body, Charset::ShiftJis).unwrap();
        assert_eq!(t.header(), ["氏名", "部門"]);
        let r = t.next_row().unwrap().unwrap();
        assert_eq!(r.cells.into_iter().map(Result::unwrap).collect::<Vec<_>>(), ["髙橋", "ソフト開発課"]);
        let r = t.next_row().unwrap().unwrap();
        assert!(r.cells[0].is_err());
        assert!(!r.is_blank());
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

    #[test]
    fn writing_quotes_guards_and_ends_lines_with_crlf() {
        let w = CsvWriter::new(Charset::Utf8);
        assert_eq!(w.preamble(), UTF8_BOM);
        let bytes = w.chunk([vec!["a,b", "=x"], vec!["\"q\"", ""]]).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), "\"a,b\",'=x\r\n\"\"\"q\"\"\",\r\n");
    }

    #[test]
    fn shift_jis_output_uses_geta_for_what_it_cannot_hold() {
        let w = CsvWriter::new(Charset::ShiftJis);
        assert!(w.preamble().is_empty());
        let bytes = w.chunk([vec!["髙橋", "😀"]]).unwrap();
        let (text, _, errors) = SHIFT_JIS.decode(&bytes);
        assert!(!errors);
        assert_eq!(text, "髙橋,〓\r\n");
    }
}
