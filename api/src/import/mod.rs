//! The one CSV engine of the HTTP edge, for every file cardap takes or gives (operators, the resident registry):
//!
//! - [`charset`]: what the request declares, UTF-8 (BOM or not) or Shift_JIS, cell decoding, formula guards;
//! - [`rows`]: reading a file row by row from any `Read` (an in-memory body or a streamed one), with the row
//!   numbers a clerk sees in his spreadsheet and a bound on a row's length;
//! - [`body`]: a request body streamed into that reader, with a stall timeout and a time limit;
//! - [`layout`]: a header row matched against a layout's columns (JSON field names, the screens' labels or
//!   aliases), and each data row's cells per column with errors that name their `row` and `column`;
//! - [`write`]: writing CSV that Excel opens (UTF-8 with BOM or Shift_JIS, CRLF), a chunk at a time.
//!
//! What a column means and what a row becomes is the routes' business; the cell formats of dates and sex are
//! `cardap_domain::cells`'.

pub mod body;
pub mod charset;
pub mod layout;
pub mod rows;
pub mod write;

pub use charset::{Charset, body_charset, declared_charset};
pub use layout::{CellError, Column, Header, Row, Unknown};
pub use rows::{CsvRow, CsvRows, HeaderError, ReadError};
pub use write::CsvWriter;
