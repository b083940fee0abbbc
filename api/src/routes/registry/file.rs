//! The registry file (手引き I 1.1: 既存住基システム's export, 住基ネットCS's 本人確認4情報): its columns, the two
//! layouts told apart by the header, the parsing of a data row into a registry row or the errors of its cells,
//! and the parser that runs on a thread of its own and hands the import batches of [`BATCH_ROWS`] rows.
//!
//! Owns what a registry file looks like; reading a CSV (charsets, the streamed body, row numbers, header
//! matching) is `crate::import`'s, the cell formats of dates and sex `cardap_domain::cells`'. Must not log a
//! cell's content.

use cardap_commands::registry_import::{ImportInput, ImportRow, RegistryRow, SuppliedFacts};
use cardap_domain::ParseError;
use cardap_domain::cells::{self, BirthDateCell, SexCell, half_width};
use cardap_domain::registry::{FullName, RegistryFacts, RegistryKey, parse_full_kana};
use cardap_domain::resident::{Address, PostalCode};
use tokio::sync::{mpsc, oneshot};

use super::{BATCH_ROWS, IMPORT_TIME_LIMIT, STALL_TIMEOUT};
use crate::error::{ApiError, FieldError};
use crate::i18n::Text;
use crate::import::body::{BodyFailure, BodySource};
use crate::import::layout::header_form;
use crate::import::{self, CellError, Charset, CsvRow, CsvRows, Header, HeaderError, ReadError, Unknown};

/// The longest row accepted (a registry row is a few hundred bytes): bounds the memory of one row.
pub(super) const MAX_ROW_BYTES: u64 = 64 * 1024;

/// Characters of an unparseable registry key echoed in the report.
const MAX_ECHOED_KEY: usize = 40;

/// A column of a registry file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Column {
    Key,
    Name,
    KanjiFamily,
    KanjiGiven,
    Kana,
    BirthDate,
    Sex,
    PostalCode,
    Address,
}

impl import::Column for Column {
    const ALL: &'static [Column] = &[
        Column::Key,
        Column::Name,
        Column::KanjiFamily,
        Column::KanjiGiven,
        Column::Kana,
        Column::BirthDate,
        Column::Sex,
        Column::PostalCode,
        Column::Address,
    ];

    /// The English header name.
    fn field(self) -> &'static str {
        match self {
            Column::Key => "registry_key",
            Column::Name => "name",
            Column::KanjiFamily => "kanji_family",
            Column::KanjiGiven => "kanji_given",
            Column::Kana => "kana",
            Column::BirthDate => "birth_date",
            Column::Sex => "sex",
            Column::PostalCode => "postal_code",
            Column::Address => "address",
        }
    }

    /// The Japanese header as the registry systems write it.
    fn label(self) -> &'static str {
        match self {
            Column::Key => "宛名番号",
            Column::Name => "氏名",
            Column::KanjiFamily => "氏名（姓）",
            Column::KanjiGiven => "氏名（名）",
            Column::Kana => "カナ氏名",
            Column::BirthDate => "生年月日",
            Column::Sex => "性別",
            Column::PostalCode => "郵便番号",
            Column::Address => "住所",
        }
    }

    fn aliases(self) -> &'static [&'static str] {
        match self {
            Column::Key => &["宛名コード", "住民番号"],
            Column::Name => &["漢字氏名", "氏名(漢字)"],
            Column::KanjiFamily => &["漢字氏名(姓)", "姓"],
            Column::KanjiGiven => &["漢字氏名(名)", "名"],
            Column::Kana => &["氏名カナ", "カナ", "フリガナ", "氏名(カナ)", "氏名(フリガナ)", "カナ氏名(全角)"],
            Column::BirthDate => &[],
            Column::Sex => &[],
            Column::PostalCode => &["〒"],
            Column::Address => &[],
        }
    }
}

/// Whether a header names the 個人番号, which cardap never takes (not even to ignore it).
fn is_my_number(header: &str) -> bool {
    let h = header_form(header);
    ["個人番号", "マイナンバー", "my_number", "mynumber", "individual_number"].contains(&h.as_str())
}

/// Which of the two files this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 既存住基システム's export: key, name (whole or split), birth date, sex; kana, postal code, address optional.
    Registry,
    /// 住基ネットCS's 本人確認4情報: key, 氏名, 住所, 生年月日, 性別 and nothing else; the address is required.
    JukiNetCs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Registry => "registry",
            Kind::JukiNetCs => "juki_net_cs",
        }
    }
}

/// The file's header: which column is where, and which of the two layouts it is.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    kind: Kind,
    header: Header<Column>,
}

impl Layout {
    fn of(cells: &[String], row: u64) -> Result<Layout, ApiError> {
        let refuse = |h: &str| {
            is_my_number(h).then(|| {
                Text::new(
                    "個人番号（マイナンバー）の列があるファイルは取り込めません。その列を削除してから取り込んでください",
                    "a file with a My Number column is refused: cardap never takes the My Number; remove the column",
                )
            })
        };
        let (header, mut errors) = Header::<Column>::of(cells, row, Unknown::Ignore, refuse);
        let has = |c: Column| header.has(c);
        if !has(Column::Key) {
            errors.push(header.missing(Column::Key));
        }
        let split = has(Column::KanjiFamily) || has(Column::KanjiGiven);
        if has(Column::Name) && split {
            errors.push(
                FieldError::new(
                    format!("/rows/{row}/name"),
                    Text::new(
                        "「氏名」と「氏名（姓）」「氏名（名）」の列は、どちらか一方にしてください",
                        "give either the whole name (name) or kanji_family and kanji_given, not both",
                    ),
                )
                .in_cell(row, header.name(Column::Name).to_owned()),
            );
        } else if split {
            for c in [Column::KanjiFamily, Column::KanjiGiven] {
                if !has(c) {
                    errors.push(header.missing(c));
                }
            }
        } else if !has(Column::Name) {
            errors.push(header.missing(Column::Name));
        }
        for c in [Column::BirthDate, Column::Sex] {
            if !has(c) {
                errors.push(header.missing(c));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors).with_detail(Text::new(
                "見出し行（1行目）を確認してください。何も取り込んでいません",
                "check the header row; nothing was imported",
            )));
        }
        let four_facts_only = has(Column::Name)
            && has(Column::Address)
            && !has(Column::Kana)
            && !has(Column::PostalCode)
            && header.ignored().is_empty();
        let kind = if four_facts_only { Kind::JukiNetCs } else { Kind::Registry };
        Ok(Layout { kind, header })
    }

    fn has(&self, column: Column) -> bool {
        self.header.has(column)
    }

    /// The layout's name in the summary.
    pub(super) fn kind_name(&self) -> &'static str {
        self.kind.name()
    }

    /// Header cells of columns that are not read.
    pub(super) fn ignored(&self) -> &[String] {
        self.header.ignored()
    }

    /// How the file names `column`.
    pub(super) fn name(&self, column: Column) -> &str {
        self.header.name(column)
    }

    fn error(&self, column: Column, message: Text) -> CellError {
        self.header.error(column, message)
    }

    /// `value`, or a "required" error about `column`.
    fn required(&self, column: Column, value: Option<String>, errors: &mut Vec<CellError>) -> Option<String> {
        if value.is_none() {
            errors.push(self.error(column, Text::new("必須項目です", "is required")));
        }
        value
    }

    /// The parsed value, or the parse error about `column`.
    fn parsed<T>(&self, column: Column, result: Result<T, ParseError>, errors: &mut Vec<CellError>) -> Option<T> {
        result.map_err(|e| errors.push(self.error(column, Text::of(&e)))).ok()
    }

    /// The cell format's value, or its error about `column`.
    fn cell<T>(&self, column: Column, result: Result<T, cells::CellError>, errors: &mut Vec<CellError>) -> Option<T> {
        result.map_err(|e| errors.push(self.error(column, Text::of(&e)))).ok()
    }

    /// One data row, parsed into a registry row or the errors of its cells.
    /// `None` for a blank row (every cell empty, full-width spaces included), which is skipped.
    fn parse_row(&self, row: CsvRow) -> Option<Parsed> {
        if row.is_blank() {
            return None;
        }
        let mut cells = self.header.row_of(row);
        let row = cells.row;
        let mut errors = std::mem::take(&mut cells.errors);
        let mut take = |c: Column| cells.take(c);
        let raw_key = take(Column::Key);
        let name = take(Column::Name);
        let family = take(Column::KanjiFamily);
        let given = take(Column::KanjiGiven);
        let kana = take(Column::Kana);
        let birth_date = take(Column::BirthDate);
        let sex = take(Column::Sex);
        let postal_code = take(Column::PostalCode);
        let address = take(Column::Address);

        let key = self
            .required(Column::Key, raw_key.clone(), &mut errors)
            .and_then(|v| self.parsed(Column::Key, RegistryKey::parse(&half_width(&v)), &mut errors));
        let name = if self.has(Column::Name) {
            self.required(Column::Name, name, &mut errors)
                .and_then(|v| self.parsed(Column::Name, FullName::parse(&v), &mut errors))
        } else {
            let family = self
                .required(Column::KanjiFamily, family, &mut errors)
                .and_then(|v| self.parsed(Column::KanjiFamily, FullName::parse(&v), &mut errors));
            let given = self
                .required(Column::KanjiGiven, given, &mut errors)
                .and_then(|v| self.parsed(Column::KanjiGiven, FullName::parse(&v), &mut errors));
            match (family, given) {
                (Some(f), Some(g)) => self.parsed(
                    Column::KanjiGiven,
                    FullName::parse(&format!("{}\u{3000}{}", f.as_str(), g.as_str())),
                    &mut errors,
                ),
                _ => None,
            }
        };
        let kana = kana.and_then(|v| self.parsed(Column::Kana, parse_full_kana(&v), &mut errors));
        let birth_date = self
            .required(Column::BirthDate, birth_date, &mut errors)
            .and_then(|v| self.cell(Column::BirthDate, BirthDateCell::parse(&v), &mut errors));
        let sex = self
            .required(Column::Sex, sex, &mut errors)
            .and_then(|v| self.cell(Column::Sex, SexCell::parse(&v), &mut errors));
        let postal_code = postal_code.and_then(|v| self.parsed(Column::PostalCode, parse_postal_code(&v), &mut errors));
        let address =
            if self.kind == Kind::JukiNetCs { self.required(Column::Address, address, &mut errors) } else { address }
                .and_then(|v| self.parsed(Column::Address, Address::parse(&v), &mut errors));

        Some(match (key, name, birth_date, sex) {
            (Some(key), Some(name), Some(birth_date), Some(sex)) if errors.is_empty() => {
                let facts = RegistryFacts { name, kana, birth_date, sex, postal_code, address };
                ImportRow::Read(RegistryRow { row, key, facts })
            }
            _ => ImportRow::Unread {
                row,
                why: BadRow { key: raw_key.map(|k| k.chars().take(MAX_ECHOED_KEY).collect()), errors },
            },
        })
    }

    /// The optional facts the file has a column for: the others keep what the registry holds.
    pub(super) fn supplied(&self) -> SuppliedFacts {
        SuppliedFacts {
            kana: self.has(Column::Kana),
            postal_code: self.has(Column::PostalCode),
            address: self.has(Column::Address),
        }
    }
}

/// 郵便番号 with or without hyphen, a leading 〒 and full-width digits allowed.
fn parse_postal_code(s: &str) -> Result<PostalCode, ParseError> {
    PostalCode::parse(half_width(s).trim_start_matches('〒').trim())
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing the streamed body (on a thread of its own)

/// One data row after parsing: a registry row, or a row that cannot be imported.
type Parsed = ImportRow<BadRow>;

/// Why a row cannot be imported.
#[derive(Debug)]
pub(super) struct BadRow {
    /// The registry key cell as written (cut short), when there was one.
    pub(super) key: Option<String>,
    pub(super) errors: Vec<CellError>,
}

/// What the parser hands to the import: batches of rows, or the reason the body could not be read on (the rows
/// before were sent).
pub(super) type Message = ImportInput<BadRow, ApiError>;

/// The answer to a file that stopped before its end at `row`.
fn read_problem(rows: &CsvRows<BodySource>, error: ReadError) -> ApiError {
    match (error, rows.source().failure()) {
        (ReadError::TooLong { row }, _) => ApiError::validation(vec![
            FieldError::new(
                format!("/rows/{row}"),
                Text::new(
                    format!("1行が長すぎます（{} KiB まで）。取り込みを中止しました", MAX_ROW_BYTES / 1024),
                    format!("a row longer than {} KiB; the import was stopped", MAX_ROW_BYTES / 1024),
                ),
            )
            .in_row(row),
        ]),
        (_, Some(BodyFailure::Stalled)) => ApiError::malformed(
            Text::new(
                format!("{}秒間データが届かなかったため、取り込みを中止しました", STALL_TIMEOUT.as_secs()),
                format!("the upload stalled for {} s; the import was stopped", STALL_TIMEOUT.as_secs()),
            ),
            vec![],
        ),
        (_, Some(BodyFailure::TimeLimit)) => ApiError::malformed(
            Text::new(
                format!("取り込みが{}分を超えたため中止しました", IMPORT_TIME_LIMIT.as_secs() / 60),
                format!("the import took longer than {} minutes and was stopped", IMPORT_TIME_LIMIT.as_secs() / 60),
            ),
            vec![],
        ),
        (_, Some(BodyFailure::Stopped)) => {
            ApiError::malformed(Text::new("取り込みを中止しました", "the import was stopped"), vec![])
        }
        (_, Some(BodyFailure::Broken) | None) => {
            ApiError::malformed(Text::new("送信が途中で切れました", "the upload was cut off"), vec![])
        }
    }
}

/// The parser, on a thread of its own (never the blocking pool, which it would hold for as long as the upload
/// lasts): reads the header (answering the handler through `header`), then every data
/// row, sending them in batches of [`BATCH_ROWS`] through the bounded `rows` channel. Stops when the importer
/// goes away.
pub(super) fn parse_file(
    mut csv: CsvRows<BodySource>,
    declared: Option<Charset>,
    header: oneshot::Sender<Result<Layout, ApiError>>,
    rows: mpsc::Sender<Message>,
) {
    let layout = match csv.header(declared) {
        Ok((cells, row)) => Layout::of(&cells, row),
        Err(HeaderError::Problem(problem)) => Err(problem),
        Err(HeaderError::Read(e)) => Err(read_problem(&csv, e)),
    };
    let layout = match layout {
        Ok(layout) => layout,
        Err(e) => {
            let _ = header.send(Err(e));
            return;
        }
    };
    if header.send(Ok(layout.clone())).is_err() {
        return;
    }
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    while let Some(next) = csv.next_row() {
        match next {
            Ok(row) => {
                let Some(parsed) = layout.parse_row(row) else { continue };
                batch.push(parsed);
                if batch.len() >= BATCH_ROWS
                    && rows
                        .blocking_send(Message::Batch(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS))))
                        .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                if !batch.is_empty() && rows.blocking_send(Message::Batch(std::mem::take(&mut batch))).is_err() {
                    return;
                }
                let _ = rows.blocking_send(Message::Failed(read_problem(&csv, e)));
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = rows.blocking_send(Message::Batch(batch));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use axum::http::StatusCode;

    use super::*;
    use crate::i18n::Lang;
    use crate::import::Column as _;

    fn header(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn headers_are_english_names_labels_or_aliases() {
        for &c in Column::ALL {
            assert_eq!(Column::of_header(c.field()), Some(c), "{}", c.field());
            assert_eq!(Column::of_header(c.label()), Some(c), "{}", c.label());
        }
        assert_eq!(Column::of_header("氏名(姓)"), Some(Column::KanjiFamily));
        assert_eq!(Column::of_header("*生年月日（YYYYMMDD）"), Some(Column::BirthDate));
        assert_eq!(Column::of_header("Registry_Key"), Some(Column::Key));
        assert_eq!(Column::of_header("氏名（フリガナ）"), Some(Column::Kana));
        assert_eq!(Column::of_header("世帯番号"), None);
    }

    #[test]
    fn the_two_layouts_are_told_apart_by_their_header() {
        let registry =
            Layout::of(&header(&["宛名番号", "氏名", "カナ氏名", "生年月日", "性別", "郵便番号", "住所"]), 1).unwrap();
        assert_eq!(registry.kind, Kind::Registry);
        let split =
            Layout::of(&header(&["registry_key", "kanji_family", "kanji_given", "birth_date", "sex"]), 1).unwrap();
        assert_eq!(split.kind, Kind::Registry);
        let cs = Layout::of(&header(&["宛名番号", "氏名", "住所", "生年月日", "性別"]), 1).unwrap();
        assert_eq!(cs.kind, Kind::JukiNetCs);
        let extra = Layout::of(&header(&["宛名番号", "氏名", "住所", "生年月日", "性別", "世帯番号"]), 1).unwrap();
        assert_eq!((extra.kind, extra.header.ignored().to_vec()), (Kind::Registry, vec!["世帯番号".to_owned()]));
    }

    #[test]
    fn a_header_without_required_columns_or_with_the_my_number_is_refused() {
        let e = Layout::of(&header(&["氏名", "性別"]), 1).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let columns: Vec<_> = e.problem(Lang::En).errors.into_iter().filter_map(|f| f.column).collect();
        assert_eq!(columns, ["宛名番号", "生年月日"]);
        let e = Layout::of(&header(&["宛名番号", "氏名", "生年月日", "性別", "個人番号"]), 1).unwrap_err();
        assert_eq!(e.problem(Lang::En).errors[0].column.as_deref(), Some("個人番号"));
        let e = Layout::of(&header(&["宛名番号", "氏名", "氏名（姓）", "生年月日", "性別"]), 1).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    fn record(row: u64, cells: &[&str]) -> CsvRow {
        CsvRow { row, cells: cells.iter().map(|c| Ok(c.trim().to_owned())).collect() }
    }

    #[test]
    fn a_row_is_parsed_or_its_bad_cells_named() {
        let layout =
            Layout::of(&header(&["宛名番号", "氏名", "カナ氏名", "生年月日", "性別", "郵便番号", "住所"]), 1).unwrap();
        let Some(ImportRow::Read(row)) = layout
            .parse_row(record(2, &["000123456", "山田 太郎", "ﾔﾏﾀﾞ ﾀﾛｳ", "19890107", "男", "1000001", "千代田1-1"]))
        else {
            panic!("a good row")
        };
        assert_eq!(row.key.as_str(), "000123456");
        assert_eq!(row.facts.name.as_str(), "山田\u{3000}太郎");
        assert_eq!(row.facts.kana.as_ref().unwrap().as_str(), "ヤマダ\u{3000}タロウ");
        assert_eq!(row.facts.postal_code.as_ref().unwrap().as_str(), "100-0001");
        assert_eq!(row.facts.address.as_ref().unwrap().as_str(), "千代田１－１");
        let Some(ImportRow::Unread { why: bad, .. }) =
            layout.parse_row(record(3, &["000123457", "", "やまだ", "3640108", "x", "", "", "extra"]))
        else {
            panic!("a bad row")
        };
        let columns: Vec<_> = bad.errors.iter().map(|e| e.column.as_str()).collect();
        assert_eq!(columns, ["8列目", "氏名", "カナ氏名", "生年月日", "性別"]);
        assert_eq!(bad.key.as_deref(), Some("000123457"));
    }

    #[test]
    fn the_cs_layout_requires_the_address() {
        let layout = Layout::of(&header(&["宛名番号", "氏名", "住所", "生年月日", "性別"]), 1).unwrap();
        let Some(ImportRow::Unread { why: bad, .. }) =
            layout.parse_row(record(2, &["1", "山田 太郎", "", "3640107", "1"]))
        else {
            panic!("the address is required")
        };
        assert_eq!(bad.errors[0].column, "住所");
        assert!(layout.parse_row(record(3, &["", "\u{3000}", " ", "", ""])).is_none(), "a blank row is skipped");
    }
}
