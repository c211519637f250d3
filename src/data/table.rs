//! Reading labelled text files: CSV, TSV (no quote processing, as GLUE needs) and JSONL,
//! with columns by name or by 0-based index, a UTF-8 BOM ignored, CRLF accepted.

use std::io::{BufRead, BufReader, Read};
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
#[derive(Clone, Debug, PartialEq)]
pub enum LabelCell {
    /// A CSV/TSV cell's text.
    Text(String),
    /// A JSONL field's value (string, number, list, ...).
    Json(Value),
}

/// A row that could not be read, with its location.
#[derive(Clone, Debug)]
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
    path: PathBuf,
    columns: Columns,
    /// The CSV/TSV header, when the file has one.
    pub header: Option<Vec<String>>,
}

enum RowSource {
    Json(std::io::Lines<Box<dyn BufRead>>, usize),
    Delimited(
        csv::StringRecordsIntoIter<Box<dyn BufRead>>,
        ColumnIndex,
        usize,
    ),
}

/// Drops the `\r` of `\r\n` line endings (the csv crate miscounts lines after them) and a
/// leading UTF-8 byte-order mark.
struct Normalised<R: BufRead> {
    inner: R,
    start: bool,
}

impl<R: BufRead> Read for Normalised<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let buf = self.inner.fill_buf()?;
        if self.start {
            self.start = false;
            if buf.starts_with(b"\xEF\xBB\xBF") {
                self.inner.consume(3);
                return self.read(out);
            }
        }
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() || out.is_empty() {
            return Ok(0);
        }
        let (mut read, mut written) = (0, 0);
        while read < buf.len() && written < out.len() {
            if buf[read] == b'\r' && read + 1 < buf.len() && buf[read + 1] == b'\n' {
                read += 1;
                continue;
            }
            if buf[read] == b'\r' && read + 1 == buf.len() && read > 0 {
                break; // decide on the next fill, when the following byte is known
            }
            out[written] = buf[read];
            read += 1;
            written += 1;
        }
        self.inner.consume(read);
        Ok(written)
    }
}

impl RowReader {
    /// Opens `path`; with a header, the columns are resolved now (a missing one is an error).
    pub fn open(path: &Path, format: Format, columns: &Columns) -> Result<Self> {
        let format = format.resolve(path)?;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let reader: Box<dyn BufRead> = Box::new(BufReader::new(Normalised {
            inner: BufReader::new(file),
            start: true,
        }));
        let mut header = None;
        let inner = match format {
            Format::Jsonl => RowSource::Json(reader.lines(), 0),
            delimited => {
                let mut records = csv::ReaderBuilder::new()
                    .delimiter(if delimited == Format::Tsv {
                        b'\t'
                    } else {
                        b','
                    })
                    .quoting(delimited == Format::Csv)
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(reader)
                    .into_records();
                if !columns.no_header {
                    header = match records.next() {
                        Some(Ok(record)) => Some(record.iter().map(str::to_string).collect()),
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
                let index = ColumnIndex::new(header.as_deref(), columns, path)?;
                RowSource::Delimited(records, index, usize::from(header.is_some()))
            }
        };
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            columns: columns.clone(),
            header,
        })
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
        let (line, row, fields) = match &mut self.inner {
            RowSource::Json(lines, count) => loop {
                *count += 1;
                let text = match lines.next()? {
                    Ok(text) => text,
                    Err(e) => return Some(Err(Error::io(&self.path, e))),
                };
                if text.trim().is_empty() {
                    continue;
                }
                let fields = serde_json::from_str(&text).unwrap_or(Value::Null);
                break (
                    *count,
                    json_row(*count, &text, &self.columns),
                    RowFields::Json(fields),
                );
            },
            RowSource::Delimited(records, index, count) => {
                *count += 1;
                match records.next()? {
                    Ok(record) => {
                        let cells = record.iter().map(str::to_string).collect();
                        (*count, index.row(*count, &record), RowFields::Cells(cells))
                    }
                    Err(e) => (*count, Err(e.to_string()), RowFields::Cells(Vec::new())),
                }
            }
        };
        Some(Ok((row.map_err(|message| self.bad(line, message)), fields)))
    }
}

/// Reads every row of a labelled file. Bad rows (ragged, missing field, empty text) are
/// returned separately so the caller can fail on the first or skip them.
pub fn read_rows(
    path: &Path,
    format: Format,
    columns: &Columns,
) -> Result<(Vec<RawRow>, Vec<BadRow>)> {
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    for item in RowReader::open(path, format, columns)? {
        match item?.0 {
            Ok(row) if row.text.trim().is_empty() => bad.push(BadRow {
                file: path.to_path_buf(),
                line: row.line,
                message: format!("empty text in column '{}'", columns.text),
            }),
            Ok(row) => rows.push(row),
            Err(b) => bad.push(b),
        }
    }
    Ok((rows, bad))
}

/// Column positions resolved against the header (or parsed as indices).
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
                .map(str::to_string)
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
        let more = if bad.len() > 1 {
            format!(
                " ({} bad rows in all; --skip-bad-rows skips them)",
                bad.len()
            )
        } else {
            " (--skip-bad-rows skips such rows)".into()
        };
        return Err(Error::Input(format!("{first}{more}")));
    }
    if rows.is_empty() {
        return Err(Error::Input(format!("{}: no data rows", path.display())));
    }
    Ok((rows, bad.len()))
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
