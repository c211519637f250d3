//! Which examples form each training batch, one epoch at a time: the epoch's order is drawn
//! when the stream enters it (4 bytes per example, nothing tokenized). With length grouping
//! the batches are those of transformers' `LengthGroupedSampler`: a seeded shuffle, cut into
//! megabatches of up to 50 batches, each sorted by length (longest first) and served in turn;
//! a megabatch is tokenized once, when its first batch is served, and held until its last.
//! (transformers also swaps the longest example into the first batch, which needs every
//! length up front; burnbert does not.)

use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::loader::{Examples, Sampling, TrainItem};
use crate::error::{Error, Result};

/// Batches per megabatch: 50, or fewer so that there are at least 4 (transformers' rule).
pub fn megabatch_batches(examples: usize, batch_size: usize) -> usize {
    (examples / (batch_size.max(1) * 4)).clamp(1, 50)
}

/// One epoch's order.
struct EpochOrder {
    epoch: usize,
    /// Example indices in training order (before sorting within megabatches).
    order: Vec<u32>,
    /// Length grouping: the megabatch served now, its examples sorted longest first.
    megabatch: Option<(usize, Vec<(usize, TrainItem)>)>,
}

/// A training batch: which examples, tokenized.
pub struct Served {
    /// The examples' indices.
    pub indices: Vec<usize>,
    /// The examples.
    pub items: Vec<TrainItem>,
}

/// The batches of every epoch of a run; see the module docs.
pub struct BatchOrder {
    examples: Arc<dyn Examples>,
    batch_size: usize,
    sampling: Sampling,
    /// Epoch `e` draws with `seed + e`.
    seed: u64,
    current: Mutex<Option<EpochOrder>>,
}

impl BatchOrder {
    /// The batches of `batch_size` over `examples`, formed and ordered by `sampling`.
    pub fn new(
        examples: Arc<dyn Examples>,
        batch_size: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Self {
        Self {
            examples,
            batch_size: batch_size.max(1),
            sampling,
            seed,
            current: Mutex::new(None),
        }
    }

    /// Batches per epoch.
    pub fn per_epoch(&self) -> usize {
        self.examples.len().div_ceil(self.batch_size)
    }

    /// Batch `batch` of epoch `epoch`.
    pub fn batch(&self, epoch: usize, batch: usize) -> Result<Served> {
        let mut current = self
            .current
            .lock()
            .map_err(|_| Error::Input("the batch order is poisoned".into()))?;
        if current.as_ref().is_none_or(|c| c.epoch != epoch) {
            *current = Some(self.draw(epoch));
        }
        let Some(order) = current.as_mut() else {
            unreachable!("drawn above")
        };
        let n = order.order.len();
        let start = batch * self.batch_size;
        let end = (start + self.batch_size).min(n);
        if self.sampling != Sampling::GroupByLength {
            let indices: Vec<usize> = order.order[start..end]
                .iter()
                .map(|&i| i as usize)
                .collect();
            let items = self.examples.fetch(&indices)?;
            return Ok(Served { indices, items });
        }
        let per_mega = megabatch_batches(n, self.batch_size) * self.batch_size;
        let mega = start / per_mega;
        if order.megabatch.as_ref().is_none_or(|(m, _)| *m != mega) {
            let (lo, hi) = (mega * per_mega, ((mega + 1) * per_mega).min(n));
            let indices: Vec<usize> = order.order[lo..hi].iter().map(|&i| i as usize).collect();
            let items = self.examples.fetch(&indices)?;
            let mut sorted: Vec<(usize, TrainItem)> = indices.into_iter().zip(items).collect();
            sorted.sort_by_key(|(_, item)| std::cmp::Reverse(item.encoded.input_ids.len()));
            order.megabatch = Some((mega, sorted));
        }
        let Some((_, sorted)) = &order.megabatch else {
            unreachable!("fetched above")
        };
        let offset = mega * per_mega;
        let (indices, items) = sorted[start - offset..end - offset].iter().cloned().unzip();
        Ok(Served { indices, items })
    }

    /// Draws epoch `epoch`'s order.
    fn draw(&self, epoch: usize) -> EpochOrder {
        let mut order: Vec<u32> = (0..self.examples.len() as u32).collect();
        if self.sampling != Sampling::Sequential {
            order.shuffle(&mut StdRng::seed_from_u64(
                self.seed.wrapping_add(epoch as u64),
            ));
        }
        EpochOrder {
            epoch,
            order,
            megabatch: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Encoded, Target, TrainItem};

    fn examples(lengths: &[usize]) -> Arc<dyn Examples> {
        let items: Vec<TrainItem> = lengths
            .iter()
            .map(|&n| TrainItem {
                encoded: Encoded {
                    input_ids: vec![1; n],
                    token_type_ids: vec![0; n],
                },
                target: Target::Class(0),
            })
            .collect();
        Arc::new(items)
    }

    fn epoch(order: &BatchOrder, epoch: usize) -> Vec<Vec<usize>> {
        (0..order.per_epoch())
            .map(|b| order.batch(epoch, b).unwrap().indices)
            .collect()
    }

    #[test]
    fn grouped_batches_cover_every_example_once_and_are_seeded() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 120 + 3).collect();
        let grouped = |seed| BatchOrder::new(examples(&lengths), 16, Sampling::GroupByLength, seed);
        let batches = epoch(&grouped(42), 0);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert_eq!(batches, epoch(&grouped(42), 0));
        assert_ne!(batches, epoch(&grouped(43), 0));
        // Epoch 1 of seed 42 is epoch 0 of seed 43.
        assert_eq!(epoch(&grouped(42), 1), epoch(&grouped(43), 0));
        // Within a batch lengths are close: far less padding than random batches.
        let padding = |bs: &[Vec<usize>]| -> usize {
            bs.iter()
                .map(|b| {
                    let max = b.iter().map(|&i| lengths[i]).max().unwrap();
                    b.iter().map(|&i| max - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        let random = epoch(
            &BatchOrder::new(examples(&lengths), 16, Sampling::Random, 42),
            0,
        );
        assert!(padding(&batches) * 4 < padding(&random));
    }

    #[test]
    fn grouped_batches_are_transformers_megabatches() {
        // transformers' get_length_grouped_indices without its longest-first swap: shuffle,
        // megabatches of min(n / (4 * batch), 50) batches, each sorted longest first.
        let lengths: Vec<usize> = (0..3300).map(|i| (i * 53) % 97 + 1).collect();
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(5));
        let expected: Vec<Vec<usize>> = order
            .chunks(32 * 25)
            .flat_map(|group| {
                let mut group = group.to_vec();
                group.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
                group.chunks(32).map(<[usize]>::to_vec).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(megabatch_batches(3300, 32), 25);
        let grouped = BatchOrder::new(examples(&lengths), 32, Sampling::GroupByLength, 5);
        assert_eq!(epoch(&grouped, 0), expected);
        // Resuming mid-epoch serves the same batch as the uninterrupted run.
        let resumed = BatchOrder::new(examples(&lengths), 32, Sampling::GroupByLength, 5);
        assert_eq!(resumed.batch(0, 60).unwrap().indices, expected[60]);
        assert_eq!(megabatch_batches(100_000, 32), 50);
        assert_eq!(megabatch_batches(10, 32), 1);
    }

    #[test]
    fn sequential_sampling_keeps_file_order() {
        let lengths = [3, 9, 1, 5, 7];
        let sequential = BatchOrder::new(examples(&lengths), 2, Sampling::Sequential, 1);
        assert_eq!(epoch(&sequential, 0), [vec![0, 1], vec![2, 3], vec![4]]);
        let random = BatchOrder::new(examples(&lengths), 2, Sampling::Random, 1);
        let mut all: Vec<usize> = epoch(&random, 0).into_iter().flatten().collect();
        assert_ne!(all, [0, 1, 2, 3, 4]);
        all.sort();
        assert_eq!(all, [0, 1, 2, 3, 4]);
    }
}
