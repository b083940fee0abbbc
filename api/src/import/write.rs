//! Writing CSV files that Excel opens: UTF-8 with a BOM or Shift_JIS (〓 for what it cannot hold), CRLF line
//! ends, quoted where needed, formula cells guarded; a chunk at a time so that an export can stream.

use super::charset::{Charset, UTF8_BOM, encode_sjis, guard};
use crate::error::ApiError;

/// Writes CSV rows in one charset.
#[derive(Debug, Clone, Copy)]
pub struct CsvWriter {
    charset: Charset,
}

impl CsvWriter {
    pub fn new(charset: Charset) -> Self {
        CsvWriter { charset }
    }

    pub fn charset(&self) -> Charset {
        self.charset
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use encoding_rs::SHIFT_JIS;

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
