//! Which evaluation is the best: one rule ([`improves`]) picks the saved model, the checkpoint
//! that is kept and the reference of early stopping's patience.

use std::sync::Arc;

use burn::train::EarlyStoppingStrategy;
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::{Aggregate, EventStoreClient, Split};

use super::logger::History;
use crate::data::StreamState;
use crate::metrics::higher_is_better;

/// Whether `value` is a better evaluation than `best` (transformers' rule for the best model):
/// strictly higher (or lower) than the best so far, so ties keep the earlier evaluation; NaN
/// and infinities never are.
pub fn improves(value: f64, best: Option<f64>, higher: bool) -> bool {
    value.is_finite()
        && match best {
            None => true,
            Some(best) if higher => value > best,
            Some(best) => value < best,
        }
}

/// The best evaluation of `values` (evaluation, value) by [`improves`]: the rule that picks the
/// saved model, the checkpoint Burn keeps and the reference of patience.
pub fn best_of(
    values: impl IntoIterator<Item = (usize, f64)>,
    higher: bool,
) -> Option<(usize, f64)> {
    values.into_iter().fold(None, |best, (evaluation, value)| {
        if improves(value, best.map(|(_, b)| b), higher) {
            Some((evaluation, value))
        } else {
            best
        }
    })
}

/// Whether training should stop after the evaluations `values` (in order), as transformers'
/// `EarlyStoppingCallback`: an evaluation counts as an improvement when it beats the best
/// before it ([`improves`]) by more than `min_delta`; `patience` evaluations in a row without
/// one stop the run. `min_delta` never changes which evaluation is the best.
pub fn patience_exhausted(values: &[f64], higher: bool, min_delta: f64, patience: usize) -> bool {
    let mut best = None;
    let mut waited = 0;
    for &value in values {
        let beats = improves(value, best, higher);
        let by_enough = best.is_none_or(|b: f64| (value - b).abs() > min_delta);
        if beats && by_enough {
            waited = 0;
        } else {
            waited += 1;
        }
        if beats {
            best = Some(value);
        }
    }
    waited >= patience
}

/// Early stopping on the validation metric `name` (see [`patience_exhausted`]), and the end of
/// a run stopped with Ctrl-C.
#[derive(Clone)]
pub(super) struct Patience {
    pub name: String,
    pub higher: bool,
    pub patience: Option<usize>,
    pub min_delta: f64,
    /// A Ctrl-C stop ends training after the evaluation and checkpoint in progress.
    pub progress: Arc<StreamState>,
}

impl EarlyStoppingStrategy for Patience {
    fn should_stop(&mut self, epoch: usize, store: &EventStoreClient) -> bool {
        if self.progress.stop_requested() {
            return true;
        }
        let Some(patience) = self.patience else {
            return false;
        };
        let values: Vec<f64> = validation_values(store, &self.name, epoch)
            .map(|(_, v)| v)
            .collect();
        patience_exhausted(&values, self.higher, self.min_delta, patience)
    }
}

/// The validation values of metric `name` for evaluations `1..=epoch`, those before a resume
/// included (Burn reads them back from its logs).
fn validation_values<'a>(
    store: &'a EventStoreClient,
    name: &'a str,
    epoch: usize,
) -> impl Iterator<Item = (usize, f64)> + 'a {
    (1..=epoch).filter_map(move |e| {
        Some((
            e,
            store.find_metric(name, e, Aggregate::Mean, &Split::Valid)?,
        ))
    })
}

/// Keeps the checkpoint of the best evaluation by [`best_of`] (the same rule as the saved model
/// and patience) and deletes the one it replaces.
pub(super) struct KeepBest {
    pub name: String,
    pub higher: bool,
    pub kept: Option<usize>,
}

impl CheckpointingStrategy for KeepBest {
    fn checkpointing(
        &mut self,
        epoch: usize,
        store: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        let best =
            best_of(validation_values(store, &self.name, epoch), self.higher).map(|(e, _)| e);
        let mut actions = Vec::new();
        if let Some(kept) = self.kept
            && Some(kept) != best
        {
            actions.push(CheckpointingAction::Delete(kept));
        }
        if best == Some(epoch) {
            actions.push(CheckpointingAction::Save);
        }
        self.kept = best;
        actions
    }
}

/// The best evaluation in the validation history by [`best_of`].
pub fn best_epoch(history: &History, key: &str) -> Option<(usize, f64)> {
    let values = history
        .get("valid")?
        .iter()
        .filter_map(|(&evaluation, values)| Some((evaluation, *values.get(key)?)));
    best_of(values, higher_is_better(key))
}
