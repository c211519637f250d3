//! Global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_`. Where tensors live in
//! host memory (the flex CPU backend) the norm and the scaling run on the host, on every core,
//! one pass each: Burn's ops take one thread and two passes per gradient, and the word
//! embeddings' gradient alone is 47 MB for all-MiniLM-L6-v2 (README, Performance).

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::backend::wide;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// The L2 norm of all gradients of `module` together (`[1]`), on the device; `None` without any.
pub fn global_norm<M: Module>(module: &M, grads: &mut GradientsParams) -> Option<Tensor<1>> {
    struct SumSquares<'a> {
        grads: &'a mut GradientsParams,
        total: Option<Tensor<1>>,
        on_host: f64,
        /// On tch, the gradients flattened (views): one libtorch norm per gradient, as
        /// `clip_grad_norm_` does, instead of three calls (GPU kernels) per gradient.
        flat: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let mut host_sum = 0.0;
            let on_host = with_host_values::<D>(self.grads, param.id, |values| {
                // Partial sums added in order: the same total however the chunks were scheduled.
                let partial: Vec<f64> = values.par_chunks(CHUNK).map(sum_squares).collect();
                host_sum = partial.iter().sum();
            });
            if let Some(device) = on_host {
                self.on_host += host_sum;
                self.total
                    .get_or_insert_with(|| Tensor::zeros([1], &device));
            } else if let Some(grad) = self.grads.get::<D>(param.id) {
                if crate::backend::on_tch_f32(&grad) {
                    // Its norm is taken with the others' after the visit.
                    let n = grad.shape().num_elements();
                    self.flat.push(grad.reshape([n]));
                    return;
                }
                add(&mut self.total, grad.powi_scalar(2).sum());
            }
        }
    }
    let mut sum = SumSquares {
        grads,
        total: None,
        on_host: 0.0,
        flat: Vec::new(),
    };
    module.visit(&mut sum);
    if !sum.flat.is_empty() {
        add(
            &mut sum.total,
            crate::backend::tch_global_norm(&sum.flat).powi_scalar(2),
        );
    }
    let on_host = sum.on_host;
    sum.total.map(|total| (total + on_host).sqrt())
}

/// `total ← total + sq` (`sq` alone when there is no total yet).
fn add(total: &mut Option<Tensor<1>>, sq: Tensor<1>) {
    *total = Some(match total.take() {
        Some(total) => total + sq,
        None => sq,
    });
}

/// `Σ g²` in f64, in 8 running sums (one AVX-512 register) so that it vectorizes.
fn sum_squares(values: &[f32]) -> f64 {
    wide::run(
        #[inline(always)]
        || wide::lane_sum::<f64, 8>(values, values, |g, _| f64::from(g) * f64::from(g)),
    )
}

/// Scales all gradients by `min(1, max_norm / (‖g‖₂ + 1e-6))` where `‖g‖₂` is the norm of all
/// gradients together, as `torch.nn.utils.clip_grad_norm_` does.
pub fn clip_global_norm<M: Module>(
    module: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> GradientsParams {
    match global_norm(module, &mut grads) {
        Some(norm) => scale_grads(module, grads, clip_factor(norm, max_norm)),
        None => grads,
    }
}

/// `min(1, max_norm / (norm + 1e-6))`, `[1]`.
pub(super) fn clip_factor(norm: Tensor<1>, max_norm: f64) -> Tensor<1> {
    (norm + 1e-6).recip().mul_scalar(max_norm).clamp_max(1.0)
}

/// Multiplies every gradient of `module` by `factor` (`[1]`): on the device, or in place on
/// the host.
pub(super) fn scale_grads<M: Module>(
    module: &M,
    mut grads: GradientsParams,
    factor: Tensor<1>,
) -> GradientsParams {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: Tensor<1>,
        host_factor: Option<f32>,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let factor = *self.host_factor.get_or_insert_with(|| {
                let device = self.factor.device();
                let host = crate::backend::cheap_host_access(&device);
                host.then(|| self.factor.clone().into_scalar::<f32>())
                    .unwrap_or(f32::NAN)
            });
            let scaled = !factor.is_nan()
                && with_host_values::<D>(self.grads, param.id, |values| {
                    values.par_chunks_mut(CHUNK).for_each(|c| {
                        wide::run(
                            #[inline(always)]
                            || c.iter_mut().for_each(|g| *g *= factor),
                        )
                    });
                })
                .is_some();
            if scaled {
                return;
            }
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                let factor = self.factor.clone().reshape([1; D]);
                self.grads.register::<D>(param.id, grad * factor);
            }
        }
    }
    module.visit(&mut Scale {
        grads: &mut grads,
        factor,
        host_factor: None,
    });
    grads
}

/// Runs `f` on the values of the gradient of `id` and puts it back, when it is an f32 tensor in
/// host memory (no copy: the gradient is taken out of `grads`), and gives its device; `None`
/// (nothing done) otherwise.
pub(super) fn with_host_values<const D: usize>(
    grads: &mut GradientsParams,
    id: ParamId,
    f: impl FnOnce(&mut [f32]),
) -> Option<Device> {
    let grad = grads.get::<D>(id)?;
    let device = grad.device();
    if grad.dtype() != DType::F32 || !crate::backend::cheap_host_access(&device) {
        return None;
    }
    drop(grad);
    let grad = grads.remove::<D>(id).expect("the gradient was just there");
    let mut data: TensorData = grad.into_data();
    f(data.as_mut_slice::<f32>().expect("an f32 tensor"));
    grads.register::<D>(id, Tensor::from_data(data, &device));
    Some(device)
}

#[cfg(test)]
mod tests {
    /// The 8-lane sum of squares counts every value once: lengths with and without a tail,
    /// only a tail, none.
    #[test]
    fn sum_squares_counts_every_value_once() {
        for n in [0usize, 1, 7, 8, 9, 100, 1027] {
            let values: Vec<f32> = (0..n).map(|j| (j % 13) as f32 - 6.5).collect();
            let expected: f64 = values.iter().map(|&g| f64::from(g) * f64::from(g)).sum();
            assert_eq!(super::sum_squares(&values), expected, "n = {n}");
        }
    }

    /// On tch the norm is taken of each flattened gradient, then of the norms: the norm of a
    /// rank-1 and a rank-2 gradient is the square root of the sum of all their squares, and a
    /// parameter without a gradient adds nothing.
    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)] // burn-tch is deprecated upstream but is what we ship
    fn the_norm_on_tch_counts_every_gradient_of_every_rank_once() {
        use burn::module::{Module, Param};
        use burn::optim::GradientsParams;
        use burn::tensor::{Device, Tensor, TensorData};

        #[derive(Module, Debug)]
        struct Two {
            a: Param<Tensor<1>>,
            b: Param<Tensor<2>>,
            c: Param<Tensor<1>>,
        }
        let device = Device::libtorch();
        let module = Two {
            a: Param::from_tensor(Tensor::zeros([3], &device)),
            b: Param::from_tensor(Tensor::zeros([2, 2], &device)),
            c: Param::from_tensor(Tensor::zeros([5], &device)),
        };
        let mut grads = GradientsParams::new();
        let a = vec![1.0f32, -2.0, 2.0];
        let b = vec![0.5f32, 0.5, -0.5, 3.5];
        grads.register::<1>(
            module.a.id,
            Tensor::from_data(TensorData::new(a, [3]), &device),
        );
        grads.register::<2>(
            module.b.id,
            Tensor::from_data(TensorData::new(b, [2, 2]), &device),
        );
        assert!(crate::backend::on_tch_f32(
            &grads.get::<1>(module.a.id).unwrap()
        ));
        let norm = super::global_norm(&module, &mut grads).unwrap();
        // 1 + 4 + 4 + 0.25 · 3 + 12.25 = 22
        let norm = norm.into_scalar::<f32>();
        assert!((norm - 22f32.sqrt()).abs() < 1e-6, "{norm}");
    }
}
