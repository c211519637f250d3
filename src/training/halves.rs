//! A training step as two half batches side by side (`TrainBatch::halves`, made where the
//! model trains on the CPU's cores): forward and backward of each half on its own graph and
//! core, the loss of each weighted by its share of the rows (under class weights, of the
//! rows' weights), the gradients summed. The cores then meet once a step instead of at every
//! op, and each half is padded to its own longest input (README, Performance).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::train::TrainOutput;
use rayon::prelude::*;

use super::grads::with_host_values;
use super::step::{StepOutput, Trainee};
use crate::backend::wide;
use crate::data::{TargetBatch, TrainBatch};
use crate::model::dropout;

/// Values per parallel task of the gradient sum (whole rows of a matrix).
const CHUNK: usize = 1 << 15;

/// One step of `trainee` on the two halves of a batch with `targets` (the whole batch's),
/// its loss multiplied by `scale`: the gradients and output of the whole batch's step, up to
/// rounding. Each half draws its dropout masks from a key of its own, drawn here in order, so
/// a run repeats whichever core takes which half.
pub(super) fn step(
    trainee: &Trainee,
    [first, second]: [TrainBatch; 2],
    targets: TargetBatch,
    scale: f64,
) -> TrainOutput<StepOutput> {
    let shares = shares(trainee, [&first, &second]);
    let keys = [dropout::next_key(), dropout::next_key()];
    let mut twin = trainee.clone();
    twin.model = new_leaves(twin.model);
    let half = |trainee: &Trainee, batch: TrainBatch, share: f64, key: u64| {
        dropout::with_stream(key, || {
            let output = trainee.forward(batch);
            let grads = (output.loss.clone() * (scale * share)).backward();
            (GradientsParams::from_grads(grads, trainee), output)
        })
    };
    let ((grads, a), (twin_grads, b)) = rayon::join(
        || half(trainee, first, shares[0], keys[0]),
        || half(&twin, second, shares[1], keys[1]),
    );
    let loss = a.loss.detach() * shares[0] + b.loss.detach() * shares[1];
    let logits = Tensor::cat(vec![a.logits.detach(), b.logits.detach()], 0);
    TrainOutput {
        grads: sum(trainee, grads, twin_grads),
        item: StepOutput {
            loss,
            logits,
            targets,
        },
    }
}

/// Each half's share of the whole batch's loss: of its rows, or under class weights of its
/// rows' class weights, since the weighted loss is normalised by their sum (as torch's).
fn shares(trainee: &Trainee, halves: [&TrainBatch; 2]) -> [f64; 2] {
    let weight = |batch: &TrainBatch| match (&trainee.class_weights, &batch.targets) {
        (Some(weights), TargetBatch::Class(classes)) => classes
            .clone()
            .into_data()
            .convert::<i64>()
            .iter::<i64>()
            .map(|class| f64::from(weights[class as usize]))
            .sum(),
        _ => batch.inputs.input_ids.dims()[0] as f64,
    };
    let [first, second] = halves.map(weight);
    [first / (first + second), second / (first + second)]
}

/// `module` with each parameter a new leaf of the autodiff graph (same values, ids and
/// gradient setting): a forward pass through it builds a graph of its own, which a backward
/// pass on another thread does not share.
fn new_leaves<M: Module>(module: M) -> M {
    struct Leaves;
    impl ModuleMapper for Leaves {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|tensor| {
                let tracked = tensor.is_require_grad();
                let leaf = tensor.detach();
                if tracked { leaf.require_grad() } else { leaf }
            })
        }
    }
    module.map(&mut Leaves)
}

/// `a + b`, parameter by parameter of `module` (one only: kept as it is).
fn sum<M: Module>(module: &M, mut a: GradientsParams, mut b: GradientsParams) -> GradientsParams {
    struct Sum<'a> {
        a: &'a mut GradientsParams,
        b: &'a mut GradientsParams,
    }
    impl ModuleVisitor for Sum<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let Some(other) = self.b.remove::<D>(param.id) else {
                return;
            };
            let row = if D >= 2 { param.dims()[D - 1] } else { 1 };
            let mut other = Some(other);
            // In place on the host where the gradient is there (as the norm and the scaling).
            with_host_values::<D>(self.a, param.id, |values| {
                let other = other.take().expect("added once").into_data();
                match other.as_slice::<f32>() {
                    Ok(other) => add_rows(values, other, row),
                    Err(_) => unreachable!("both halves' gradients of a parameter share its dtype"),
                }
            });
            // Taken when it was added in place.
            let Some(other) = other else {
                return;
            };
            let total = match self.a.remove::<D>(param.id) {
                Some(grad) => grad + other,
                None => other,
            };
            self.a.register::<D>(param.id, total);
        }
    }
    module.visit(&mut Sum {
        a: &mut a,
        b: &mut b,
    });
    a
}

/// `acc += other`, rows of `row` values at a time, on every core; a row of `other` that is all
/// zeros is skipped (the same sums: `x + 0 = x`). A half batch's word-embedding gradient is
/// zero but for the rows of the few hundred tokens it holds.
fn add_rows(acc: &mut [f32], other: &[f32], row: usize) {
    assert_eq!(acc.len(), other.len(), "gradients of one shape");
    let row = row.max(1);
    let chunk = (CHUNK / row).max(1) * row;
    acc.par_chunks_mut(chunk)
        .zip(other.par_chunks(chunk))
        .for_each(|(acc, other)| {
            wide::run(
                #[inline(always)]
                || {
                    for (acc, other) in acc.chunks_mut(row).zip(other.chunks(row)) {
                        if other.iter().any(|&v| v != 0.0) {
                            acc.iter_mut().zip(other).for_each(|(x, &y)| *x += y);
                        }
                    }
                },
            )
        });
}

#[cfg(test)]
mod tests {
    /// Every value of the sum is the plain sum: rows of zeros (of both signs) skipped or not,
    /// a NaN carried, a tail shorter than a row.
    #[test]
    fn adding_rows_equals_the_plain_sum() {
        let row = 5;
        let n = 3 * super::CHUNK + 7;
        let acc: Vec<f32> = (0..n).map(|i| (i % 11) as f32 - 5.5).collect();
        let mut other: Vec<f32> = (0..n)
            .map(|i| {
                if (i / row) % 3 == 0 {
                    (i % 7) as f32
                } else {
                    0.0
                }
            })
            .collect();
        other[row + 1] = -0.0;
        other[4 * row + 2] = f32::NAN;
        other[n - 1] = 2.5;
        let mut ours = acc.clone();
        super::add_rows(&mut ours, &other, row);
        for (i, ((&o, &a), &b)) in ours.iter().zip(&acc).zip(&other).enumerate() {
            let plain = a + b;
            assert!(
                o.to_bits() == plain.to_bits(),
                "value {i}: {o} vs {a} + {b} = {plain}"
            );
        }
    }
}
