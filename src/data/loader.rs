//! Burn data loading for training: tokenized examples, length-grouped batches, and the
//! batcher that pads them and stacks the targets.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::batcher::{TextBatch, collate};
use super::labels::Target;
use super::table::RawRow;
use super::tokenizer::{Encoded, Padding, TextTokenizer};
use crate::error::Result;

/// A tokenized, labelled example.
#[derive(Clone, Debug)]
pub struct TrainItem {
    /// The example's tokens, unpadded.
    pub encoded: Encoded,
    /// What the example's label becomes for the loss.
    pub target: Target,
}

/// Tokenizes `rows` in parallel and pairs each with its target.
pub fn train_items(
    tokenizer: &TextTokenizer,
    rows: &[RawRow],
    targets: Vec<Target>,
) -> Result<Vec<TrainItem>> {
    let encoded = tokenizer.encode_batch(
        rows.iter()
            .map(|r| (r.text.as_str(), r.text_pair.as_deref())),
    )?;
    Ok(encoded
        .into_iter()
        .zip(targets)
        .map(|(encoded, target)| TrainItem { encoded, target })
        .collect())
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
}

/// How training examples are put into batches and ordered, each epoch.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Shuffled, then sorted by length within groups of 50 batches, batches shuffled
    /// (transformers' `LengthGroupedSampler`): least padding.
    GroupByLength,
    /// Shuffled each epoch.
    Random,
    /// In file order, every epoch.
    Sequential,
}

/// How many batches are sorted by length together: large enough to group similar lengths,
/// small enough to keep batches random (transformers' `LengthGroupedSampler` uses 50).
const MEGA_BATCH: usize = 50;

/// Training batches of similar length: a seeded shuffle, then within each group of
/// `MEGA_BATCH` batches the examples are sorted by length before slicing.
pub fn length_grouped_batches(lengths: &[usize], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    order
        .chunks(batch_size * MEGA_BATCH)
        .flat_map(|group| {
            let mut group = group.to_vec();
            group.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
            group
                .chunks(batch_size)
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One epoch's training batches (example indices, in training order) for `sampling`, drawn
/// with `seed`.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    sampling: Sampling,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    match sampling {
        Sampling::GroupByLength => {
            let mut batches = length_grouped_batches(lengths, batch_size, seed);
            batches.shuffle(&mut rng);
            return batches;
        }
        Sampling::Random => order.shuffle(&mut rng),
        Sampling::Sequential => {}
    }
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// Evaluation batches: examples sorted by length, so padding is minimal.
pub fn sorted_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// A dataset whose items are whole pre-formed batches (for a loader with batch size 1).
pub struct BatchedDataset {
    items: Arc<Vec<TrainItem>>,
    batches: Vec<Vec<usize>>,
}

impl BatchedDataset {
    /// A dataset of `items` whose item `i` is the examples of `batches[i]`.
    pub fn new(items: Arc<Vec<TrainItem>>, batches: Vec<Vec<usize>>) -> Self {
        Self { items, batches }
    }
}

impl Dataset<Vec<TrainItem>> for BatchedDataset {
    fn get(&self, index: usize) -> Result<Vec<TrainItem>, burn::data::dataset::DatasetError> {
        Ok(self.batches[index]
            .iter()
            .map(|&i| self.items[i].clone())
            .collect())
    }

    fn len(&self) -> usize {
        self.batches.len()
    }
}

/// Pads inputs and stacks targets.
#[derive(Clone, Debug)]
pub struct TrainBatcher {
    /// How inputs are padded.
    pub padding: Padding,
    /// Width of multi-label targets (`[batch, num_labels]` 0/1 indicators).
    pub num_labels: usize,
}

impl Batcher<Vec<TrainItem>, TrainBatch> for TrainBatcher {
    fn batch(&self, groups: Vec<Vec<TrainItem>>, device: &Device) -> TrainBatch {
        let items: Vec<&TrainItem> = groups.iter().flatten().collect();
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_batches_cover_every_example_once_and_are_seeded() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 120 + 3).collect();
        let batches = length_grouped_batches(&lengths, 16, 42);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert_eq!(batches, length_grouped_batches(&lengths, 16, 42));
        assert_ne!(batches, length_grouped_batches(&lengths, 16, 43));
        // Within a batch lengths are close: far less padding than random batches.
        let padding = |bs: &[Vec<usize>]| -> usize {
            bs.iter()
                .map(|b| {
                    let max = b.iter().map(|&i| lengths[i]).max().unwrap();
                    b.iter().map(|&i| max - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        let random: Vec<Vec<usize>> = (0..1000)
            .collect::<Vec<_>>()
            .chunks(16)
            .map(<[usize]>::to_vec)
            .collect();
        assert!(padding(&batches) * 4 < padding(&random));
    }
}
