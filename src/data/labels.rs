//! Labels: inferring the task like transformers does, the label set, and mapping each row's
//! label to a training target.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
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
pub fn infer_task(stats: &LabelStats) -> ProblemType {
    if stats.any_list {
        ProblemType::MultiLabel
    } else if stats.all_int {
        ProblemType::SingleLabel
    } else if stats.all_float {
        ProblemType::Regression
    } else {
        ProblemType::SingleLabel
    }
}

/// Distinct label cells a [`LabelStats`] keeps apart; past this a column is a numeric target.
pub const MAX_DISTINCT_LABELS: usize = 100_000;

/// One distinct label cell: how often it occurs and its first lines.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CellStats {
    cell: LabelCell,
    count: usize,
    /// The first (up to 3) lines it is on.
    lines: Vec<usize>,
}

/// What one pass over a file learns about its label column, in bounded memory: the distinct
/// cells (up to [`MAX_DISTINCT_LABELS`]) with counts and first lines, and what the task
/// inference and the checks need to know about every cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabelStats {
    /// Distinct cells in order of first appearance; a row's label key indexes this.
    cells: Vec<CellStats>,
    #[serde(skip)]
    keys: HashMap<(bool, String), u32>,
    /// More distinct cells than [`MAX_DISTINCT_LABELS`] (later ones have no key).
    overflow: bool,
    any_list: bool,
    all_int: bool,
    all_float: bool,
    /// The first cell that is not a finite number: (line, text).
    not_finite: Option<(usize, String)>,
    /// Lines of the first JSON number and the first JSON string.
    first_number: Option<usize>,
    first_string: Option<usize>,
}

/// What tells distinct cells apart: `"1"` in a CSV and `1` in JSONL are different cells.
fn cell_key(cell: &LabelCell) -> (bool, String) {
    match cell {
        LabelCell::Text(t) => (false, t.clone()),
        LabelCell::Json(v) => (true, v.to_string()),
    }
}

/// The key of a label beyond [`MAX_DISTINCT_LABELS`] distinct cells.
pub const NO_LABEL_KEY: u32 = u32::MAX;

impl Default for LabelStats {
    fn default() -> Self {
        Self {
            cells: Vec::new(),
            keys: HashMap::new(),
            overflow: false,
            any_list: false,
            all_int: true,
            all_float: true,
            not_finite: None,
            first_number: None,
            first_string: None,
        }
    }
}

impl LabelStats {
    /// The statistics of `rows` (rows without a label are left out).
    pub fn from_rows(rows: &[RawRow]) -> Self {
        let mut stats = Self::default();
        for row in rows {
            if let Some(cell) = &row.label {
                stats.add(cell, row.line);
            }
        }
        stats
    }

    /// Counts the label `cell` of row `line`; returns its key ([`NO_LABEL_KEY`] past the cap).
    pub fn add(&mut self, cell: &LabelCell, line: usize) -> u32 {
        let text = cell_text(cell);
        match cell {
            LabelCell::Json(Value::Array(_)) => self.any_list = true,
            LabelCell::Json(Value::Number(_)) => {
                self.first_number.get_or_insert(line);
            }
            LabelCell::Json(Value::String(_)) => {
                self.first_string.get_or_insert(line);
            }
            _ => {}
        }
        if !matches!(cell, LabelCell::Json(Value::Array(_))) {
            self.all_int &= text.parse::<i64>().is_ok();
            self.all_float &= text.parse::<f64>().is_ok();
        }
        if self.not_finite.is_none() && !text.parse::<f32>().is_ok_and(f32::is_finite) {
            self.not_finite = Some((line, text));
        }
        let key = cell_key(cell);
        if let Some(&k) = self.keys.get(&key) {
            let stats = &mut self.cells[k as usize];
            stats.count += 1;
            if stats.lines.len() < 3 {
                stats.lines.push(line);
            }
            return k;
        }
        if self.cells.len() >= MAX_DISTINCT_LABELS {
            self.overflow = true;
            return NO_LABEL_KEY;
        }
        let k = self.cells.len() as u32;
        self.keys.insert(key, k);
        self.cells.push(CellStats {
            cell: cell.clone(),
            count: 1,
            lines: vec![line],
        });
        k
    }

    /// Rebuilds the lookup of distinct cells after deserializing.
    pub fn rebuild_keys(&mut self) {
        self.keys = (self.cells.iter().enumerate())
            .map(|(k, c)| (cell_key(&c.cell), k as u32))
            .collect();
    }

    /// The label cell of `key`.
    pub fn cell(&self, key: u32) -> Option<&LabelCell> {
        self.cells.get(key as usize).map(|c| &c.cell)
    }

    /// Distinct cells with their counts.
    fn distinct(&self) -> impl Iterator<Item = (&LabelCell, usize)> {
        self.cells.iter().map(|c| (&c.cell, c.count))
    }

    /// Fails when a task that needs the distinct labels met more than the cap of them.
    fn check_bounded(&self, task: ProblemType, file: &Path) -> Result<()> {
        if self.overflow && task != ProblemType::Regression {
            return Err(Error::Input(format!(
                "{}: more than {MAX_DISTINCT_LABELS} distinct labels; a numeric target is --task regression",
                file.display()
            )));
        }
        Ok(())
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
        stats: &LabelStats,
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
            (ProblemType::SingleLabel, None) => {
                sorted(stats.distinct().map(|(c, _)| cell_text(c)).collect())
            }
            (ProblemType::MultiLabel, None) => sorted(
                stats
                    .distinct()
                    .flat_map(|(c, _)| multi_items(c, delimiter))
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
        if let Some(row) = rows.iter().find(|r| r.label.is_none()) {
            return Err(Error::Input(format!(
                "{}:{}: no label",
                file.display(),
                row.line
            )));
        }
        self.check(&LabelStats::from_rows(rows), file)?;
        Ok(rows
            .iter()
            .filter_map(|r| r.label.as_ref().and_then(|c| self.target(c)))
            .collect())
    }

    /// The target of a label cell; `None` for a label outside the set or not a finite number
    /// ([`Self::check`] names them).
    pub fn target(&self, cell: &LabelCell) -> Option<Target> {
        let class = |name: &str| self.names.iter().position(|n| n == name);
        match self.task {
            ProblemType::Regression => {
                let value = cell_text(cell).parse::<f32>().ok();
                value.filter(|v| v.is_finite()).map(Target::Value)
            }
            ProblemType::SingleLabel => class(&cell_text(cell)).map(Target::Class),
            ProblemType::MultiLabel => multi_items(cell, &self.delimiter)
                .iter()
                .map(|item| class(item))
                .collect::<Option<Vec<usize>>>()
                .map(Target::Multi),
        }
    }

    /// Checks the labels of a file (by its statistics) against the set: labels outside it, NaN
    /// or infinite regression targets and a JSONL column mixing numbers and strings are errors
    /// naming the file and line.
    pub fn check(&self, stats: &LabelStats, file: &Path) -> Result<()> {
        if let (Some(number), Some(string)) = (stats.first_number, stats.first_string) {
            let ((this, line), (that, first)) = if number < string {
                (("a string", string), ("a number", number))
            } else {
                (("a number", number), ("a string", string))
            };
            return Err(Error::Input(format!(
                "{}:{line}: the label is {this} but on line {first} it is {that}; a label column holds numbers or strings, not both",
                file.display(),
            )));
        }
        stats.check_bounded(self.task, file)?;
        if self.task == ProblemType::Regression {
            return match &stats.not_finite {
                Some((line, text)) => Err(Error::Input(format!(
                    "{}:{line}: label '{text}' is not a finite number (task is regression)",
                    file.display(),
                ))),
                None => Ok(()),
            };
        }
        // Unknown label → (rows with it, its first lines).
        let mut unknown: BTreeMap<String, (usize, Vec<usize>)> = BTreeMap::new();
        for cell in &stats.cells {
            let items = match self.task {
                ProblemType::MultiLabel => multi_items(&cell.cell, &self.delimiter),
                _ => vec![cell_text(&cell.cell)],
            };
            for item in items {
                if !self.names.contains(&item) {
                    let entry = unknown.entry(item).or_default();
                    entry.0 += cell.count;
                    entry.1.extend(&cell.lines);
                }
            }
        }
        if let Some((label, (count, mut lines))) = unknown
            .first_key_value()
            .map(|(l, v)| (l.clone(), v.clone()))
        {
            lines.sort_unstable();
            let first: Vec<String> = lines.iter().take(3).map(ToString::to_string).collect();
            return Err(Error::Input(format!(
                "{}: label '{label}' (line {}{}) is not among the training labels [{}]{}",
                file.display(),
                first.join(", "),
                if count > 3 { ", …" } else { "" },
                self.names.join(", "),
                if unknown.len() > 1 {
                    format!("; {} unknown labels in all", unknown.len())
                } else {
                    String::new()
                }
            )));
        }
        Ok(())
    }

    /// The class of the label cell `key` of `stats` (single-label; 0 for other tasks), for
    /// stratifying and counting classes.
    pub fn class_of(&self, stats: &LabelStats, key: u32) -> usize {
        match stats.cell(key).and_then(|c| self.target(c)) {
            Some(Target::Class(c)) => c,
            _ => 0,
        }
    }
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

    /// The label space `from_training` makes of text labels.
    fn space_of(
        labels: &[&str],
        task: ProblemType,
        configured: Option<Vec<String>>,
    ) -> Result<LabelSpace> {
        LabelSpace::from_training(&LabelStats::from_rows(&text(labels)), task, configured, ",")
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
            infer_task(&LabelStats::from_rows(&text(&["0", "1", "1"]))),
            ProblemType::SingleLabel
        );
        assert_eq!(
            infer_task(&LabelStats::from_rows(&text(&["0.5", "3.2", "1"]))),
            ProblemType::Regression
        );
        assert_eq!(
            infer_task(&LabelStats::from_rows(&text(&["pos", "neg"]))),
            ProblemType::SingleLabel
        );
        let json = rows(&[LabelCell::Json(serde_json::json!(["a", "b"]))]);
        assert_eq!(
            infer_task(&LabelStats::from_rows(&json)),
            ProblemType::MultiLabel
        );
    }

    #[test]
    fn label_set_is_sorted_numerically_or_by_text() {
        let space = space_of(&["10", "2", "1", "2"], ProblemType::SingleLabel, None).unwrap();
        assert_eq!(space.names, ["1", "2", "10"]);
        let space = space_of(&["pos", "neg"], ProblemType::SingleLabel, None).unwrap();
        assert_eq!(space.names, ["neg", "pos"]);
        let data = text(&["pos", "neg", "pos"]);
        assert_eq!(
            space.targets(&data, Path::new("t.csv")).unwrap(),
            [Target::Class(1), Target::Class(0), Target::Class(1)]
        );
    }

    #[test]
    fn configured_labels_fix_the_order() {
        let space = space_of(
            &["pos", "neg"],
            ProblemType::SingleLabel,
            Some(vec!["pos".into(), "neg".into()]),
        )
        .unwrap();
        assert_eq!(
            space.targets(&text(&["neg"]), Path::new("x")).unwrap(),
            [Target::Class(1)]
        );
    }

    #[test]
    fn unknown_validation_labels_are_named_with_rows() {
        let space = space_of(&["pos", "neg"], ProblemType::SingleLabel, None).unwrap();
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
        let space = LabelSpace::from_training(
            &LabelStats::from_rows(&data),
            ProblemType::MultiLabel,
            None,
            "|",
        )
        .unwrap();
        assert_eq!(space.names, ["a", "b", "c"]);
        assert_eq!(
            space.targets(&data, Path::new("x")).unwrap(),
            [Target::Multi(vec![1, 0]), Target::Multi(vec![2, 0])]
        );
    }

    #[test]
    fn regression_labels_must_be_numbers() {
        let space = space_of(&["1.5"], ProblemType::Regression, None).unwrap();
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
