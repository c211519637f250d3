//! Reading labelled text files: CSV, TSV (no quote processing, as GLUE needs) and JSONL,
//! with columns by name or by 0-based index, a UTF-8 BOM ignored, CRLF accepted.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// A file format; `auto` picks by extension (`.csv`, `.tsv`/`.tab`/`.txt`, `.jsonl`/`.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// By the file's extension.
    #[default]
    Auto,
    /// Comma-separated, with quoting.
    Csv,
    /// Tab-separated, without quote processing.
    Tsv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    fn resolve(self, path: &Path) -> Result<Self> {
        if self != Self::Auto {
            return Ok(self);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(Self::Csv),
            "tsv" | "tab" | "txt" => Ok(Self::Tsv),
            "jsonl" | "json" | "ndjson" => Ok(Self::Jsonl),
            _ => Err(Error::Input(format!(
                "{}: cannot tell the format from the extension; pass --format csv|tsv|jsonl",
                path.display()
            ))),
        }
    }
}

/// Where to find the fields of a row.
#[derive(Clone, Debug)]
pub struct Columns {
    /// Column with the text (a name, or a 0-based index with `no_header`).
    pub text: String,
    /// Column with the second text of a pair, if any.
    pub text_pair: Option<String>,
    /// `None` for unlabelled data (prediction).
    pub label: Option<String>,
    /// Columns are 0-based indices and the first line is data.
    pub no_header: bool,
}

/// One row as read: the texts and the label as written in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct RawRow {
    /// 1-based line number in the file (for messages).
    pub line: usize,
    /// The text.
    pub text: String,
    /// The second text of a pair, if any.
    pub text_pair: Option<String>,
    /// The label cell; `None` when no label column is read.
    pub label: Option<LabelCell>,
}

/// A label cell: text from CSV/TSV, or any JSON value from JSONL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LabelCell {
    /// A CSV/TSV cell's text.
    Text(String),
    /// A JSONL field's value (string, number, list, ...).
    Json(Value),
}

/// A row that could not be read, with its location.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BadRow {
    /// The file the row is in.
    pub file: PathBuf,
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong with the row.
    pub message: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// The fields of a row as they were in the file, so a prediction can be written next to them.
#[derive(Clone, Debug)]
pub enum RowFields {
    /// CSV/TSV cells.
    Cells(Vec<String>),
    /// A JSONL row.
    Json(Value),
}

/// One row read from a file: the parsed row (or why it is bad) and its original fields.
pub type RowResult = (std::result::Result<RawRow, BadRow>, RowFields);

/// Streams the rows of a CSV/TSV/JSONL file without loading it whole.
pub struct RowReader {
    inner: RowSource,
    parser: RowParser,
    /// The CSV/TSV header, when the file has one.
    pub header: Option<Vec<String>>,
    /// Where the last row read lies in the file: (byte offset, byte length).
    span: (u64, u64),
}

enum RowSource {
    Json(BufReader<File>, u64, usize),
    Delimited(csv::StringRecordsIntoIter<File>, u64, usize),
}

/// Turns the bytes of one row (as found by [`RowReader::span`]) into a row: the format and
/// the columns resolved against the file's header.
#[derive(Clone, Debug)]
pub struct RowParser {
    path: PathBuf,
    columns: Columns,
    /// `None` for JSONL; the delimiter, whether quotes are processed, and the column positions.
    delimited: Option<(u8, bool, ColumnIndex)>,
}

/// The csv reader settings of a delimited format: TSV keeps quotes literal (GLUE).
fn csv_reader<R: Read>(delimiter: u8, quoting: bool, input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .has_headers(false)
        .flexible(true)
        .from_reader(input)
}

/// A cell as read: the `\r` of a `\r\n` inside a quoted field dropped, as at line ends.
fn cell(text: &str) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n")
    } else {
        text.to_string()
    }
}

/// Opens `path` past a leading UTF-8 byte-order mark; returns the file and the mark's length.
fn open_past_bom(path: &Path) -> Result<(File, u64)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 3];
    let mut read = 0;
    while read < 3 {
        match file
            .read(&mut head[read..])
            .map_err(|e| Error::io(path, e))?
        {
            0 => break,
            n => read += n,
        }
    }
    let base = if read == 3 && head == *b"\xEF\xBB\xBF" {
        3
    } else {
        0
    };
    file.seek(SeekFrom::Start(base))
        .map_err(|e| Error::io(path, e))?;
    Ok((file, base))
}

impl RowReader {
    /// Opens `path`; with a header, the columns are resolved now (a missing one is an error).
    pub fn open(path: &Path, format: Format, columns: &Columns) -> Result<Self> {
        let format = format.resolve(path)?;
        let (file, base) = open_past_bom(path)?;
        let mut header = None;
        let inner = match format {
            Format::Jsonl => RowSource::Json(BufReader::new(file), base, 0),
            delimited => {
                let (delimiter, quoting) = if delimited == Format::Tsv {
                    (b'\t', false)
                } else {
                    (b',', true)
                };
                let mut records = csv_reader(delimiter, quoting, file).into_records();
                if !columns.no_header {
                    header = match records.next() {
                        Some(Ok(record)) => Some(record.iter().map(cell).collect()),
                        Some(Err(e)) => {
                            return Err(Error::Input(format!("{}:1: {e}", path.display())));
                        }
                        None => {
                            return Err(Error::Input(format!(
                                "{}: the file is empty",
                                path.display()
                            )));
                        }
                    };
                }
                RowSource::Delimited(records, base, usize::from(header.is_some()))
            }
        };
        let parser = RowParser::new(path, format, columns, header.as_deref())?;
        Ok(Self {
            inner,
            parser,
            header,
            span: (0, 0),
        })
    }

    /// Where the last row returned lies in the file: (byte offset, byte length).
    pub fn span(&self) -> (u64, u64) {
        self.span
    }

    /// The parser that reads a row back from its bytes.
    pub fn parser(&self) -> &RowParser {
        &self.parser
    }
}

impl RowParser {
    /// The parser of a file in `format` (not `auto`) whose header (CSV/TSV) is `header`.
    pub fn new(
        path: &Path,
        format: Format,
        columns: &Columns,
        header: Option<&[String]>,
    ) -> Result<Self> {
        let delimited = match format.resolve(path)? {
            Format::Jsonl => None,
            Format::Tsv => Some((b'\t', false, ColumnIndex::new(header, columns, path)?)),
            _ => Some((b',', true, ColumnIndex::new(header, columns, path)?)),
        };
        Ok(Self {
            path: path.to_path_buf(),
            columns: columns.clone(),
            delimited,
        })
    }

    /// The file the rows come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses the bytes of row `line` (as spanned by [`RowReader::span`]).
    pub fn parse(&self, line: usize, bytes: &[u8]) -> std::result::Result<RawRow, BadRow> {
        let row = match &self.delimited {
            None => std::str::from_utf8(bytes)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    json_row(line, text.trim_end_matches(['\n', '\r']), &self.columns)
                }),
            Some((delimiter, quoting, index)) => {
                let mut record = csv::StringRecord::new();
                match csv_reader(*delimiter, *quoting, bytes).read_record(&mut record) {
                    Ok(_) => index.row(line, &record),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        row.map_err(|message| self.bad(line, message))
    }

    fn bad(&self, line: usize, message: String) -> BadRow {
        BadRow {
            file: self.path.clone(),
            line,
            message,
        }
    }
}

impl Iterator for RowReader {
    type Item = Result<RowResult>;

    fn next(&mut self) -> Option<Self::Item> {
        let parser = &self.parser;
        let (line, row, fields) = match &mut self.inner {
            RowSource::Json(lines, offset, count) => loop {
                *count += 1;
                let mut bytes = Vec::new();
                let read = match lines.read_until(b'\n', &mut bytes) {
                    Ok(0) => return None,
                    Ok(read) => read as u64,
                    Err(e) => return Some(Err(Error::io(&parser.path, e))),
                };
                self.span = (*offset, read);
                *offset += read;
                let text = match String::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(e) => {
                        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
                        return Some(Err(Error::io(&parser.path, e)));
                    }
                };
                let text = text.trim_end_matches('\n').trim_end_matches('\r');
                if text.trim().is_empty() {
                    continue;
                }
                let fields = serde_json::from_str(text).unwrap_or(Value::Null);
                break (
                    *count,
                    json_row(*count, text, &parser.columns),
                    RowFields::Json(fields),
                );
            },
            RowSource::Delimited(records, base, count) => {
                *count += 1;
                let Some((_, _, index)) = &parser.delimited else {
                    return None;
                };
                let record = records.next()?;
                let end = records.reader().position().byte() + *base;
                match record {
                    Ok(record) => {
                        let start = record.position().map_or(end, |p| p.byte() + *base);
                        self.span = (start, end - start);
                        let cells = record.iter().map(cell).collect();
                        (*count, index.row(*count, &record), RowFields::Cells(cells))
                    }
                    Err(e) => (*count, Err(e.to_string()), RowFields::Cells(Vec::new())),
                }
            }
        };
        Some(Ok((
            row.map_err(|message| parser.bad(line, message)),
            fields,
        )))
    }
}

/// Calls `each` with every row of a labelled file (or why it is bad: ragged, missing field,
/// empty text) and where it lies in the file ([`RowReader::span`]); returns the reader.
pub fn for_each_row(
    path: &Path,
    format: Format,
    columns: &Columns,
    mut each: impl FnMut(std::result::Result<RawRow, BadRow>, (u64, u64)) -> Result<()>,
) -> Result<RowReader> {
    let mut reader = RowReader::open(path, format, columns)?;
    while let Some(item) = reader.next() {
        let row = match item?.0 {
            Ok(row) if row.text.trim().is_empty() => Err(BadRow {
                file: path.to_path_buf(),
                line: row.line,
                message: format!("empty text in column '{}'", columns.text),
            }),
            other => other,
        };
        each(row, reader.span())?;
    }
    Ok(reader)
}

/// Reads every row of a labelled file. Bad rows (ragged, missing field, empty text) are
/// returned separately so the caller can fail on the first or skip them.
pub fn read_rows(
    path: &Path,
    format: Format,
    columns: &Columns,
) -> Result<(Vec<RawRow>, Vec<BadRow>)> {
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    for_each_row(path, format, columns, |row, _| {
        match row {
            Ok(row) => rows.push(row),
            Err(b) => bad.push(b),
        }
        Ok(())
    })?;
    Ok((rows, bad))
}

/// The error for bad rows found without `--skip-bad-rows`: the first, and how many in all.
pub fn bad_rows_error(first: &BadRow, count: usize) -> Error {
    let more = if count > 1 {
        format!(" ({count} bad rows in all; --skip-bad-rows skips them)")
    } else {
        " (--skip-bad-rows skips such rows)".into()
    };
    Error::Input(format!("{first}{more}"))
}

/// Column positions resolved against the header (or parsed as indices).
#[derive(Clone, Debug)]
struct ColumnIndex {
    width: Option<usize>,
    text: usize,
    text_pair: Option<usize>,
    label: Option<usize>,
    label_name: String,
}

impl ColumnIndex {
    fn new(header: Option<&[String]>, columns: &Columns, path: &Path) -> Result<Self> {
        let find = |name: &str| -> Result<usize> {
            match header {
                Some(header) => header.iter().position(|h| h == name).ok_or_else(|| {
                    Error::Input(format!(
                        "{}: no column '{name}' (columns: {})",
                        path.display(),
                        header.join(", ")
                    ))
                }),
                None => name.parse().map_err(|_| {
                    Error::Input(format!(
                        "{}: with --no-header, columns are 0-based indices, not '{name}'",
                        path.display()
                    ))
                }),
            }
        };
        Ok(Self {
            width: header.map(<[String]>::len),
            text: find(&columns.text)?,
            text_pair: columns.text_pair.as_deref().map(find).transpose()?,
            label: columns.label.as_deref().map(find).transpose()?,
            label_name: columns.label.clone().unwrap_or_default(),
        })
    }

    fn row(&self, line: usize, record: &csv::StringRecord) -> std::result::Result<RawRow, String> {
        if let Some(width) = self.width
            && record.len() != width
        {
            return Err(format!("expected {width} fields, found {}", record.len()));
        }
        let field = |i: usize| {
            record
                .get(i)
                .map(cell)
                .ok_or_else(|| format!("no field {i} (the row has {})", record.len()))
        };
        Ok(RawRow {
            line,
            text: field(self.text)?,
            text_pair: self.text_pair.map(field).transpose()?,
            label: match self.label {
                Some(i) => {
                    let cell = field(i)?;
                    if cell.trim().is_empty() {
                        return Err(format!("empty label in column '{}'", self.label_name));
                    }
                    Some(LabelCell::Text(cell))
                }
                None => None,
            },
        })
    }
}

fn json_row(line: usize, text: &str, columns: &Columns) -> std::result::Result<RawRow, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let get = |key: &str| -> std::result::Result<Value, String> {
        let found = match &value {
            Value::Object(map) => map.get(key).cloned(),
            Value::Array(items) => key
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i).cloned()),
            _ => return Err("a row must be a JSON object or array".into()),
        };
        found.ok_or_else(|| format!("no field '{key}'"))
    };
    let string = |key: &str| -> std::result::Result<String, String> {
        match get(key)? {
            Value::String(s) => Ok(s),
            other => Err(format!("field '{key}' is not a string: {other}")),
        }
    };
    Ok(RawRow {
        line,
        text: string(&columns.text)?,
        // A missing or null pair field means a single text (JSONL rows can mix both).
        text_pair: match columns.text_pair.as_deref() {
            Some(key) if !matches!(get(key), Err(_) | Ok(Value::Null)) => Some(string(key)?),
            _ => None,
        },
        label: columns
            .label
            .as_deref()
            .map(|key| get(key).map(LabelCell::Json))
            .transpose()?,
    })
}

/// Reads the rows of a dataset that must all be good, or skips and counts the bad ones.
pub fn read_checked(
    path: &Path,
    format: Format,
    columns: &Columns,
    skip_bad_rows: bool,
) -> Result<(Vec<RawRow>, usize)> {
    let (rows, bad) = read_rows(path, format, columns)?;
    if let Some(first) = bad.first()
        && !skip_bad_rows
    {
        return Err(bad_rows_error(first, bad.len()));
    }
    if rows.is_empty() {
        return Err(no_rows_error(path));
    }
    Ok((rows, bad.len()))
}

/// The error for a file without a single good row.
pub fn no_rows_error(path: &Path) -> Error {
    Error::Input(format!("{}: no data rows", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(text: &str, pair: Option<&str>, label: &str, no_header: bool) -> Columns {
        Columns {
            text: text.into(),
            text_pair: pair.map(Into::into),
            label: Some(label.into()),
            no_header,
        }
    }

    fn write(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    fn label(row: &RawRow) -> String {
        match row.label.as_ref().unwrap() {
            LabelCell::Text(t) => t.clone(),
            LabelCell::Json(v) => v.to_string(),
        }
    }

    #[test]
    fn tsv_keeps_quotes_literal_and_handles_bom_and_crlf() {
        let (_d, path) = write(
            "x.tsv",
            "\u{feff}Quality\ts1\ts2\r\n1\the said \"hi\ttoo\r\n0\t\"open quote\tb\r\n",
        );
        let (rows, bad) = read_rows(
            &path,
            Format::Auto,
            &columns("s1", Some("s2"), "Quality", false),
        )
        .unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows[0].text, "he said \"hi");
        assert_eq!(rows[0].text_pair.as_deref(), Some("too"));
        assert_eq!(rows[1].text, "\"open quote");
        assert_eq!(label(&rows[1]), "0");
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn csv_quotes_and_columns_by_index() {
        let (_d, path) = write("x.csv", "\"a, quoted\",pos\nplain,neg\n");
        let (rows, _) = read_rows(&path, Format::Auto, &columns("0", None, "1", true)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text, "a, quoted");
        assert_eq!(label(&rows[1]), "neg");
    }

    #[test]
    fn jsonl_rows_and_errors_with_line_numbers() {
        let (_d, path) = write(
            "x.jsonl",
            "{\"text\": \"ok\", \"label\": [\"a\", \"b\"]}\n\n{\"text\": 3, \"label\": 1}\n{\"label\": 1}\n",
        );
        let (rows, bad) =
            read_rows(&path, Format::Auto, &columns("text", None, "label", false)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(label(&rows[0]), "[\"a\",\"b\"]");
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].line, 3);
        assert!(
            bad[1].to_string().contains("x.jsonl:4: no field 'text'"),
            "{}",
            bad[1]
        );
    }

    #[test]
    fn ragged_rows_empty_text_and_labels_are_bad_rows() {
        let (_d, path) = write("x.tsv", "text\tlabel\ngood\t1\nragged\n \t1\nno label\t\n");
        let (rows, bad) =
            read_rows(&path, Format::Auto, &columns("text", None, "label", false)).unwrap();
        assert_eq!(rows.len(), 1);
        let messages: Vec<String> = bad.iter().map(ToString::to_string).collect();
        assert!(
            messages[0].ends_with("x.tsv:3: expected 2 fields, found 1"),
            "{messages:?}"
        );
        assert!(messages[1].contains(":4: empty text"), "{messages:?}");
        assert!(messages[2].contains(":5: empty label"), "{messages:?}");
        let err = read_checked(
            &path,
            Format::Auto,
            &columns("text", None, "label", false),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("x.tsv:3:") && err.contains("3 bad rows"),
            "{err}"
        );
        let (rows, skipped) = read_checked(
            &path,
            Format::Auto,
            &columns("text", None, "label", false),
            true,
        )
        .unwrap();
        assert_eq!((rows.len(), skipped), (1, 3));
    }

    #[test]
    fn unknown_column_lists_the_header() {
        let (_d, path) = write("x.csv", "sentence,label\na,1\n");
        let err = read_rows(&path, Format::Auto, &columns("text", None, "label", false))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column 'text' (columns: sentence, label)"),
            "{err}"
        );
    }
}
