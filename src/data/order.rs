//! Which examples form each training batch, one epoch at a time: the epoch's order is drawn
//! when the stream enters it (4 bytes per example, nothing tokenized), and with length
//! grouping a group of [`MEGA_BATCH`] batches is tokenized and sorted by length the first time
//! one of its batches is served. The batches are those of transformers' `LengthGroupedSampler`
//! (shuffle, sort by length within groups of 50 batches, shuffle the batches), drawn with the
//! epoch's seed.

use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::loader::{Examples, MEGA_BATCH, Sampling};
use crate::error::{Error, Result};

/// One epoch's order.
struct EpochOrder {
    epoch: usize,
    /// Example indices in training order; with length grouping each group of
    /// `MEGA_BATCH * batch_size` is sorted (longest first) once it is first used.
    order: Vec<u32>,
    /// Length grouping: the batches' ids in training order (id / `MEGA_BATCH` = its group).
    batch_ids: Vec<u32>,
    /// Length grouping: whether each group is sorted yet.
    sorted: Vec<bool>,
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

    /// The examples batches are drawn from.
    pub fn examples(&self) -> &Arc<dyn Examples> {
        &self.examples
    }

    /// Batches per epoch.
    pub fn per_epoch(&self) -> usize {
        self.examples.len().div_ceil(self.batch_size)
    }

    /// The example indices of batch `batch` of epoch `epoch`.
    pub fn batch(&self, epoch: usize, batch: usize) -> Result<Vec<usize>> {
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
        let (start, len) = match self.sampling {
            Sampling::GroupByLength => {
                let id = order.batch_ids[batch] as usize;
                let group = id / MEGA_BATCH;
                let rows = self.batch_size * MEGA_BATCH;
                let (lo, hi) = (group * rows, ((group + 1) * rows).min(order.order.len()));
                if !order.sorted[group] {
                    let chunk: Vec<usize> =
                        order.order[lo..hi].iter().map(|&i| i as usize).collect();
                    let lengths = self.examples.lengths(&chunk)?;
                    let mut pairs: Vec<(u32, usize)> =
                        order.order[lo..hi].iter().copied().zip(lengths).collect();
                    pairs.sort_by_key(|&(_, len)| std::cmp::Reverse(len));
                    for (slot, (i, _)) in order.order[lo..hi].iter_mut().zip(pairs) {
                        *slot = i;
                    }
                    order.sorted[group] = true;
                }
                (lo + (id % MEGA_BATCH) * self.batch_size, hi)
            }
            _ => (batch * self.batch_size, order.order.len()),
        };
        let end = (start + self.batch_size).min(len);
        Ok(order.order[start..end]
            .iter()
            .map(|&i| i as usize)
            .collect())
    }

    /// Draws epoch `epoch`'s order.
    fn draw(&self, epoch: usize) -> EpochOrder {
        let seed = self.seed.wrapping_add(epoch as u64);
        let n = self.examples.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        let (mut batch_ids, mut sorted) = (Vec::new(), Vec::new());
        match self.sampling {
            Sampling::Sequential => {}
            Sampling::Random => order.shuffle(&mut StdRng::seed_from_u64(seed)),
            Sampling::GroupByLength => {
                order.shuffle(&mut StdRng::seed_from_u64(seed));
                batch_ids = (0..self.per_epoch() as u32).collect();
                batch_ids.shuffle(&mut StdRng::seed_from_u64(seed));
                sorted = vec![false; self.per_epoch().div_ceil(MEGA_BATCH)];
            }
        }
        EpochOrder {
            epoch,
            order,
            batch_ids,
            sorted,
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
            .map(|b| order.batch(epoch, b).unwrap())
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
    fn grouped_batches_are_transformers_megabatches_in_shuffled_order() {
        // The batches, drawn whole as transformers' LengthGroupedSampler does and then
        // shuffled, are the ones served batch by batch.
        let lengths: Vec<usize> = (0..3300).map(|i| (i * 53) % 97 + 1).collect();
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(5));
        let mut expected: Vec<Vec<usize>> = order
            .chunks(32 * MEGA_BATCH)
            .flat_map(|group| {
                let mut group = group.to_vec();
                group.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
                group.chunks(32).map(<[usize]>::to_vec).collect::<Vec<_>>()
            })
            .collect();
        expected.shuffle(&mut StdRng::seed_from_u64(5));
        let grouped = BatchOrder::new(examples(&lengths), 32, Sampling::GroupByLength, 5);
        assert_eq!(epoch(&grouped, 0), expected);
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
