//! Evaluating a classifier on labelled examples: mean loss and every metric of the task.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::Device;

use super::metric::Predictions;
use super::step::Trainee;
use crate::data::{EvalBatches, Examples, LabelSpace, Padding, TrainBatcher};
use crate::error::{Error, Result};
use crate::metrics::MetricValues;
use burn::data::dataset::Dataset;

/// Mean loss (weighted by batch size) and all metrics of `space.task` over `examples`, with
/// the predictions (for per-class tables and confusion matrices).
pub fn evaluate(
    trainee: &Trainee,
    examples: Arc<dyn Examples>,
    space: &LabelSpace,
    batch_size: usize,
    padding: Padding,
    threshold: f64,
    device: &Device,
) -> Result<(MetricValues, Predictions)> {
    let dataset = EvalBatches::new(examples, batch_size);
    let batcher = TrainBatcher {
        padding,
        num_labels: space.names.len(),
        halves: false,
    };
    let mut predictions = Predictions::default();
    let (mut loss_sum, mut count) = (0.0, 0usize);
    for index in 0..dataset.len() {
        let group = dataset
            .get(index)
            .map_err(|e| Error::Input(format!("evaluation batch {index}: {e}")))?;
        if group.is_empty() {
            continue;
        }
        let n = group.len();
        let output = trainee.forward(batcher.batch(vec![group], device));
        let loss = output
            .loss
            .into_scalar_f64()
            .map_err(|e| Error::Device(format!("reading the loss: {e}")))?;
        loss_sum += loss * n as f64;
        count += n;
        predictions
            .extend(output.logits, &output.targets, threshold)
            .map_err(|e| Error::Device(format!("reading predictions: {e}")))?;
    }
    let mut metrics = predictions.metrics(space.task, space.names.len());
    metrics.insert("loss".into(), loss_sum / count.max(1) as f64);
    Ok((metrics, predictions))
}

/// Reads a one-element tensor as `f64`.
trait ScalarF64 {
    fn into_scalar_f64(self) -> std::result::Result<f64, String>;
}

impl ScalarF64 for burn::tensor::Tensor<1> {
    fn into_scalar_f64(self) -> std::result::Result<f64, String> {
        self.try_into_data()
            .map_err(|e| e.to_string())?
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?
            .first()
            .map(|v| f64::from(*v))
            .ok_or_else(|| "empty loss".to_string())
    }
}
