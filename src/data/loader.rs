//! Burn data loading for training: examples (in memory, or read through the row index and
//! tokenized when fetched), evaluation batches, and the batcher that pads them and stacks the
//! targets.

use std::sync::{Arc, Mutex};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::batcher::{TextBatch, collate};
use super::index::RowSet;
use super::labels::LabelSpace;
use super::labels::Target;
use super::table::RawRow;
use super::tokenizer::{Encoded, Padding, TextTokenizer};
use crate::error::{Error, Result};

/// A tokenized, labelled example.
#[derive(Clone, Debug)]
pub struct TrainItem {
    /// The example's tokens, unpadded.
    pub encoded: Encoded,
    /// What the example's label becomes for the loss.
    pub target: Target,
}

/// Labelled examples fetched by index: held in memory, or read and tokenized on demand.
pub trait Examples: Send + Sync {
    /// How many examples there are.
    fn len(&self) -> usize;

    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The examples at `indices`, tokenized, in that order.
    fn fetch(&self, indices: &[usize]) -> Result<Vec<TrainItem>>;
}

impl Examples for Vec<TrainItem> {
    fn len(&self) -> usize {
        self.len()
    }

    fn fetch(&self, indices: &[usize]) -> Result<Vec<TrainItem>> {
        Ok(indices.iter().map(|&i| self[i].clone()).collect())
    }
}

/// Rows of an indexed file, read, labelled and tokenized when fetched: memory stays bounded
/// whatever the file's size.
pub struct LazyExamples {
    rows: RowSet,
    tokenizer: TextTokenizer,
    space: LabelSpace,
}

impl LazyExamples {
    /// Examples of `rows` (whose labels [`LabelSpace::check`] accepted) for `space`.
    pub fn new(rows: RowSet, tokenizer: TextTokenizer, space: LabelSpace) -> Self {
        Self {
            rows,
            tokenizer,
            space,
        }
    }
}

impl Examples for LazyExamples {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn fetch(&self, indices: &[usize]) -> Result<Vec<TrainItem>> {
        let rows = indices
            .iter()
            .map(|&i| self.rows.row(i))
            .collect::<Result<Vec<RawRow>>>()?;
        let targets = rows
            .iter()
            .map(|row| {
                row.label
                    .as_ref()
                    .and_then(|c| self.space.target(c))
                    .ok_or_else(|| {
                        Error::Input(format!(
                            "{}:{}: the label changed since the file was indexed",
                            self.rows.path().display(),
                            row.line
                        ))
                    })
            })
            .collect::<Result<Vec<Target>>>()?;
        let encoded = self.tokenizer.encode_batch(
            rows.iter()
                .map(|r| (r.text.as_str(), r.text_pair.as_deref())),
        )?;
        Ok(encoded
            .into_iter()
            .zip(targets)
            .map(|(encoded, target)| TrainItem { encoded, target })
            .collect())
    }
}

/// The targets of a batch, by task.
#[derive(Clone, Debug)]
pub enum TargetBatch {
    /// `[batch]` class indices.
    Class(Tensor<1, Int>),
    /// `[batch, num_labels]` 0/1 indicators.
    Multi(Tensor<2>),
    /// `[batch]` regression targets.
    Value(Tensor<1>),
}

/// Inputs and targets of one training or evaluation batch.
#[derive(Clone, Debug)]
pub struct TrainBatch {
    /// The padded inputs, `[batch, seq]`.
    pub inputs: TextBatch,
    /// The targets, by task.
    pub targets: TargetBatch,
    /// Multiplies the batch's loss before backward: `1 / batches` of its accumulation group,
    /// so an optimizer step follows the mean loss of its batches (1 outside training).
    pub loss_scale: f64,
    /// The batch's first and second half (by rows), each padded to its own longest input, when
    /// the batcher was asked for them ([`TrainBatcher::halves`]).
    pub halves: Option<Box<[TrainBatch; 2]>>,
}

/// How training examples are put into batches and ordered, each epoch.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Shuffled, cut into megabatches of up to 50 batches, each sorted by length (longest
    /// first) and served in turn (transformers' `LengthGroupedSampler`): least padding.
    GroupByLength,
    /// Shuffled each epoch.
    Random,
    /// In file order, every epoch.
    Sequential,
}

/// How many batches are sorted by length together: large enough to group similar lengths,
/// small enough to keep batches random (transformers' `LengthGroupedSampler` uses 50).
pub const MEGA_BATCH: usize = 50;

/// Evaluation batches: examples sorted by length within chunks of [`MEGA_BATCH`] batches (the
/// whole set when it is smaller), so padding is small and only one chunk is held at a time.
pub struct EvalBatches {
    examples: Arc<dyn Examples>,
    batch_size: usize,
    /// The chunk fetched last: (its number, its examples sorted by length).
    chunk: Mutex<Option<(usize, Arc<Vec<TrainItem>>)>>,
}

impl EvalBatches {
    /// Batches of `batch_size` over `examples`.
    pub fn new(examples: Arc<dyn Examples>, batch_size: usize) -> Self {
        Self {
            examples,
            batch_size: batch_size.max(1),
            chunk: Mutex::new(None),
        }
    }

    fn chunk(&self, number: usize) -> Result<Arc<Vec<TrainItem>>> {
        let mut cached = self
            .chunk
            .lock()
            .map_err(|_| Error::Input("poisoned".into()))?;
        if let Some((n, items)) = cached.as_ref()
            && *n == number
        {
            return Ok(items.clone());
        }
        let rows = self.batch_size * MEGA_BATCH;
        let indices: Vec<usize> =
            (number * rows..((number + 1) * rows).min(self.examples.len())).collect();
        let mut items = self.examples.fetch(&indices)?;
        items.sort_by_key(|item| item.encoded.input_ids.len());
        let items = Arc::new(items);
        *cached = Some((number, items.clone()));
        Ok(items)
    }
}

impl Dataset<Vec<TrainItem>> for EvalBatches {
    fn get(&self, index: usize) -> std::result::Result<Vec<TrainItem>, DatasetError> {
        let chunk = self.chunk(index / MEGA_BATCH).map_err(DatasetError::new)?;
        let start = (index % MEGA_BATCH) * self.batch_size;
        let end = (start + self.batch_size).min(chunk.len());
        Ok(chunk[start.min(end)..end].to_vec())
    }

    fn len(&self) -> usize {
        self.examples.len().div_ceil(self.batch_size)
    }
}

/// Pads inputs and stacks targets.
#[derive(Clone, Debug)]
pub struct TrainBatcher {
    /// How inputs are padded.
    pub padding: Padding,
    /// Width of multi-label targets (`[batch, num_labels]` 0/1 indicators).
    pub num_labels: usize,
    /// Also collate each half of a batch of two or more (`TrainBatch::halves`): the training
    /// step on the CPU runs them side by side.
    pub halves: bool,
}

impl Batcher<Vec<TrainItem>, TrainBatch> for TrainBatcher {
    fn batch(&self, groups: Vec<Vec<TrainItem>>, device: &Device) -> TrainBatch {
        let items: Vec<&TrainItem> = groups.iter().flatten().collect();
        let mut batch = self.stack(&items, device);
        if self.halves && items.len() >= 2 {
            let (first, second) = items.split_at(items.len() / 2);
            batch.halves = Some(Box::new([
                self.stack(first, device),
                self.stack(second, device),
            ]));
        }
        batch
    }
}

impl TrainBatcher {
    /// `items` padded and stacked, as one batch.
    fn stack(&self, items: &[&TrainItem], device: &Device) -> TrainBatch {
        let encoded: Vec<&Encoded> = items.iter().map(|i| &i.encoded).collect();
        let inputs = collate(&encoded, self.padding, device);
        let n = items.len();
        let targets = match &items[0].target {
            Target::Class(_) => TargetBatch::Class(Tensor::from_data(
                TensorData::new(
                    items
                        .iter()
                        .map(|i| match i.target {
                            Target::Class(c) => c as i64,
                            _ => 0,
                        })
                        .collect::<Vec<_>>(),
                    [n],
                ),
                device,
            )),
            Target::Value(_) => TargetBatch::Value(Tensor::from_data(
                TensorData::new(
                    items
                        .iter()
                        .map(|i| match i.target {
                            Target::Value(v) => v,
                            _ => 0.0,
                        })
                        .collect::<Vec<_>>(),
                    [n],
                ),
                device,
            )),
            Target::Multi(_) => {
                let mut hot = vec![0.0f32; n * self.num_labels];
                for (row, item) in items.iter().enumerate() {
                    if let Target::Multi(labels) = &item.target {
                        for &l in labels {
                            hot[row * self.num_labels + l] = 1.0;
                        }
                    }
                }
                TargetBatch::Multi(Tensor::from_data(
                    TensorData::new(hot, [n, self.num_labels]),
                    device,
                ))
            }
        };
        TrainBatch {
            inputs,
            targets,
            loss_scale: 1.0,
            halves: None,
        }
    }
}
