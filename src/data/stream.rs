//! The training stream: every epoch's length-grouped batches laid end to end and served to
//! Burn in windows that end at each evaluation (every epoch, and every `eval_steps` optimizer
//! steps when asked). Burn runs one of its "epochs" per window, so validation, checkpoints and
//! early stopping happen at every evaluation. The position in the stream survives `--resume`
//! and an early stop (Ctrl-C ends the window at the next optimizer step).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use burn::tensor::Device;

use super::loader::{Examples, Sampling, TrainBatch, TrainBatcher};
use super::order::BatchOrder;

/// Where training stands, shared by the stream, the metric logger, the renderer and Ctrl-C.
#[derive(Debug, Default)]
pub struct StreamState {
    position: AtomicUsize,
    examples: AtomicUsize,
    stop: AtomicBool,
    /// Why the run must end with an error (an artifact that could not be written).
    failure: Mutex<Option<String>>,
    /// Nanoseconds spent inside training windows (steps, not evaluations or checkpoints).
    train_nanos: AtomicU64,
    /// (start, end) of each window served by this process.
    windows: Mutex<Vec<(usize, usize)>>,
    /// Where the current window ends: its planned end, or the step where a stop ends it.
    window_end: AtomicUsize,
    /// Positions (batches served) where an optimizer step ends, ascending: every `accum`
    /// batches within an epoch and at each epoch end (a shorter last group, as Trainer).
    groups: Vec<usize>,
    /// Batches per epoch.
    pub per_epoch: usize,
    /// Optimizer steps of the whole run.
    pub total_steps: usize,
}

impl StreamState {
    /// Batches served so far, over all epochs.
    pub fn position(&self) -> usize {
        self.position.load(Ordering::SeqCst)
    }

    /// Optimizer steps taken so far: the accumulation groups the stream has served whole.
    pub fn steps(&self) -> usize {
        self.steps_at(self.position())
    }

    /// Training examples served so far (in this process).
    pub fn examples(&self) -> usize {
        self.examples.load(Ordering::SeqCst)
    }

    /// Seconds spent in training windows: from a window's first batch to the end of its last
    /// step (what Trainer's `train_samples_per_second` counts; evaluations and checkpoints not).
    pub fn train_seconds(&self) -> f64 {
        self.train_nanos.load(Ordering::SeqCst) as f64 * 1e-9
    }

    /// Epochs completed, fractional (`1.5` = halfway through the second).
    pub fn epochs(&self) -> f64 {
        self.position() as f64 / self.per_epoch.max(1) as f64
    }

    /// Where the `index`-th window of this process stood after `done` of its batches:
    /// (position, optimizer steps). Exact even when read later than the batch was served.
    pub fn within_window(&self, index: usize, done: usize) -> Option<(usize, usize)> {
        let windows = self.windows.lock().ok()?;
        let &(start, _) = windows.get(index)?;
        Some((start + done, self.steps_at(start + done)))
    }

    /// Optimizer steps completed once `position` batches are served.
    pub fn steps_at(&self, position: usize) -> usize {
        self.groups.partition_point(|&end| end <= position)
    }

    /// Whether an optimizer step ends after `position` batches.
    pub fn ends_step(&self, position: usize) -> bool {
        self.groups.binary_search(&position).is_ok()
    }

    /// The loss scale of the batch at `position`: one over the batches of its accumulation group.
    fn loss_scale(&self, position: usize) -> f64 {
        let group = self.steps_at(position);
        let start = group.checked_sub(1).map_or(0, |g| self.groups[g]);
        let end = self.groups.get(group).copied().unwrap_or(position + 1);
        1.0 / (end - start).max(1) as f64
    }

    /// Whether the `index`-th window of this process is complete after `done` batches.
    pub fn window_complete(&self, index: usize, done: usize) -> bool {
        let windows = self.windows.lock();
        windows.is_ok_and(|w| {
            w.get(index)
                .is_some_and(|&(start, end)| start + done == end)
        })
    }

    /// Ends the current window at the next optimizer step; training then evaluates,
    /// checkpoints and stops.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Ends the run as [`Self::request_stop`] does, and makes it fail with `message`.
    pub fn fail(&self, message: String) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(message);
        }
        self.request_stop();
    }

    /// The first failure reported with [`Self::fail`].
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok()?.clone()
    }

    /// Whether [`Self::request_stop`] was called.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Serves training batches window by window; see the module docs.
#[derive(Clone)]
pub struct TrainStream {
    /// Which examples form each batch of each epoch.
    order: Arc<BatchOrder>,
    /// Positions where a window ends (an evaluation), ascending; the last is the end.
    ends: Arc<Vec<usize>>,
    /// Seeds the device's random numbers (dropout) at the start of each window.
    seed: u64,
    batcher: TrainBatcher,
    device: Device,
    state: Arc<StreamState>,
    /// Devices the stream is dealt to, and which of them this copy serves: shard `i` of `n`
    /// serves batches `i`, `i + n`, … of each window (one batch per device per round).
    shards: usize,
    shard: usize,
    /// The shard [`DataLoader::slice`] hands out next.
    next_shard: Arc<AtomicUsize>,
}

/// How a run's batches are laid out: see [`TrainStream::new`].
#[derive(Clone, Copy, Debug)]
pub struct StreamLayout {
    /// Examples per batch.
    pub batch_size: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// How each epoch's batches are formed and ordered.
    pub sampling: Sampling,
    /// Base seed: epoch `e` orders its batches with `seed + e`; each window seeds dropout from it.
    pub seed: u64,
    /// Also evaluate every this many optimizer steps.
    pub eval_steps: Option<usize>,
    /// Batches per optimizer step.
    pub accum: usize,
    /// Ends training after this many optimizer steps (epochs then only shape the order).
    pub max_steps: Option<usize>,
    /// Devices training in parallel: each optimizer step takes `accum` batches per device.
    pub devices: usize,
}

/// Where optimizer steps end: every `accum` batches within each epoch, and at each epoch end
/// (Trainer's rule: an epoch's last group holds the remainder).
fn group_ends(per_epoch: usize, epochs: usize, accum: usize) -> Vec<usize> {
    (0..epochs)
        .flat_map(|epoch| {
            let base = epoch * per_epoch;
            (1..=per_epoch.div_ceil(accum)).map(move |k| base + (k * accum).min(per_epoch))
        })
        .collect()
}

/// Where evaluations fall: every epoch end, and after every `every` optimizer steps if given.
fn evaluation_points(
    groups: &[usize],
    per_epoch: usize,
    epochs: usize,
    every: Option<usize>,
) -> Vec<usize> {
    let mut ends: BTreeSet<usize> = (1..=epochs).map(|e| e * per_epoch).collect();
    if let Some(every) = every.filter(|&n| n > 0) {
        ends.extend(groups.iter().skip(every - 1).step_by(every).copied());
    }
    ends.into_iter().filter(|&p| p > 0).collect()
}

impl TrainStream {
    /// Epoch `e` orders its batches by `layout.sampling` with seed `seed + e`. Evaluations
    /// fall at every epoch end and, with `eval_steps`, every `eval_steps` optimizer steps.
    /// With `max_steps`, training ends after that many optimizer steps, as many epochs as it
    /// takes (the last one cut short, evaluated where it ends).
    pub fn new(
        examples: Arc<dyn Examples>,
        layout: StreamLayout,
        batcher: TrainBatcher,
        device: Device,
    ) -> Self {
        let order = BatchOrder::new(examples, layout.batch_size, layout.sampling, layout.seed);
        let per_epoch = order.per_epoch();
        let accum = layout.accum.max(1) * layout.devices.max(1);
        let mut epochs = layout.epochs;
        if let Some(steps) = layout.max_steps {
            epochs = (steps * accum).div_ceil(per_epoch.max(1)).max(1);
        }
        let mut groups = group_ends(per_epoch, epochs, accum);
        let mut ends = evaluation_points(&groups, per_epoch, epochs, layout.eval_steps);
        if let Some(steps) = layout.max_steps {
            groups.truncate(steps);
            let last = groups.last().copied().unwrap_or(0);
            ends.retain(|&end| end < last);
            ends.push(last);
        }
        Self {
            order: Arc::new(order),
            ends: Arc::new(ends),
            seed: layout.seed,
            batcher,
            device,
            shards: layout.devices.max(1),
            shard: 0,
            next_shard: Arc::new(AtomicUsize::new(0)),
            state: Arc::new(StreamState {
                per_epoch,
                total_steps: groups.len(),
                groups,
                ..StreamState::default()
            }),
        }
    }

    /// The shared progress of this stream.
    pub fn state(&self) -> Arc<StreamState> {
        self.state.clone()
    }

    /// Continues a run that stopped after `position` batches.
    pub fn resume_at(&self, position: usize) {
        self.state.position.store(position, Ordering::SeqCst);
    }

    /// Windows (evaluations) left from the current position.
    pub fn windows_left(&self) -> usize {
        let position = self.state.position();
        self.ends.iter().filter(|&&end| end > position).count()
    }

    fn window_end(&self, start: usize) -> usize {
        self.ends
            .iter()
            .copied()
            .find(|&end| end > start)
            .unwrap_or(start)
    }
}

/// One window of the stream, as one shard serves it.
struct Window<'a> {
    stream: &'a TrainStream,
    start: usize,
    end: usize,
    /// Where the next round (one batch per shard) starts.
    round: usize,
    /// Batches this shard served in the window.
    served: usize,
    /// When Burn asked for the window's first batch.
    started: Option<Instant>,
}

impl Iterator for Window<'_> {
    type Item = Result<TrainBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = self.stream;
        let state = &stream.state;
        // The first shard is asked first in every round: it decides where a stop ends the
        // window (at an optimizer step), and the others follow in the same round.
        if stream.shard == 0
            && self.round > self.start
            && state.ends_step(self.round)
            && state.stop_requested()
        {
            state.window_end.fetch_min(self.round, Ordering::SeqCst);
        }
        let end = self.end.min(state.window_end.load(Ordering::SeqCst));
        let position = self.round + stream.shard;
        if self.round >= end || position >= end {
            // Burn asks once more after the window's last step has run.
            if let Some(started) = self.started.take()
                && stream.shard == 0
            {
                let nanos = started.elapsed().as_nanos() as u64;
                stream.state.train_nanos.fetch_add(nanos, Ordering::SeqCst);
            }
            return None;
        }
        self.started.get_or_insert_with(Instant::now);
        let per_epoch = state.per_epoch.max(1);
        let group = match stream
            .order
            .batch(position / per_epoch, position % per_epoch)
        {
            Ok(served) => served.items,
            Err(e) => {
                state.fail(format!("reading training batch {position}: {e}"));
                return None;
            }
        };
        let examples = group.len();
        let mut batch = stream.batcher.batch(vec![group], &stream.device);
        batch.loss_scale = state.loss_scale(position);
        self.round += stream.shards;
        self.served += 1;
        state.position.fetch_max(position + 1, Ordering::SeqCst);
        state.examples.fetch_add(examples, Ordering::SeqCst);
        Some(Ok(batch))
    }
}

impl DataLoaderIterator<TrainBatch> for Window<'_> {
    fn progress(&self) -> Progress {
        let (shards, shard) = (self.stream.shards, self.stream.shard);
        Progress {
            items_processed: self.served,
            items_total: (self.end - self.start)
                .saturating_sub(shard)
                .div_ceil(shards),
            unit: Some("batches".into()),
        }
    }
}

impl DataLoader<TrainBatch> for TrainStream {
    /// The next window. The device's random generator (dropout masks) is seeded from the seed
    /// and the window's place in the run, so a run resumed at a window draws exactly what the
    /// uninterrupted run drew there.
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<TrainBatch> + 'a> {
        let start = self.state.position();
        let end = self.window_end(start);
        let window = self.ends.iter().filter(|&&e| e <= start).count() as u64;
        let seed = self.seed.wrapping_mul(1_000_003).wrapping_add(window);
        self.device.seed(seed);
        crate::model::seed_dropout(seed);
        if self.shard == 0 {
            self.state.window_end.store(end, Ordering::SeqCst);
            if let Ok(mut windows) = self.state.windows.lock() {
                windows.push((start, end));
            }
        }
        Box::new(Window {
            stream: self,
            start,
            end,
            round: start,
            served: 0,
            started: None,
        })
    }

    /// Batches in the next window.
    fn num_items(&self) -> usize {
        let start = self.state.position();
        self.window_end(start) - start
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<TrainBatch>> {
        Arc::new(Self {
            device: device.clone(),
            ..self.clone()
        })
    }

    /// The next shard: Burn's multi-device training slices the stream once per device, in
    /// device order, and each device is dealt every `devices`-th batch of each window (the
    /// range it asks for is ignored: windows change size, shards do not).
    fn slice(&self, _start: usize, _end: usize) -> Arc<dyn DataLoader<TrainBatch>> {
        let shard = self.next_shard.fetch_add(1, Ordering::SeqCst) % self.shards;
        Arc::new(Self {
            shard,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Encoded, Target, TrainItem};

    fn stream(n: usize, epochs: usize, eval_steps: Option<usize>, accum: usize) -> TrainStream {
        stream_with(n, layout(epochs, eval_steps, accum))
    }

    fn layout(epochs: usize, eval_steps: Option<usize>, accum: usize) -> StreamLayout {
        StreamLayout {
            batch_size: 4,
            epochs,
            sampling: Sampling::GroupByLength,
            seed: 7,
            eval_steps,
            accum,
            max_steps: None,
            devices: 1,
        }
    }

    fn stream_with(n: usize, layout: StreamLayout) -> TrainStream {
        let items = (0..n)
            .map(|i| TrainItem {
                encoded: Encoded {
                    input_ids: vec![1; 2 + i % 7],
                    token_type_ids: vec![0; 2 + i % 7],
                },
                target: Target::Class(i % 2),
            })
            .collect::<Vec<TrainItem>>();
        let batcher = TrainBatcher {
            padding: 0.into(),
            num_labels: 2,
            halves: false,
        };
        TrainStream::new(Arc::new(items), layout, batcher, Device::default())
    }

    fn drain(stream: &TrainStream) -> usize {
        let mut iter = stream.iter();
        let mut n = 0;
        while let Some(batch) = iter.next() {
            batch.unwrap();
            n += 1;
        }
        n
    }

    #[test]
    fn evaluations_fall_on_epoch_ends_and_every_n_steps() {
        let groups = group_ends(10, 2, 1);
        assert_eq!(evaluation_points(&groups, 10, 2, None), [10, 20]);
        assert_eq!(
            evaluation_points(&groups, 10, 2, Some(4)),
            [4, 8, 10, 12, 16, 20]
        );
        assert_eq!(evaluation_points(&groups, 10, 1, Some(30)), [10]);
    }

    #[test]
    fn accumulation_groups_restart_each_epoch_as_in_trainer() {
        // 5 batches an epoch, 2 per step: steps end at 2, 4, 5 | 7, 9, 10.
        let groups = group_ends(5, 2, 2);
        assert_eq!(groups, [2, 4, 5, 7, 9, 10]);
        // Every 2 steps: after steps 2, 4, 6 (positions 4, 7, 10), and the epoch ends.
        assert_eq!(evaluation_points(&groups, 5, 2, Some(2)), [4, 5, 7, 10]);
    }

    #[test]
    fn each_batch_is_scaled_by_its_own_group_size() {
        // 36 examples, batch 4: 9 batches, 2 per step; the last group holds one batch.
        let s = stream(36, 1, None, 2);
        let mut iter = s.iter();
        let scales: Vec<f64> = std::iter::from_fn(|| iter.next())
            .map(|b| b.unwrap().loss_scale)
            .collect();
        assert_eq!(scales, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0]);
        assert_eq!(s.state().total_steps, 5);
        assert_eq!(s.state().steps(), 5);
    }

    #[test]
    fn windows_cover_every_epoch_and_count_optimizer_steps() {
        // 40 examples, batch 4: 10 batches an epoch; 2 epochs; evaluate every 3 steps of 2.
        let s = stream(40, 2, Some(3), 2);
        let state = s.state();
        assert_eq!(state.per_epoch, 10);
        // Windows [0,6) [6,10) [10,12) [12,18) [18,20): 3 + 2 + 1 + 3 + 1 steps.
        assert_eq!(state.total_steps, 10);
        assert_eq!(s.windows_left(), 5);
        let sizes: Vec<usize> = (0..5).map(|_| drain(&s)).collect();
        assert_eq!(sizes, [6, 4, 2, 6, 2]);
        assert_eq!(state.steps(), 10);
        assert_eq!(state.examples(), 80);
        // Window 3 starts at batch 12 after 6 steps; its last batch ends step 9.
        assert_eq!(state.within_window(3, 3), Some((15, 7)));
        assert_eq!(state.within_window(4, 2), Some((20, 10)));
        assert_eq!(s.windows_left(), 0);
        assert_eq!(drain(&s), 0);
    }

    #[test]
    fn max_steps_ends_training_mid_epoch_and_evaluates_there() {
        // 40 examples, batch 4: 10 batches an epoch; 7 steps of 2 batches end in epoch 2.
        let s = stream_with(
            40,
            StreamLayout {
                max_steps: Some(7),
                ..layout(1, Some(3), 2)
            },
        );
        assert_eq!(s.state().total_steps, 7);
        // Evaluations after steps 3 (position 6), the epoch end (10), step 6 (12), the end (14).
        let sizes: Vec<usize> = (0..s.windows_left()).map(|_| drain(&s)).collect();
        assert_eq!(sizes, [6, 4, 2, 2]);
        assert_eq!((s.state().steps(), s.state().epochs()), (7, 1.4));
    }

    #[test]
    fn a_stop_ends_the_window_at_the_next_optimizer_step_and_resumes_there() {
        let s = stream(40, 1, None, 3);
        let state = s.state();
        let mut iter = s.iter();
        iter.next().unwrap().unwrap();
        state.request_stop();
        // Finishes the accumulation group of 3, then ends.
        assert!(iter.next().is_some() && iter.next().is_some());
        assert!(iter.next().is_none());
        drop(iter);
        assert_eq!((state.position(), state.steps()), (3, 1));
        // A fresh run resumed there serves the rest of the epoch in one window.
        let resumed = stream(40, 1, None, 3);
        resumed.resume_at(3);
        assert_eq!(resumed.windows_left(), 1);
        assert_eq!(drain(&resumed), 7);
        assert_eq!(resumed.state().steps(), 1 + 3);
        assert_eq!(resumed.state().total_steps, 4);
    }

    #[test]
    fn devices_are_dealt_alternate_batches_and_stop_together() {
        // 40 examples, batch 4: 10 batches; 2 devices and 2 batches each per step: 3 steps
        // (4 + 4 + 2 batches), every batch scaled by its group.
        let s = stream_with(
            40,
            StreamLayout {
                devices: 2,
                ..layout(1, None, 2)
            },
        );
        let state = s.state();
        assert_eq!(state.total_steps, 3);
        let single = stream(40, 1, None, 1);
        let expected: Vec<TrainBatch> = {
            let mut iter = single.iter();
            std::iter::from_fn(|| iter.next())
                .map(Result::unwrap)
                .collect()
        };
        let ids = |b: &TrainBatch| b.inputs.input_ids.clone().into_data();
        let (a, b) = (s.slice(0, 5), s.slice(5, 10));
        let (mut ia, mut ib) = (a.iter(), b.iter());
        for round in 0..5 {
            let (x, y) = (ia.next().unwrap().unwrap(), ib.next().unwrap().unwrap());
            assert_eq!(ids(&x), ids(&expected[2 * round]));
            assert_eq!(ids(&y), ids(&expected[2 * round + 1]));
            let scale = if round < 4 { 0.25 } else { 0.5 };
            assert_eq!((x.loss_scale, y.loss_scale), (scale, scale));
            if round == 2 {
                // A stop asked within a step ends the window where the step ends, for both.
                state.request_stop();
            }
            if round == 3 {
                assert!(ia.next().is_none() && ib.next().is_none());
                assert_eq!((state.position(), state.steps()), (8, 2));
                // Resumed, the last step is served.
                state.stop.store(false, Ordering::SeqCst);
                (ia, ib) = (a.iter(), b.iter());
            }
        }
        assert!(ia.next().is_none() && ib.next().is_none());
        assert_eq!((state.position(), state.steps()), (10, 3));
        // A stop at a step boundary ends the window before the next round.
        let s = stream_with(
            40,
            StreamLayout {
                devices: 2,
                ..layout(1, None, 1)
            },
        );
        let (a, b) = (s.slice(0, 5), s.slice(5, 10));
        let (mut ia, mut ib) = (a.iter(), b.iter());
        assert!(ia.next().is_some() && ib.next().is_some());
        s.state().request_stop();
        assert!(ia.next().is_none() && ib.next().is_none());
        assert_eq!(s.state().steps(), 1);
    }
}
