//! The metrics Burn does not have (F1, precision, recall, MCC, MSE, Pearson, Spearman,
//! micro-F1, Hamming) as Burn metrics, so they show in the dashboard and drive early stopping.
//! Each accumulates the whole split and reports the exact split value at the end of an epoch.

use burn::tensor::{Element, Tensor, TensorData, TensorReadError};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};

use super::step::StepOutput;
use crate::data::TargetBatch;
use crate::metrics::{
    MetricValues, argmax, classification_metrics, higher_is_better, multi_label_metrics,
    regression_metrics,
};
use crate::model::ProblemType;

/// Logits and targets of a batch, for [`SplitMetric`].
pub struct EvalInput {
    logits: Tensor<2>,
    targets: TargetBatch,
}

impl Adaptor<EvalInput> for StepOutput {
    fn adapt(&self) -> EvalInput {
        EvalInput {
            logits: self.logits.clone(),
            targets: self.targets.clone(),
        }
    }
}

/// Host copies of predictions and targets.
#[derive(Clone, Debug, Default)]
pub struct Predictions {
    /// Predicted and true class indices (single-label).
    pub classes: (Vec<usize>, Vec<usize>),
    /// Predicted and true values (regression).
    pub values: (Vec<f64>, Vec<f64>),
    /// Predicted and true label indicators per row (multi-label).
    pub multi: (Vec<Vec<bool>>, Vec<Vec<bool>>),
}

/// A tensor's values on the host as `E`, whatever float or int type the device computed in.
fn host<E: Element>(data: TensorData) -> Result<Vec<E>, TensorReadError> {
    Ok(data.convert::<E>().try_to_vec::<E>()?)
}

impl Predictions {
    /// Appends a batch: argmax for classes, the raw value for regression, `sigmoid ≥ threshold`
    /// (logit ≥ logit(threshold)) for multi-label.
    pub fn extend(
        &mut self,
        logits: Tensor<2>,
        targets: &TargetBatch,
        threshold: f64,
    ) -> Result<(), TensorReadError> {
        let [_, width] = logits.dims();
        let rows = host::<f32>(logits.try_into_data()?)?;
        let rows: Vec<&[f32]> = rows.chunks(width).collect();
        match targets {
            TargetBatch::Class(t) => {
                let actual = host::<i64>(t.clone().try_into_data()?)?;
                self.classes.0.extend(rows.iter().map(|r| argmax(r)));
                self.classes
                    .1
                    .extend(actual.into_iter().map(|a| a as usize));
            }
            TargetBatch::Value(t) => {
                let actual = host::<f32>(t.clone().try_into_data()?)?;
                self.values.0.extend(rows.iter().map(|r| r[0] as f64));
                self.values.1.extend(actual.into_iter().map(f64::from));
            }
            TargetBatch::Multi(t) => {
                let actual = host::<f32>(t.clone().try_into_data()?)?;
                let cut = (threshold / (1.0 - threshold)).ln() as f32;
                self.multi
                    .0
                    .extend(rows.iter().map(|r| r.iter().map(|&x| x >= cut).collect()));
                self.multi.1.extend(
                    actual
                        .chunks(width)
                        .map(|r| r.iter().map(|&x| x > 0.5).collect()),
                );
            }
        }
        Ok(())
    }

    /// Every metric of the task.
    pub fn metrics(&self, task: ProblemType, num_labels: usize) -> MetricValues {
        match task {
            ProblemType::SingleLabel => {
                classification_metrics(&self.classes.0, &self.classes.1, num_labels)
            }
            ProblemType::Regression => regression_metrics(&self.values.0, &self.values.1),
            ProblemType::MultiLabel => multi_label_metrics(&self.multi.0, &self.multi.1),
        }
    }
}

/// The metrics each task reports besides loss.
pub fn task_metric_keys(task: ProblemType) -> &'static [&'static str] {
    match task {
        ProblemType::SingleLabel => &["accuracy", "f1", "precision", "recall", "mcc"],
        ProblemType::Regression => &["mse", "pearson", "spearman"],
        ProblemType::MultiLabel => &["micro_f1", "hamming"],
    }
}

/// The display name Burn shows for a metric key (`f1` → `F1`).
pub fn display_name(key: &str) -> String {
    match key {
        "f1" => "F1".into(),
        "mcc" => "MCC".into(),
        "mse" => "MSE".into(),
        "micro_f1" => "Micro-F1".into(),
        "loss" => "Loss".into(),
        other => {
            let mut chars = other.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    }
}

/// One split-level metric (`key` as in `eval_results.json`).
#[derive(Clone)]
pub struct SplitMetric {
    key: &'static str,
    name: MetricName,
    task: ProblemType,
    num_labels: usize,
    threshold: f64,
    seen: Predictions,
    last: Option<f64>,
}

impl SplitMetric {
    /// A metric reporting `key` for a `task` with `num_labels` outputs; `threshold` cuts
    /// multi-label probabilities.
    pub fn new(key: &'static str, task: ProblemType, num_labels: usize, threshold: f64) -> Self {
        Self {
            key,
            name: MetricName::new(display_name(key)),
            task,
            num_labels,
            threshold,
            seen: Predictions::default(),
            last: None,
        }
    }

    fn value_of(&self, predictions: &Predictions) -> f64 {
        predictions.metrics(self.task, self.num_labels)[self.key]
    }

    fn entry(&self, value: f64, numeric: NumericEntry) -> SerializedEntry {
        SerializedEntry::new(format!("{value:.4}"), numeric.serialize())
    }
}

impl Metric for SplitMetric {
    type Input = EvalInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: higher_is_better(self.key),
        }
        .into()
    }

    fn update(
        &mut self,
        item: &EvalInput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        // The batch's own value for the live view; the split value comes from `compute`.
        let mut batch = Predictions::default();
        batch.extend(item.logits.clone(), &item.targets, self.threshold)?;
        self.seen
            .extend(item.logits.clone(), &item.targets, self.threshold)?;
        let value = self.value_of(&batch);
        self.last = Some(value);
        Ok(self.entry(value, NumericEntry::Value(value)))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        let value = self.value_of(&self.seen);
        self.last = Some(value);
        Ok(self.entry(value, NumericEntry::Final(value)))
    }

    fn clear(&mut self) {
        self.seen = Predictions::default();
        self.last = None;
    }
}

impl Numeric for SplitMetric {
    fn value(&self) -> Option<NumericEntry> {
        self.last.map(NumericEntry::Value)
    }

    fn running_value(&self) -> Option<NumericEntry> {
        self.last.map(NumericEntry::Value)
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.value_of(&self.seen))
    }
}
