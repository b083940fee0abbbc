//! Reading a CSV file row by row from any `Read`, an in-memory body or one streamed from the client: the
//! header row first (deciding the charset), then each data row with its cells decoded, numbered as a
//! spreadsheet numbers it (the header is row 1; blank lines and CRLF count as a clerk counts them; a quoted
//! line break stays inside its row). A row longer than a bound stops the reading, so one row's memory is bounded
//! however large the file. Never more than the parser's buffer and the current row are held.

use std::collections::VecDeque;
use std::io::{self, Read};

use super::charset::{Charset, UTF8_BOM, decode_cell, not_utf8};
use crate::error::{ApiError, FieldError};
use crate::i18n::Text;

/// Bytes the CSV parser reads ahead of the row it is on.
const READ_AHEAD: usize = 64 * 1024;

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

/// Why the file could not be read on at `row`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The row is longer than the bound given to [`CsvRows::new`].
    TooLong { row: u64 },
    /// The source failed (a streamed body broke off or stalled: the source knows which).
    Source { row: u64 },
}

impl ReadError {
    pub fn row(self) -> u64 {
        match self {
            ReadError::TooLong { row } | ReadError::Source { row } => row,
        }
    }
}

/// Why the header row could not be read.
#[derive(Debug)]
pub enum HeaderError {
    /// An answer to give as it is (an empty file, an undecodable header, a file that is not UTF-8).
    Problem(ApiError),
    Read(ReadError),
}

/// A CSV file being read.
pub struct CsvRows<R: Read> {
    csv: ::csv::Reader<Counted<R>>,
    record: ::csv::ByteRecord,
    charset: Charset,
}

impl<R: Read> std::fmt::Debug for CsvRows<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvRows").field("charset", &self.charset).finish_non_exhaustive()
    }
}

impl<R: Read> CsvRows<R> {
    /// A file read from `source` (a UTF-8 BOM at its start is dropped); rows longer than `max_row_bytes` (when
    /// given) stop the reading with [`ReadError::TooLong`].
    pub fn new(source: R, max_row_bytes: Option<u64>) -> Self {
        let counted = Counted::new(source, max_row_bytes.map(|m| m + READ_AHEAD as u64));
        let csv = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(READ_AHEAD)
            .from_reader(counted);
        CsvRows { csv, record: ::csv::ByteRecord::new(), charset: Charset::Utf8 }
    }

    /// The source, e.g. to ask a streamed body why it stopped.
    pub fn source(&self) -> &R {
        &self.csv.get_ref().inner
    }

    /// The charset the rows are decoded in (decided by [`CsvRows::header`]).
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// Reads the header row: its cells and its row number. Decides the charset: UTF-8 when the file starts with
    /// a BOM whatever the label, else the `declared` one; a file that declares none must have a UTF-8 header
    /// (else `415`).
    pub fn header(&mut self, declared: Option<Charset>) -> Result<(Vec<String>, u64), HeaderError> {
        let row = match self.read() {
            None => {
                return Err(HeaderError::Problem(ApiError::validation(vec![
                    FieldError::new(
                        "/rows",
                        Text::new(
                            "ファイルが空です。1行目に見出しが必要です",
                            "the file is empty; row 1 must be the header",
                        ),
                    )
                    .in_row(1),
                ])));
            }
            Some(Err(e)) => return Err(HeaderError::Read(e)),
            Some(Ok(row)) => row,
        };
        let bom = self.csv.get_ref().bom;
        self.charset = if bom { Charset::Utf8 } else { declared.unwrap_or(Charset::Utf8) };
        let mut names = Vec::with_capacity(self.record.len());
        for (i, cell) in self.record.iter().enumerate() {
            match decode_cell(cell, self.charset) {
                Ok(name) => names.push(name),
                Err(_) if declared.is_none() && !bom => return Err(HeaderError::Problem(not_utf8())),
                Err(message) => {
                    return Err(HeaderError::Problem(ApiError::validation(vec![
                        FieldError::new(format!("/rows/{row}"), message).in_cell(row, format!("{}列目", i + 1)),
                    ])));
                }
            }
        }
        Ok((names, row))
    }

    /// The next row, decoded; `None` at the end of the file. Blank lines are skipped (they keep their numbers:
    /// the rows after them are numbered as a spreadsheet would); rows of empty cells are not (see
    /// [`CsvRow::is_blank`]).
    pub fn next_row(&mut self) -> Option<Result<CsvRow, ReadError>> {
        let row = match self.read()? {
            Ok(row) => row,
            Err(e) => return Some(Err(e)),
        };
        let cells = self.record.iter().map(|cell| decode_cell(cell, self.charset)).collect();
        Some(Ok(CsvRow { row, cells }))
    }

    /// Reads the next record into `self.record`: its row number.
    fn read(&mut self) -> Option<Result<u64, ReadError>> {
        match self.csv.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let row = self.csv.get_mut().line_of(self.record.position().map_or(0, |p| p.byte()));
                let next = self.csv.position().byte();
                self.csv.get_mut().record_start = next;
                Some(Ok(row))
            }
            Err(_) => {
                let position = self.csv.position().byte();
                let counted = self.csv.get_mut();
                let row = counted.line_of(position);
                Some(Err(if counted.too_long { ReadError::TooLong { row } } else { ReadError::Source { row } }))
            }
        }
    }
}

/// The source as the CSV parser reads it: without a leading UTF-8 BOM, keeping what row numbering needs (where
/// the line ends are) and refusing a row that grows beyond its bound.
struct Counted<R> {
    inner: R,
    started: bool,
    bom: bool,
    /// The first bytes, read to look for a BOM, not yet handed on.
    head: VecDeque<u8>,
    /// The bound on one record's bytes (plus the parser's read-ahead).
    max_record: Option<u64>,
    too_long: bool,
    /// Bytes handed to the parser so far (after the BOM).
    offset: u64,
    /// Where the current record started.
    record_start: u64,
    /// The offset of the last byte that was not a line end.
    last_content: Option<u64>,
    /// Per line feed not yet counted: the offset of the last byte before it that was not a line end.
    newlines: VecDeque<Option<u64>>,
    /// Line feeds counted (those before the current record's first character).
    lines: u64,
}

impl<R: Read> Counted<R> {
    fn new(inner: R, max_record: Option<u64>) -> Self {
        Counted {
            inner,
            started: false,
            bom: false,
            head: VecDeque::new(),
            max_record,
            too_long: false,
            offset: 0,
            record_start: 0,
            last_content: None,
            newlines: VecDeque::new(),
            lines: 0,
        }
    }

    /// Reads the first bytes and drops a UTF-8 BOM.
    fn start(&mut self) -> io::Result<()> {
        self.started = true;
        let mut head = [0_u8; 3];
        let mut len = 0;
        while len < head.len() {
            match self.inner.read(&mut head[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if head[..len] == *UTF8_BOM {
            self.bom = true;
        } else {
            self.head.extend(&head[..len]);
        }
        Ok(())
    }

    /// The line (from 1) of the first character of the record that starts at `start` (a byte offset as the CSV
    /// parser counts it): blank lines before a record keep their numbers, as in a spreadsheet.
    fn line_of(&mut self, start: u64) -> u64 {
        // A line feed is before the record's first character when no character of the record precedes it; the
        // offsets of the last characters grow along the queue, so the counted ones are a prefix.
        while self.newlines.front().is_some_and(|last| last.is_none_or(|l| l < start)) {
            self.newlines.pop_front();
            self.lines += 1;
        }
        self.lines + 1
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.started {
            self.start()?;
        }
        let n = if self.head.is_empty() {
            self.inner.read(buf)?
        } else {
            let n = buf.len().min(self.head.len());
            for (slot, byte) in buf.iter_mut().zip(self.head.drain(..n)) {
                *slot = byte;
            }
            n
        };
        for (i, b) in buf[..n].iter().enumerate() {
            match b {
                b'\n' => self.newlines.push_back(self.last_content),
                b'\r' => {}
                _ => self.last_content = Some(self.offset + i as u64),
            }
        }
        self.offset += n as u64;
        if self.max_record.is_some_and(|max| self.offset.saturating_sub(self.record_start) > max) {
            self.too_long = true;
            return Err(io::Error::other("a row is too long"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::import::charset::encode_sjis;

    fn numbers(text: &[u8]) -> Vec<u64> {
        let mut rows = CsvRows::new(text, None);
        let (_, header) = rows.header(None).unwrap();
        let mut numbers = vec![header];
        while let Some(row) = rows.next_row() {
            numbers.push(row.unwrap().row);
        }
        numbers
    }

    #[test]
    fn rows_are_numbered_as_a_spreadsheet_numbers_them() {
        let body = "a,b\r\n1,2\r\n\r\n\"x\",\u{3000}y \r\n".as_bytes();
        let mut t = CsvRows::new(body, None);
        assert_eq!(t.header(None).unwrap(), (vec!["a".to_owned(), "b".to_owned()], 1));
        let r = t.next_row().unwrap().unwrap();
        assert_eq!(r.row, 2);
        let r = t.next_row().unwrap().unwrap();
        assert_eq!(r.row, 4, "the blank line 3 keeps its number");
        assert_eq!(r.cells.into_iter().map(Result::unwrap).collect::<Vec<_>>(), ["x", "y"]);
        assert!(t.next_row().is_none());
    }

    #[test]
    fn line_numbers_count_blank_lines_crlf_and_quoted_line_breaks() {
        assert_eq!(numbers(b"a,b\r\n1,2\r\n\r\n\"x\ny\",3\n4,5"), [1, 2, 4, 6]);
        assert_eq!(numbers(b"\n\na\n1"), [3, 4], "a header after blank lines is on the line it is on");
    }

    #[test]
    fn a_bom_is_dropped_and_means_utf8() {
        let mut body = b"\xEF\xBB\xBF".to_vec();
        body.extend_from_slice("氏名\r\n髙橋\r\n".as_bytes());
        let mut t = CsvRows::new(&body[..], None);
        assert_eq!(t.header(Some(Charset::ShiftJis)).unwrap(), (vec!["氏名".to_owned()], 1));
        assert_eq!(t.charset(), Charset::Utf8);
        assert_eq!(t.next_row().unwrap().unwrap().cells[0].as_deref(), Ok("髙橋"));
    }

    #[test]
    fn shift_jis_cells_decode_and_bad_bytes_are_named() {
        let mut body = encode_sjis("氏名,部門\r\n髙橋,ソフト開発課\r\n");
        body.extend_from_slice(b"\x82,x\r\n");
        let mut t = CsvRows::new(&body[..], None);
        assert!(matches!(t.header(None), Err(HeaderError::Problem(e)) if e.status().as_u16() == 415));
        let mut t = CsvRows::new(&body[..], None);
        assert_eq!(t.header(Some(Charset::ShiftJis)).unwrap().0, ["氏名", "部門"]);
        let r = t.next_row().unwrap().unwrap();
        assert_eq!(r.cells.into_iter().map(Result::unwrap).collect::<Vec<_>>(), ["髙橋", "ソフト開発課"]);
        let r = t.next_row().unwrap().unwrap();
        assert!(r.cells[0].is_err());
        assert!(!r.is_blank());
    }

    #[test]
    fn an_empty_file_has_no_header() {
        let mut t = CsvRows::new(&b""[..], None);
        assert!(matches!(t.header(None), Err(HeaderError::Problem(e)) if e.status().as_u16() == 422));
    }

    #[test]
    fn a_row_longer_than_the_bound_stops_the_reading() {
        let mut body = b"a\r\n1\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', 200 * 1024));
        body.extend_from_slice(b"\r\n2\r\n");
        let mut t = CsvRows::new(&body[..], Some(1024));
        t.header(None).unwrap();
        assert_eq!(t.next_row().unwrap().unwrap().row, 2);
        assert_eq!(t.next_row().unwrap().unwrap_err(), ReadError::TooLong { row: 3 });
    }
}
