//! `metrics.jsonl`: one line per split and evaluation with every numeric metric's value over
//! the evaluation window, the optimizer step and the (fractional) epoch, written next to Burn's
//! own metric files (which it delegates to). In plain mode it also hands that line, readable,
//! to the caller's [`Lines`].

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::train::logger::{FileMetricLogger, MetricLogger};
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};

use super::metric::display_name;
use super::{GradNorm, Lines, LossScaler};
use crate::data::StreamState;
use crate::error::{Error, Result};

/// Values by split (`train`/`valid`), then evaluation (Burn's epoch number: 1, 2, …), then
/// lower-case metric key; `step` and `epoch` say where the evaluation was taken.
pub type History = BTreeMap<String, BTreeMap<usize, BTreeMap<String, f64>>>;

/// Wraps Burn's [`FileMetricLogger`] and keeps the epoch values.
pub struct JsonlLogger {
    inner: FileMetricLogger,
    path: PathBuf,
    names: HashMap<MetricId, String>,
    points: BTreeMap<(String, String), Vec<NumericEntry>>,
    history: Arc<Mutex<History>>,
    progress: Arc<StreamState>,
    lines: Option<Lines>,
    grad_norm: GradNorm,
    scaler: Option<LossScaler>,
}

impl JsonlLogger {
    /// Logs into `dir` (Burn's files) and `dir/metrics.jsonl`; `lines` receives a readable
    /// line per split and evaluation; training lines carry the last step's `grad_norm` and,
    /// with loss scaling, the `loss_scale` and the `skipped_steps` so far.
    pub fn new(
        dir: &Path,
        lines: Option<Lines>,
        history: Arc<Mutex<History>>,
        progress: Arc<StreamState>,
        (grad_norm, scaler): (GradNorm, Option<LossScaler>),
    ) -> Self {
        Self {
            inner: FileMetricLogger::new(dir),
            path: dir.join("metrics.jsonl"),
            names: HashMap::new(),
            points: BTreeMap::new(),
            history,
            progress,
            lines,
            grad_norm,
            scaler,
        }
    }
}

/// `Loss` → `loss`, `Micro-F1` → `micro_f1`, `Learning Rate` → `learning_rate`.
pub fn metric_key(name: &str) -> String {
    name.to_lowercase().replace(['-', ' '], "_")
}

/// The epoch value Burn would compute: the final entry if there is one, else the
/// count-weighted mean.
fn epoch_value(points: &[NumericEntry]) -> Option<f64> {
    if let Some(NumericEntry::Final(v)) = points.last() {
        return Some(*v);
    }
    let (sum, count) = points.iter().fold((0.0, 0usize), |(s, n), p| match p {
        NumericEntry::Value(v) => (s + v, n + 1),
        NumericEntry::Aggregated {
            aggregated_value,
            count,
        } => (s + aggregated_value * *count as f64, n + count),
        NumericEntry::Final(v) => (s + v, n + 1),
    });
    (count > 0).then(|| sum / count as f64)
}

impl MetricLogger for JsonlLogger {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        for numeric in &update.entries_numeric {
            if let Some(name) = self.names.get(&numeric.entry.metric_id)
                && let Ok(entry) =
                    NumericEntry::deserialize(&numeric.entry.serialized_entry.serialized)
            {
                self.points
                    .entry((split.to_string(), name.clone()))
                    .or_default()
                    .push(entry);
            }
        }
        self.inner.log(update, epoch, split);
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        self.inner.read_numeric(name, epoch, split)
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id.clone(), definition.name.to_string());
        self.inner.log_metric_definition(definition);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        let split = summary.split.to_string();
        let mut values = BTreeMap::new();
        let keys: Vec<(String, String)> = self
            .points
            .keys()
            .filter(|(s, _)| *s == split)
            .cloned()
            .collect();
        for key in keys {
            let points = self.points.remove(&key).unwrap_or_default();
            if let Some(value) = epoch_value(&points) {
                values.insert(metric_key(&key.1), value);
            }
        }
        if split == Split::Train.to_string() {
            if let Some(norm) = self.grad_norm.get() {
                values.insert("grad_norm".into(), norm);
            }
            if let Some(scaler) = &self.scaler {
                let state = scaler.state();
                values.insert("loss_scale".into(), state.scale);
                values.insert("skipped_steps".into(), state.skipped as f64);
            }
        }
        if !values.is_empty() {
            let (step, epoch) = (self.progress.steps(), self.progress.epochs());
            let mut line = serde_json::Map::new();
            line.insert("evaluation".into(), summary.epoch_number.into());
            line.insert("split".into(), split.clone().into());
            line.insert("step".into(), step.into());
            line.insert("epoch".into(), epoch.into());
            for (k, v) in &values {
                line.insert(k.clone(), (*v).into());
            }
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .and_then(|mut file| {
                    writeln!(file, "{}", serde_json::Value::Object(line))?;
                    file.sync_data()
                });
            if let Err(e) = written {
                // The saved model is chosen from this file: stop rather than go on without it.
                self.progress
                    .fail(format!("{}: cannot write: {e}", self.path.display()));
            }
            if let Some(lines) = &self.lines {
                let shown: Vec<String> = values
                    .iter()
                    .map(|(k, v)| {
                        format!("{} {}", display_name(k).to_lowercase(), format_value(*v))
                    })
                    .collect();
                lines(&format!(
                    "step {step} epoch {epoch:.2} {split}: {}",
                    shown.join(", ")
                ));
            }
            values.insert("step".into(), step as f64);
            values.insert("epoch".into(), epoch);
            if let Ok(mut history) = self.history.lock() {
                history
                    .entry(split)
                    .or_default()
                    .insert(summary.epoch_number, values);
            }
        }
        self.inner.log_epoch_summary(summary);
    }
}

/// Reads `metrics.jsonl` back into a [`History`]; a file that does not exist (no evaluation
/// yet) is an empty history, one that cannot be read is an error naming it.
pub fn read_history(path: &Path) -> Result<History> {
    let mut history = History::new();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    for line in text.lines() {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str(line) else {
            continue;
        };
        let (Some(evaluation), Some(split)) = (
            map.get("evaluation").and_then(|v| v.as_u64()),
            map.get("split").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let values = map
            .iter()
            .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
            .filter(|(k, _)| k != "evaluation")
            .collect();
        history
            .entry(split.to_string())
            .or_default()
            .insert(evaluation as usize, values);
    }
    Ok(history)
}

/// Four significant decimals, or scientific notation for small values (learning rates).
pub fn format_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_values_follow_burns_aggregation() {
        let points = [
            NumericEntry::Aggregated {
                aggregated_value: 1.0,
                count: 3,
            },
            NumericEntry::Aggregated {
                aggregated_value: 2.0,
                count: 1,
            },
        ];
        assert_eq!(epoch_value(&points), Some(1.25));
        assert_eq!(
            epoch_value(&[NumericEntry::Value(0.3), NumericEntry::Final(0.9)]),
            Some(0.9)
        );
        assert_eq!(metric_key("Micro-F1"), "micro_f1");
        assert_eq!(metric_key("Learning Rate"), "learning_rate");
    }
}
