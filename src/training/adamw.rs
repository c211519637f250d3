//! AdamW in one pass on every core where tensors live in host memory (the flex CPU backend).
//! Burn's AdamW makes about fifteen whole-tensor passes per parameter, each on one thread:
//! all-MiniLM-L6-v2's step spent ~200 ms there on a 2-core machine, as long as its forward
//! and backward on a short batch (README, Performance). Same state type (checkpoints resume
//! either way) and the same arithmetic per element, in the same order, so the results equal
//! Burn's bit for bit (compiled for the widest vector unit: its divisions and square roots
//! bound the pass). On tch, libtorch's ops in place, as PyTorch's own AdamW (to f32 rounding
//! Burn's); elsewhere (wgpu, ndarray, AMSGrad) Burn's own step runs.

use std::cell::Cell;

use burn::optim::{
    AdamW as BurnAdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::backend::wide;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

thread_local! {
    /// What the steps on this thread multiply each gradient by before they use it
    /// ([`with_grad_factor`]).
    static GRAD_FACTOR: Cell<f32> = const { Cell::new(1.0) };
}

/// Runs `step` (an optimizer step) with every gradient multiplied by `factor` as AdamW reads
/// it: global-norm clipping and loss unscaling folded into the update's one pass instead of a
/// pass of their own over all gradients. The same bits as scaling the gradients first.
pub fn with_grad_factor<R>(factor: f32, step: impl FnOnce() -> R) -> R {
    /// Puts the previous factor back, also when `step` panics.
    struct Restore(f32);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_FACTOR.set(self.0);
        }
    }
    let _restore = Restore(GRAD_FACTOR.replace(factor));
    step()
}

/// AdamW with PyTorch's update (decoupled weight decay, bias-corrected moments).
#[derive(Clone)]
pub struct AdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    /// Burn's AdamW with the same settings, for tensors off the host.
    burn: BurnAdamW,
}

impl AdamW {
    /// PyTorch's AdamW settings.
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let burn = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        Self {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            burn,
        }
    }
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let factor = GRAD_FACTOR.get();
        // f32 gradient and moments, no AMSGrad: ours runs, on the host (where `host_values`
        // says the parameter lives) or on tch.
        let ours = grad.dtype() == DType::F32
            && state.as_ref().is_none_or(|s| {
                s.momentum.max_moment_2.is_none() && s.momentum.moment_1.dtype() == DType::F32
            });
        // The parameter is shared (Burn's Learner keeps the model it steps from): read in place.
        let Some(param) = ours.then(|| crate::backend::host_values(&tensor)).flatten() else {
            if ours && crate::backend::on_tch_f32(&tensor) {
                return self.torch_step(lr, factor, tensor, grad, state);
            }
            let grad = if factor == 1.0 {
                grad
            } else {
                grad.mul_scalar(factor)
            };
            let grad = crate::backend::times_batch_factor(grad);
            return self.burn.step(lr, tensor, grad, state);
        };
        let (time, moments) = match state {
            Some(s) => (
                s.momentum.time + 1,
                Some((s.momentum.moment_1, s.momentum.moment_2)),
            ),
            None => (1, None),
        };
        let shape = tensor.shape();
        let mut grad = grad.into_data();
        let (mut m, mut v) = match moments {
            Some((m, v)) => (m.into_data(), v.into_data()),
            None => {
                let zeros = || TensorData::new(vec![0f32; shape.num_elements()], shape.clone());
                (zeros(), zeros())
            }
        };
        self.update(
            (lr, factor),
            time,
            &param,
            [&mut grad, &mut m, &mut v].map(|d| d.as_mut_slice::<f32>().expect("f32 tensor")),
        );
        drop(param);
        let tensor = |data: TensorData| Tensor::<D>::from_data(data, &device);
        let momentum = AdaptiveMomentumState::new(time, tensor(m), tensor(v));
        // The gradient's memory now holds the new parameter.
        (tensor(grad), Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        BurnAdamW::to_device(state, device)
    }
}

impl AdamW {
    /// [`Optimizer::step`] on tch: libtorch's ops in place ([`crate::backend::torch_adamw`]).
    fn torch_step<const D: usize>(
        &self,
        lr: LearningRate,
        factor: f32,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, Option<AdamWState<D>>) {
        let (time, moments) = match state {
            Some(s) => (
                s.momentum.time + 1,
                Some([s.momentum.moment_1, s.momentum.moment_2]),
            ),
            None => (1, None),
        };
        let step = crate::backend::AdamWStep {
            lr,
            factor,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time,
        };
        let [param, m, v] = crate::backend::torch_adamw(&step, &tensor, grad, moments);
        let momentum = AdaptiveMomentumState::new(time, m, v);
        (param, Some(AdamWState::new(momentum)))
    }

    /// Step `time` (1 for the first) of `param`, as Burn's AdamW computes it on the gradient
    /// `g·factor`, with the moments `[m, v]` updated in place and the new parameter written
    /// over the gradient `g`: with `g ← g·factor`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `g ← param·(1 − lr·λ) − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`.
    fn update(
        &self,
        (lr, factor): (LearningRate, f32),
        time: usize,
        param: &[f32],
        [g, m, v]: [&mut [f32]; 3],
    ) {
        let (beta_1, beta_2, epsilon) = (self.beta_1, self.beta_2, self.epsilon);
        let (factor_1, factor_2) = (1.0 - beta_1, 1.0 - beta_2);
        let time = time as i32;
        let (correction_1, correction_2) = (1f32 - beta_1.powi(time), 1f32 - beta_2.powi(time));
        let keep = (1.0 - lr * self.weight_decay as f64) as f32;
        let lr = lr as f32;
        g.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(param.par_chunks(CHUNK))
            .for_each(|(((g, m), v), param)| {
                wide::run(
                    #[inline(always)]
                    || {
                        for (((g, m), v), &p) in g.iter_mut().zip(m).zip(v).zip(param) {
                            let grad = *g * factor;
                            *m = *m * beta_1 + grad * factor_1;
                            *v = *v * beta_2 + grad * grad * factor_2;
                            let delta =
                                (*m / correction_1) / ((*v / correction_2).sqrt() + epsilon);
                            *g = p * keep - delta * lr;
                        }
                    },
                )
            });
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Five steps of ours and of Burn's AdamW from the same start, with and without weight
    /// decay, on a tensor large enough to be split across tasks, the last two with a gradient
    /// factor: the same bits.
    #[test]
    fn equals_burns_adamw_bit_for_bit() {
        let device = Device::flex();
        for weight_decay in [0.0, 0.01] {
            let ours = AdamW::new(0.9, 0.999, 1e-8, weight_decay);
            let theirs = ours.burn.clone();
            let start = Tensor::<2>::random([300, 257], Distribution::Default, &device);
            assert!(
                crate::backend::host_values(&start).is_some(),
                "ours must run on the host"
            );
            let (mut a, mut b) = (start.clone(), start);
            let (mut state_a, mut state_b) = (None, None);
            for step in 0..5 {
                let grad = Tensor::<2>::random([300, 257], Distribution::Normal(0.0, 1.0), &device);
                let lr = 1e-3 * (step + 1) as f64;
                // Steps 3 and 4 with the gradient scaled in the update: as Burn's on the
                // gradient scaled first.
                let factor = if step >= 3 { 0.37 } else { 1.0 };
                (a, state_a) = with_grad_factor(factor, || ours.step(lr, a, grad.clone(), state_a));
                (b, state_b) = theirs.step(lr, b, grad.mul_scalar(factor), state_b);
            }
            let differ = |x: Tensor<2>, y: Tensor<2>| {
                let (x, y) = (x.into_data(), y.into_data());
                let (x, y) = (x.as_slice::<f32>().unwrap(), y.as_slice::<f32>().unwrap());
                x.iter()
                    .zip(y)
                    .filter(|(x, y)| x.to_bits() != y.to_bits())
                    .count()
            };
            assert_eq!(differ(a, b), 0, "parameters, weight decay {weight_decay}");
            let (sa, sb) = (state_a.unwrap().momentum, state_b.unwrap().momentum);
            assert_eq!(sa.time, 5);
            assert_eq!(sa.time, sb.time);
            assert_eq!(differ(sa.moment_1, sb.moment_1), 0, "first moments");
            assert_eq!(differ(sa.moment_2, sb.moment_2), 0, "second moments");
        }
    }
}

#[cfg(all(test, feature = "tch"))]
#[allow(deprecated)] // burn-tch is deprecated upstream but is what we ship
mod torch_tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Five steps of ours on tch and of Burn's AdamW from the same start, with and without
    /// weight decay, the last two with a gradient factor: the same values to f32 rounding. A
    /// clone of the state held across a step (as a checkpoint being written holds one) keeps
    /// its values: the step writes in place only into memory nothing else holds.
    #[test]
    fn equals_burns_adamw_on_tch_and_leaves_shared_state_alone() {
        let device = Device::libtorch();
        for weight_decay in [0.0, 0.01] {
            let ours = AdamW::new(0.9, 0.999, 1e-8, weight_decay);
            let theirs = ours.burn.clone();
            let start = Tensor::<2>::random([300, 257], Distribution::Default, &device);
            assert!(crate::backend::on_tch_f32(&start));
            let start_values = start.to_data();
            let (mut a, mut b) = (start.clone(), start.clone());
            let (mut state_a, mut state_b) = (None, None);
            for step in 0..5 {
                let grad = Tensor::<2>::random([300, 257], Distribution::Normal(0.0, 1.0), &device);
                let lr = 1e-3 * (step + 1) as f64;
                let factor = if step >= 3 { 0.37 } else { 1.0 };
                let held: Option<AdamWState<2>> = state_a.clone();
                let held_values = held.as_ref().map(|s| s.momentum.moment_1.to_data());
                (a, state_a) = with_grad_factor(factor, || ours.step(lr, a, grad.clone(), state_a));
                (b, state_b) = theirs.step(lr, b, grad.mul_scalar(factor), state_b);
                if let (Some(held), Some(values)) = (held, held_values) {
                    held.momentum.moment_1.to_data().assert_eq(&values, true);
                }
            }
            let close = |x: Tensor<2>, y: Tensor<2>, what: &str| {
                let diff = (x - y.clone()).abs().max().into_scalar::<f32>();
                let scale = y.abs().max().into_scalar::<f32>();
                assert!(diff <= 1e-5 * scale, "{what}: {diff} of {scale}");
            };
            // The parameter is read, never written: the start is still what it was.
            start.to_data().assert_eq(&start_values, true);
            close(a, b, "parameters");
            let (sa, sb) = (state_a.unwrap().momentum, state_b.unwrap().momentum);
            assert_eq!(sa.time, 5);
            close(sa.moment_1, sb.moment_1, "first moments");
            close(sa.moment_2, sb.moment_2, "second moments");
        }
    }

    /// A parameter under test: its tensor and AdamW state, and which AdamW steps it.
    struct Param {
        tensor: Tensor<2>,
        state: Option<AdamWState<2>>,
        decays: bool,
    }

    /// Where a tch tensor's values start in memory.
    fn address(t: &Tensor<2>) -> usize {
        let t = t.clone().inner();
        t.try_into_primitive::<burn::backend::LibTorch>()
            .expect("a tch tensor")
            .tensor
            .data_ptr() as usize
    }

    /// Six optimizer steps over four parameters of two weight decay settings, interleaved (as
    /// Burn visits a model's), batched and one by one from the same start, the gradients times
    /// a factor from the third step on, at the fourth a parameter and its state replaced and a
    /// fourth parameter joining (stepped on its own: its step number differs): the same
    /// values. Clones of parameters and states held across a batched step (a checkpoint being
    /// written) keep theirs, and from the third step on the parameters of one setting lie one
    /// after the other in one buffer (the step ran batched, not one by one).
    #[test]
    fn batched_steps_equal_the_steps_one_by_one_and_leave_held_tensors_alone() {
        let device = Device::libtorch();
        let decay = AdamW::new(0.9, 0.999, 1e-8, 0.01);
        let plain = AdamW::new(0.9, 0.999, 1e-8, 0.0);
        let shapes = [
            ([300, 257], true),
            ([1, 257], false),
            ([64, 33], true),
            ([5, 10], true),
        ];
        let start: Vec<Tensor<2>> = shapes
            .iter()
            .map(|(shape, _)| Tensor::random(*shape, Distribution::Default, &device))
            .collect();
        let params = || -> Vec<Param> {
            (start.iter().zip(shapes))
                .map(|(t, (_, decays))| Param {
                    tensor: t.clone(),
                    state: None,
                    decays,
                })
                .collect()
        };
        let (mut batched, mut single) = (params(), params());
        let step = |p: &mut Param, lr: f64, grad: Tensor<2>| {
            let optim = if p.decays { &decay } else { &plain };
            let (tensor, state) = optim.step(lr, p.tensor.clone(), grad, p.state.take());
            (p.tensor, p.state) = (tensor, state);
        };
        for n in 0..6 {
            let lr = 1e-3 * (n + 1) as f64;
            let joined = if n >= 3 { 4 } else { 3 };
            let grads: Vec<Tensor<2>> = shapes[..joined]
                .iter()
                .map(|(shape, _)| Tensor::random(*shape, Distribution::Normal(0.0, 1.0), &device))
                .collect();
            let factor =
                (n >= 2).then(|| Tensor::<1>::from_floats([0.37 + 0.1 * n as f32], &device));
            if n == 3 {
                // The first parameter and its moments replaced (as on resuming): no longer
                // segments of the last step's buffers, so gathered.
                for p in [&mut batched[0], &mut single[0]] {
                    p.tensor = p.tensor.clone().mul_scalar(0.5);
                    let s = p.state.take().expect("a state after three steps").momentum;
                    let (m, v) = (s.moment_1.mul_scalar(0.5), s.moment_2.mul_scalar(0.25));
                    let momentum = AdaptiveMomentumState::new(s.time, m, v);
                    p.state = Some(AdamWState::new(momentum));
                }
            }
            let held: Vec<_> = batched
                .iter()
                .map(|p| (p.tensor.clone(), p.state.clone()))
                .collect();
            let held_values: Vec<_> = held
                .iter()
                .map(|(t, s)| {
                    (
                        t.to_data(),
                        s.as_ref().map(|s| s.momentum.moment_2.to_data()),
                    )
                })
                .collect();
            crate::backend::batched_torch_adamw(factor.clone(), || {
                for (p, grad) in batched.iter_mut().zip(&grads) {
                    step(p, lr, grad.clone());
                }
            });
            for (p, grad) in single.iter_mut().zip(grads) {
                let grad = match &factor {
                    Some(f) => grad * f.clone().reshape([1, 1]),
                    None => grad,
                };
                step(p, lr, grad);
            }
            for ((t, s), (tv, sv)) in held.iter().zip(&held_values) {
                t.to_data().assert_eq(tv, true);
                if let (Some(s), Some(sv)) = (s, sv) {
                    s.momentum.moment_2.to_data().assert_eq(sv, true);
                }
            }
            for (i, (a, b)) in batched.iter().zip(&single).take(joined).enumerate() {
                let close = |x: &Tensor<2>, y: &Tensor<2>, what: &str| {
                    let diff = (x.clone() - y.clone()).abs().max().into_scalar::<f32>();
                    let scale = y.clone().abs().max().into_scalar::<f32>();
                    assert!(
                        diff <= 1e-6 * scale,
                        "step {n}, parameter {i}, {what}: {diff} of {scale}"
                    );
                };
                close(&a.tensor, &b.tensor, "parameter");
                let (sa, sb) = (a.state.as_ref().unwrap(), b.state.as_ref().unwrap());
                assert_eq!(sa.momentum.time, sb.momentum.time);
                close(&sa.momentum.moment_1, &sb.momentum.moment_1, "first moment");
                close(
                    &sa.momentum.moment_2,
                    &sb.momentum.moment_2,
                    "second moment",
                );
            }
            if n >= 2 {
                let [a, c] = [&batched[0].tensor, &batched[2].tensor];
                assert_eq!(
                    address(a) + 300 * 257 * 4,
                    address(c),
                    "step {n}: not batched"
                );
            }
        }
    }
}
