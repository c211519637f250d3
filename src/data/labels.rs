//! Labels: inferring the task like transformers does, the label set, and mapping each row's
//! label to a training target.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::table::{LabelCell, RawRow};
use crate::error::{Error, Result};
use crate::model::ProblemType;

/// What a row's label becomes for the loss.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Index into the label set (cross-entropy).
    Class(usize),
    /// Indices of the labels present (sigmoid + BCE).
    Multi(Vec<usize>),
    /// A float (MSE).
    Value(f32),
}

/// The task and the names of the model's outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelSpace {
    /// Single-label, multi-label or regression.
    pub task: ProblemType,
    /// Output names in index order (one `LABEL_0` for regression).
    pub names: Vec<String>,
    /// Separator of multi-label cells written as plain text (`a,b`).
    pub delimiter: String,
}

/// The text of a label cell (JSON strings unquoted).
fn cell_text(cell: &LabelCell) -> String {
    match cell {
        LabelCell::Text(t) => t.trim().to_string(),
        LabelCell::Json(Value::String(s)) => s.trim().to_string(),
        LabelCell::Json(v) => v.to_string(),
    }
}

/// Infers the task from the training labels: JSON lists → multi-label, all integers →
/// single-label, other numbers → regression, anything else → single-label.
pub fn infer_task(rows: &[RawRow]) -> ProblemType {
    let cells: Vec<&LabelCell> = rows.iter().filter_map(|r| r.label.as_ref()).collect();
    if cells
        .iter()
        .any(|c| matches!(c, LabelCell::Json(Value::Array(_))))
    {
        return ProblemType::MultiLabel;
    }
    let texts: Vec<String> = cells.iter().map(|c| cell_text(c)).collect();
    if texts.iter().all(|t| t.parse::<i64>().is_ok()) {
        ProblemType::SingleLabel
    } else if texts.iter().all(|t| t.parse::<f64>().is_ok()) {
        ProblemType::Regression
    } else {
        ProblemType::SingleLabel
    }
}

/// The items of a multi-label cell: a JSON list, or text split on `delimiter`.
fn multi_items(cell: &LabelCell, delimiter: &str) -> Vec<String> {
    let text = match cell {
        LabelCell::Json(Value::Array(items)) => {
            return items
                .iter()
                .map(|v| cell_text(&LabelCell::Json(v.clone())))
                .collect();
        }
        other => cell_text(other),
    };
    if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&text) {
        return items
            .iter()
            .map(|v| cell_text(&LabelCell::Json(v.clone())))
            .collect();
    }
    text.split(delimiter)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Sorts label names numerically when they are all integers, else as text.
fn sorted(names: BTreeSet<String>) -> Vec<String> {
    let mut names: Vec<String> = names.into_iter().collect();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or_default());
    }
    names
}

impl LabelSpace {
    /// The label set of the training rows (sorted unique), unless `configured` lists it.
    pub fn from_training(
        rows: &[RawRow],
        task: ProblemType,
        configured: Option<Vec<String>>,
        delimiter: &str,
    ) -> Result<Self> {
        let source = if configured.is_some() {
            "labels (--labels or the config) name"
        } else {
            "the training data has"
        };
        let names = match (task, configured) {
            (ProblemType::Regression, _) => vec!["LABEL_0".to_string()],
            (_, Some(names)) => {
                let unique: BTreeSet<&String> = names.iter().collect();
                if unique.len() != names.len() || names.is_empty() {
                    return Err(Error::Input(
                        "the configured labels must be unique and not empty".into(),
                    ));
                }
                names
            }
            (ProblemType::SingleLabel, None) => sorted(
                rows.iter()
                    .filter_map(|r| r.label.as_ref().map(cell_text))
                    .collect(),
            ),
            (ProblemType::MultiLabel, None) => sorted(
                rows.iter()
                    .filter_map(|r| r.label.as_ref())
                    .flat_map(|c| multi_items(c, delimiter))
                    .collect(),
            ),
        };
        if task == ProblemType::SingleLabel && names.len() < 2 {
            return Err(Error::Input(format!(
                "single-label classification needs at least 2 labels, {source} {names:?}"
            )));
        }
        Ok(Self {
            task,
            names,
            delimiter: delimiter.to_string(),
        })
    }

    /// Maps every row's label; labels outside the set, NaN or infinite regression targets and a
    /// JSONL column mixing numbers and strings are errors naming the file and line.
    pub fn targets(&self, rows: &[RawRow], file: &Path) -> Result<Vec<Target>> {
        check_label_kinds(rows, file)?;
        let index: BTreeMap<&str, usize> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut unknown: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut targets = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(cell) = &row.label else {
                return Err(Error::Input(format!(
                    "{}:{}: no label",
                    file.display(),
                    row.line
                )));
            };
            let target = match self.task {
                ProblemType::Regression => {
                    let text = cell_text(cell);
                    let value = text.parse::<f32>().ok().filter(|v| v.is_finite());
                    Target::Value(value.ok_or_else(|| {
                        Error::Input(format!(
                            "{}:{}: label '{text}' is not a finite number (task is regression)",
                            file.display(),
                            row.line
                        ))
                    })?)
                }
                ProblemType::SingleLabel => {
                    let text = cell_text(cell);
                    match index.get(text.as_str()) {
                        Some(&i) => Target::Class(i),
                        None => {
                            unknown.entry(text).or_default().push(row.line);
                            continue;
                        }
                    }
                }
                ProblemType::MultiLabel => {
                    let mut present = Vec::new();
                    for item in multi_items(cell, &self.delimiter) {
                        match index.get(item.as_str()) {
                            Some(&i) => present.push(i),
                            None => unknown.entry(item).or_default().push(row.line),
                        }
                    }
                    Target::Multi(present)
                }
            };
            targets.push(target);
        }
        if let Some((label, lines)) = unknown.iter().next() {
            let first: Vec<String> = lines.iter().take(3).map(ToString::to_string).collect();
            return Err(Error::Input(format!(
                "{}: label '{label}' (line {}{}) is not among the training labels [{}]{}",
                file.display(),
                first.join(", "),
                if lines.len() > 3 { ", …" } else { "" },
                self.names.join(", "),
                if unknown.len() > 1 {
                    format!("; {} unknown labels in all", unknown.len())
                } else {
                    String::new()
                }
            )));
        }
        Ok(targets)
    }
}

/// A JSONL label column holds numbers or strings, not both (`1` on one line, `"pos"` on
/// another would silently become two unrelated labels).
fn check_label_kinds(rows: &[RawRow], file: &Path) -> Result<()> {
    let kind = |cell: &LabelCell| match cell {
        LabelCell::Json(Value::Number(_)) => Some("a number"),
        LabelCell::Json(Value::String(_)) => Some("a string"),
        _ => None,
    };
    let mut first: Option<(&str, usize)> = None;
    for row in rows {
        let Some(this) = row.label.as_ref().and_then(kind) else {
            continue;
        };
        match first {
            None => first = Some((this, row.line)),
            Some((that, line)) if that != this => {
                return Err(Error::Input(format!(
                    "{}:{}: the label is {this} but on line {line} it is {that}; a label column holds numbers or strings, not both",
                    file.display(),
                    row.line
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Parses `--task`: `auto`, `single_label`, `multi_label`, `regression`.
pub fn parse_task(name: &str) -> Result<Option<ProblemType>> {
    match name {
        "auto" => Ok(None),
        "single_label" | "single_label_classification" => Ok(Some(ProblemType::SingleLabel)),
        "multi_label" | "multi_label_classification" => Ok(Some(ProblemType::MultiLabel)),
        "regression" => Ok(Some(ProblemType::Regression)),
        other => Err(Error::Input(format!(
            "unknown task '{other}' (auto, single_label, multi_label, regression)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(labels: &[LabelCell]) -> Vec<RawRow> {
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| RawRow {
                line: i + 2,
                text: "t".into(),
                text_pair: None,
                label: Some(l.clone()),
            })
            .collect()
    }

    fn text(labels: &[&str]) -> Vec<RawRow> {
        rows(
            &labels
                .iter()
                .map(|l| LabelCell::Text(l.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn non_finite_regression_targets_and_mixed_json_labels_are_data_errors() {
        let space = LabelSpace {
            task: ProblemType::Regression,
            names: vec!["LABEL_0".into()],
            delimiter: ",".into(),
        };
        let file = Path::new("d.tsv");
        for bad in ["nan", "inf", "-inf", "NaN"] {
            let err = space
                .targets(&text(&["0.5", bad]), file)
                .unwrap_err()
                .to_string();
            assert!(err.contains("d.tsv:3") && err.contains("finite"), "{err}");
        }
        assert_eq!(
            space.targets(&text(&["0.5", "-2"]), file).unwrap(),
            [Target::Value(0.5), Target::Value(-2.0)]
        );
        let mixed = rows(&[
            LabelCell::Json(serde_json::json!(1)),
            LabelCell::Json(serde_json::json!(0)),
            LabelCell::Json(serde_json::json!("1")),
        ]);
        let single = LabelSpace {
            task: ProblemType::SingleLabel,
            names: vec!["0".into(), "1".into()],
            delimiter: ",".into(),
        };
        let err = single
            .targets(&mixed, Path::new("d.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("d.jsonl:4") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn tasks_are_inferred_like_transformers() {
        assert_eq!(
            infer_task(&text(&["0", "1", "1"])),
            ProblemType::SingleLabel
        );
        assert_eq!(
            infer_task(&text(&["0.5", "3.2", "1"])),
            ProblemType::Regression
        );
        assert_eq!(infer_task(&text(&["pos", "neg"])), ProblemType::SingleLabel);
        let json = rows(&[LabelCell::Json(serde_json::json!(["a", "b"]))]);
        assert_eq!(infer_task(&json), ProblemType::MultiLabel);
    }

    #[test]
    fn label_set_is_sorted_numerically_or_by_text() {
        let space = LabelSpace::from_training(
            &text(&["10", "2", "1", "2"]),
            ProblemType::SingleLabel,
            None,
            ",",
        )
        .unwrap();
        assert_eq!(space.names, ["1", "2", "10"]);
        let space =
            LabelSpace::from_training(&text(&["pos", "neg"]), ProblemType::SingleLabel, None, ",")
                .unwrap();
        assert_eq!(space.names, ["neg", "pos"]);
        let data = text(&["pos", "neg", "pos"]);
        assert_eq!(
            space.targets(&data, Path::new("t.csv")).unwrap(),
            [Target::Class(1), Target::Class(0), Target::Class(1)]
        );
    }

    #[test]
    fn configured_labels_fix_the_order() {
        let space = LabelSpace::from_training(
            &text(&["pos", "neg"]),
            ProblemType::SingleLabel,
            Some(vec!["pos".into(), "neg".into()]),
            ",",
        )
        .unwrap();
        assert_eq!(
            space.targets(&text(&["neg"]), Path::new("x")).unwrap(),
            [Target::Class(1)]
        );
    }

    #[test]
    fn unknown_validation_labels_are_named_with_rows() {
        let space =
            LabelSpace::from_training(&text(&["pos", "neg"]), ProblemType::SingleLabel, None, ",")
                .unwrap();
        let err = space
            .targets(&text(&["pos", "meh", "meh"]), Path::new("dev.tsv"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "dev.tsv: label 'meh' (line 3, 4) is not among the training labels [neg, pos]"
        );
    }

    #[test]
    fn multi_label_from_json_lists_and_delimited_text() {
        let data = rows(&[
            LabelCell::Json(serde_json::json!(["b", "a"])),
            LabelCell::Text("c|a".into()),
        ]);
        let space = LabelSpace::from_training(&data, ProblemType::MultiLabel, None, "|").unwrap();
        assert_eq!(space.names, ["a", "b", "c"]);
        assert_eq!(
            space.targets(&data, Path::new("x")).unwrap(),
            [Target::Multi(vec![1, 0]), Target::Multi(vec![2, 0])]
        );
    }

    #[test]
    fn regression_labels_must_be_numbers() {
        let space =
            LabelSpace::from_training(&text(&["1.5"]), ProblemType::Regression, None, ",").unwrap();
        assert_eq!(space.names, ["LABEL_0"]);
        let err = space
            .targets(&text(&["2.5", "high"]), Path::new("s.tsv"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.tsv:3: label 'high' is not a finite number"),
            "{err}"
        );
    }
}
