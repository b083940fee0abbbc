//! Layouts: the columns a kind of file has, a header row matched against them, and each data row's cells per
//! column. A header cell names a column by its JSON field name, the screen's label or an alias, compared
//! without required marks (`*`, `※`), spaces, ASCII case or full-width brackets, and also with a trailing hint
//! (`*オペレータID(半角英数)`, `生年月日（YYYYMMDD）`). Errors name the `row` and the `column` as the file
//! writes it (`N列目` for a column without a header), in the problem+json shape of the other routes.

use std::fmt::Debug;
use std::hash::Hash;

use super::rows::CsvRow;
use crate::error::FieldError;
use crate::i18n::Text;

/// A column of a layout.
pub trait Column: Copy + Eq + Hash + Debug + 'static {
    /// Every column, in the order the screens list them.
    const ALL: &'static [Self];

    /// The JSON field name (also the `field` of its errors).
    fn field(self) -> &'static str;

    /// The label on the screens, or as the systems that write such files name it.
    fn label(self) -> &'static str;

    /// Other names clerks and systems use for the same column.
    fn aliases(self) -> &'static [&'static str] {
        &[]
    }

    /// The column a header cell names.
    fn of_header(header: &str) -> Option<Self> {
        let h = header_form(header);
        let find = |h: &str| {
            Self::ALL.iter().copied().find(|c| {
                h == header_form(c.field())
                    || h == header_form(c.label())
                    || c.aliases().iter().any(|a| h == header_form(a))
            })
        };
        find(&h).or_else(|| {
            // A hint after the name, as forms write it: 生年月日(YYYYMMDD).
            let i = h.find('(').filter(|i| *i > 0 && h.ends_with(')'))?;
            find(&h[..i])
        })
    }
}

/// A header cell as compared: without required marks and spaces, full-width brackets as ASCII, ASCII lowercase.
pub fn header_form(header: &str) -> String {
    header
        .trim()
        .trim_start_matches(['*', '＊', '※'])
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '（' => '(',
            '）' => ')',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// What a layout does with a header it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// The file is refused, naming the column and the headers it could have.
    Refuse,
    /// Its cells are not read (a registry export has many columns cardap has no use for).
    Ignore,
}

/// What a header cell is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot<C> {
    Known(C),
    /// An empty header cell: its column must be empty too (spreadsheets leave such columns behind).
    Unnamed,
    /// A column that is not read: unknown, refused or named twice.
    Skipped,
}

/// A file's header: which column is where, and how the file names it.
#[derive(Debug, Clone)]
pub struct Header<C: Column> {
    row: u64,
    slots: Vec<Slot<C>>,
    /// The header cell as written, per column present.
    names: Vec<(C, String)>,
    /// Header cells of columns that are not read, as written.
    ignored: Vec<String>,
}

impl<C: Column> Header<C> {
    /// Matches the header row `cells` (row `row`). `refuse` names header cells that refuse the whole file (with
    /// why). Returns the header and the errors found in it, in the header's order; a caller adds those about
    /// missing columns ([`Header::missing`]).
    pub fn of(
        cells: &[String],
        row: u64,
        unknown: Unknown,
        refuse: impl Fn(&str) -> Option<Text>,
    ) -> (Header<C>, Vec<FieldError>) {
        let mut errors = vec![];
        let mut header = Header { row, slots: Vec::with_capacity(cells.len()), names: vec![], ignored: vec![] };
        for h in cells {
            let slot = if h.is_empty() {
                Slot::Unnamed
            } else if let Some(why) = refuse(h) {
                errors.push(FieldError::new(format!("/rows/{row}"), why).in_cell(row, h.clone()));
                Slot::Skipped
            } else {
                match C::of_header(h) {
                    Some(c) if header.has(c) => {
                        errors.push(duplicate_column(row, c.field(), c.label(), h));
                        Slot::Skipped
                    }
                    Some(c) => {
                        header.names.push((c, h.clone()));
                        Slot::Known(c)
                    }
                    None if unknown == Unknown::Ignore => {
                        header.ignored.push(h.clone());
                        Slot::Skipped
                    }
                    None => {
                        let known = C::ALL.iter().map(|c| c.label()).collect::<Vec<_>>().join("、");
                        let fields = C::ALL.iter().map(|c| c.field()).collect::<Vec<_>>().join(", ");
                        errors.push(
                            FieldError::new(
                                format!("/rows/{row}"),
                                Text::new(
                                    format!("見出し「{h}」は使えません。使える見出し: {known}"),
                                    format!(
                                        "unknown column {h:?}; use the labels ({known}) or the JSON names ({fields})"
                                    ),
                                ),
                            )
                            .in_cell(row, h.clone()),
                        );
                        Slot::Skipped
                    }
                }
            };
            header.slots.push(slot);
        }
        (header, errors)
    }

    /// The row the header is on.
    pub fn row(&self) -> u64 {
        self.row
    }

    /// Whether the file has `column`.
    pub fn has(&self, column: C) -> bool {
        self.names.iter().any(|(c, _)| *c == column)
    }

    /// How the file names `column` (its label when the file has no such column).
    pub fn name(&self, column: C) -> &str {
        self.names.iter().find(|(c, _)| *c == column).map_or(column.label(), |(_, n)| n.as_str())
    }

    /// Header cells of columns that are not read, as written.
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// The error for a file without `column`.
    pub fn missing(&self, column: C) -> FieldError {
        FieldError::new(
            format!("/rows/{}/{}", self.row, column.field()),
            Text::new(
                format!("「{}」（{}）の列がありません", column.label(), column.field()),
                format!("the column {} ({}) is missing", column.field(), column.label()),
            ),
        )
        .in_cell(self.row, column.label())
    }

    /// An error about `column`'s cell.
    pub fn error(&self, column: C, message: Text) -> CellError {
        CellError { column: self.name(column).to_owned(), field: Some(column.field()), message }
    }

    /// A data row's cells per column. Empty cells are absent; a cell that is not text in the file's charset,
    /// or a value in a column without a header, is an error of the row.
    pub fn row_of(&self, row: CsvRow) -> Row<C> {
        let mut values = Vec::with_capacity(self.names.len());
        let mut errors = vec![];
        for (i, cell) in row.cells.into_iter().enumerate() {
            match (self.slots.get(i).copied().unwrap_or(Slot::Unnamed), cell) {
                (Slot::Skipped, _) => {}
                (_, Ok(value)) if value.is_empty() => {}
                (Slot::Known(c), Ok(value)) => values.push((c, value)),
                (Slot::Known(c), Err(message)) => errors.push(self.error(c, message)),
                (Slot::Unnamed, _) => errors.push(CellError {
                    column: format!("{}列目", i + 1),
                    field: None,
                    message: Text::new("見出しのない列に値があります", "a value in a column without a header"),
                }),
            }
        }
        Row { row: row.row, values, errors }
    }
}

/// The header row names one column twice (`field` is its JSON name, `label` the screen's).
pub fn duplicate_column(row: u64, field: &str, label: &str, header: &str) -> FieldError {
    FieldError::new(
        format!("/rows/{row}/{field}"),
        Text::new(format!("「{label}」の列が2つあります"), format!("the column {field} appears twice")),
    )
    .in_cell(row, header.to_owned())
}

/// One data row's cells per column, and the errors found reading them.
#[derive(Debug)]
pub struct Row<C> {
    pub row: u64,
    values: Vec<(C, String)>,
    pub errors: Vec<CellError>,
}

impl<C: Column> Row<C> {
    /// `column`'s value (non-empty), taken out of the row.
    pub fn take(&mut self, column: C) -> Option<String> {
        let i = self.values.iter().position(|(c, _)| *c == column)?;
        Some(self.values.swap_remove(i).1)
    }
}

/// What is wrong with one cell (or, without `field`, with a cell outside the known columns).
#[derive(Debug, Clone)]
pub struct CellError {
    /// The header as written in the file (or `N列目`).
    pub column: String,
    /// The column's JSON name.
    pub field: Option<&'static str>,
    pub message: Text,
}

impl CellError {
    /// As a field error of a whole-file answer: `/rows/{row}/{field}`, with `row` and `column`.
    pub fn at(self, row: u64) -> FieldError {
        let pointer = match self.field {
            Some(field) => format!("/rows/{row}/{field}"),
            None => format!("/rows/{row}"),
        };
        FieldError::new(pointer, self.message).in_cell(row, self.column)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum Col {
        Id,
        Name,
        Birth,
    }

    impl Column for Col {
        const ALL: &'static [Col] = &[Col::Id, Col::Name, Col::Birth];
        fn field(self) -> &'static str {
            match self {
                Col::Id => "operator_id",
                Col::Name => "name",
                Col::Birth => "birth_date",
            }
        }
        fn label(self) -> &'static str {
            match self {
                Col::Id => "オペレータID",
                Col::Name => "氏名（姓）",
                Col::Birth => "生年月日",
            }
        }
        fn aliases(self) -> &'static [&'static str] {
            if self == Col::Name { &["姓"] } else { &[] }
        }
    }

    fn cells(names: &[&str]) -> Vec<String> {
        names.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn headers_are_names_labels_or_aliases_in_the_screens_forms() {
        assert_eq!(Col::of_header("*オペレータID(半角英数)"), Some(Col::Id));
        assert_eq!(Col::of_header("Operator_ID"), Some(Col::Id));
        assert_eq!(Col::of_header("氏名(姓)"), Some(Col::Name));
        assert_eq!(Col::of_header(" ※姓 "), Some(Col::Name));
        assert_eq!(Col::of_header("生年月日（YYYYMMDD）"), Some(Col::Birth));
        assert_eq!(Col::of_header("住所"), None);
    }

    #[test]
    fn unknown_refused_and_twice_named_columns_are_errors_in_header_order() {
        let refuse = |h: &str| (h == "個人番号").then(|| Text::new("不可", "refused"));
        let (header, errors) =
            Header::<Col>::of(&cells(&["住所", "name", "個人番号", "氏名(姓)"]), 1, Unknown::Refuse, refuse);
        let columns: Vec<_> = errors.iter().map(|e| e.column.clone().unwrap()).collect();
        assert_eq!(columns, ["住所", "個人番号", "氏名(姓)"]);
        assert_eq!(header.missing(Col::Id).column.as_deref(), Some("オペレータID"));
        let (header, errors) = Header::<Col>::of(&cells(&["住所", "name"]), 1, Unknown::Ignore, |_| None);
        assert!(errors.is_empty());
        assert_eq!(header.ignored(), ["住所"]);
        assert_eq!(header.name(Col::Name), "name");
    }

    #[test]
    fn a_row_gives_its_values_per_column_and_names_its_bad_cells() {
        let (header, _) = Header::<Col>::of(&cells(&["ID", "オペレータID", "", "姓"]), 1, Unknown::Ignore, |_| None);
        let row = CsvRow {
            row: 7,
            cells: vec![Ok("x".into()), Ok("OP1".into()), Ok("stray".into()), Err(Text::new("壊れ", "broken"))],
        };
        let mut row = header.row_of(row);
        assert_eq!(row.take(Col::Id).as_deref(), Some("OP1"));
        assert_eq!(row.take(Col::Birth), None);
        let errors: Vec<_> = row.errors.into_iter().map(|e| e.at(7)).collect();
        assert_eq!(errors[0].column.as_deref(), Some("3列目"));
        assert_eq!(errors[0].field, "/rows/7");
        assert_eq!((errors[1].field.as_str(), errors[1].column.as_deref()), ("/rows/7/name", Some("姓")));
        assert!(errors.iter().all(|e| e.row == Some(7)));
    }
}
