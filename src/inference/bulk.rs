//! Labelling a CSV/TSV/JSONL file of any size: rows are read, predicted and written in
//! chunks, so memory stays flat; the output keeps every input column and adds the prediction.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde_json::Value;

use super::predictor::{Prediction, Predictor, TextInput};
use crate::data::{Columns, Format, RowFields, RowReader};
use crate::error::{Error, Result};

/// How to read the input and shape the output.
#[derive(Clone, Debug)]
pub struct BulkOptions {
    /// Input format (`Auto`: by extension).
    pub format: Format,
    /// Where the text (and pair) columns are.
    pub columns: Columns,
    /// Inputs per forward pass.
    pub batch_size: usize,
    /// Rows read, predicted and written at a time.
    pub chunk_rows: usize,
    /// Keep only the k most probable labels in `scores` (single-label).
    pub top_k: Option<usize>,
}

/// Output layout, chosen by the output file's extension (the input's format for stdout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutFormat {
    Jsonl,
    Delimited(u8),
}

fn out_format(path: Option<&Path>, input: Format) -> OutFormat {
    let ext = path
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match (ext.as_deref(), input) {
        (Some("csv"), _) => OutFormat::Delimited(b','),
        (Some("tsv" | "tab" | "txt"), _) => OutFormat::Delimited(b'\t'),
        (Some(_), _) => OutFormat::Jsonl,
        (None, Format::Csv) => OutFormat::Delimited(b','),
        (None, Format::Tsv) => OutFormat::Delimited(b'\t'),
        (None, _) => OutFormat::Jsonl,
    }
}

/// Where predicted rows go.
enum Out {
    Delimited(csv::Writer<Box<dyn Write>>),
    Jsonl(Box<dyn Write>),
}

/// Counts data lines cheaply, for the progress bar.
fn count_lines(path: &Path) -> u64 {
    std::fs::File::open(path)
        .map(|f| {
            BufReader::new(f)
                .split(b'\n')
                .filter(|l| l.as_ref().is_ok_and(|l| !l.trim_ascii().is_empty()))
                .count() as u64
        })
        .unwrap_or(0)
}

/// The prediction as `(column, value)` pairs: `label`/`labels`, `scores`, or `score`.
fn prediction_fields(prediction: Prediction, top_k: Option<usize>) -> Vec<(&'static str, Value)> {
    let scores = |scores: Vec<(String, f32)>| {
        Value::Object(
            scores
                .into_iter()
                .map(|(l, p)| (l, Value::from(p)))
                .collect(),
        )
    };
    match prediction.top_k(top_k) {
        Prediction::SingleLabel { label, scores: s } => {
            vec![("label", label.into()), ("scores", scores(s))]
        }
        Prediction::MultiLabel { labels, scores: s } => {
            vec![("labels", labels.into()), ("scores", scores(s))]
        }
        Prediction::Regression { score } => vec![("score", score.into())],
    }
}

/// A cell for CSV/TSV output: strings as they are, anything else as JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Predicts every row of `input` and writes the rows with their predictions to `output`
/// (atomically) or stdout. A bad row stops with its file and line. Returns the row count.
pub fn predict_file(
    predictor: &Predictor,
    input: &Path,
    output: Option<&Path>,
    options: &BulkOptions,
) -> Result<usize> {
    let mut reader = RowReader::open(input, options.format, &options.columns)?;
    let header = reader.header.clone();
    let resolved = match options.format {
        Format::Auto => match input.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            Some("jsonl" | "json" | "ndjson") => Format::Jsonl,
            _ => Format::Tsv,
        },
        f => f,
    };
    let layout = out_format(output, resolved);
    let tmp = match output {
        Some(path) => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            Some(tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?)
        }
        None => None,
    };
    let sink: Box<dyn Write> = match &tmp {
        Some(file) => Box::new(std::io::BufWriter::new(
            file.as_file()
                .try_clone()
                .map_err(|e| Error::io(file.path(), e))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut out = match layout {
        OutFormat::Delimited(delimiter) => Out::Delimited(
            csv::WriterBuilder::new()
                .delimiter(delimiter)
                .quote_style(if delimiter == b'\t' {
                    csv::QuoteStyle::Never
                } else {
                    csv::QuoteStyle::Necessary
                })
                .from_writer(sink),
        ),
        OutFormat::Jsonl => Out::Jsonl(sink),
    };
    let progress =
        indicatif::ProgressBar::new(count_lines(input).saturating_sub(u64::from(header.is_some())));
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let prediction_columns: Vec<&str> = match super::predictor::problem_type(&predictor.config) {
        crate::model::ProblemType::Regression => vec!["score"],
        crate::model::ProblemType::MultiLabel => vec!["labels", "scores"],
        crate::model::ProblemType::SingleLabel => vec!["label", "scores"],
    };
    if let (Out::Delimited(writer), Some(header)) = (&mut out, &header) {
        let mut row: Vec<&str> = header.iter().map(String::as_str).collect();
        row.extend(&prediction_columns);
        writer
            .write_record(&row)
            .map_err(|e| Error::Input(e.to_string()))?;
    }
    let write_err = |e: std::io::Error| Error::io(output.unwrap_or(Path::new("<stdout>")), e);
    let mut total = 0;
    loop {
        let mut chunk: Vec<(TextInput, RowFields)> = Vec::with_capacity(options.chunk_rows);
        for item in reader.by_ref().take(options.chunk_rows) {
            let (row, fields) = item?;
            let row = row.map_err(|bad| Error::Input(bad.to_string()))?;
            chunk.push((
                TextInput {
                    text: row.text,
                    text_pair: row.text_pair,
                },
                fields,
            ));
        }
        if chunk.is_empty() {
            break;
        }
        let inputs: Vec<TextInput> = chunk.iter().map(|(i, _)| i.clone()).collect();
        let predictions = predictor.predict(&inputs, options.batch_size)?;
        for ((_, fields), prediction) in chunk.iter().zip(predictions) {
            let extra = prediction_fields(prediction, options.top_k);
            match &mut out {
                Out::Delimited(writer) => {
                    let mut row = match fields {
                        RowFields::Cells(cells) => cells.clone(),
                        RowFields::Json(_) => Vec::new(),
                    };
                    row.extend(extra.iter().map(|(_, v)| cell(v)));
                    writer
                        .write_record(&row)
                        .map_err(|e| Error::Input(e.to_string()))?;
                }
                Out::Jsonl(sink) => {
                    let mut object = match fields {
                        RowFields::Json(Value::Object(map)) => map.clone(),
                        RowFields::Cells(cells) => cells
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                let key = header
                                    .as_ref()
                                    .and_then(|h| h.get(i).cloned())
                                    .unwrap_or_else(|| i.to_string());
                                (key, Value::String(c.clone()))
                            })
                            .collect(),
                        RowFields::Json(other) => {
                            serde_json::Map::from_iter([("input".to_string(), other.clone())])
                        }
                    };
                    for (k, v) in extra {
                        object.insert(k.to_string(), v);
                    }
                    writeln!(sink, "{}", Value::Object(object)).map_err(write_err)?;
                }
            }
        }
        total += chunk.len();
        progress.set_position(total as u64);
    }
    progress.finish_and_clear();
    let mut sink = match out {
        Out::Delimited(writer) => writer
            .into_inner()
            .map_err(|e| Error::Input(e.to_string()))?,
        Out::Jsonl(sink) => sink,
    };
    sink.flush().map_err(write_err)?;
    drop(sink);
    if let (Some(file), Some(path)) = (tmp, output) {
        file.persist(path).map_err(|e| Error::io(path, e.error))?;
    }
    Ok(total)
}
