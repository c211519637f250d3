//! Feed-forward activations. On the flex CPU backend exact GELU is computed here, on the host
//! and on every core, instead of by the backend: Burn's flex evaluates its `erf` (libm's scalar
//! `erff`) one element at a time on one thread, twice per training step (forward, then
//! backward), which was 29% of a training run's CPU samples (README, Performance).

use burn::tensor::activation::{gelu, gelu_approximate, relu, tanh};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// The feed-forward activation (`hidden_act` / `activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x·Φ(x)` with the error function (transformers' `gelu`).
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    /// ReLU (`relu`).
    Relu,
    /// tanh (`tanh`: BERT's pooler, DeBERTa-v2's default `conv_act`).
    Tanh,
}

impl Activation {
    /// transformers' `ACT2FN` name, or a one-line error naming the field and the choices.
    pub(crate) fn parse(name: &str, field: &str) -> std::result::Result<Self, String> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            "tanh" => Ok(Self::Tanh),
            _ => Err(format!(
                "unsupported {field} '{name}' (supported: gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, tanh)"
            )),
        }
    }
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Applies a feed-forward activation; any shape.
pub fn activate<const D: usize>(activation: Activation, x: Tensor<D>) -> Tensor<D> {
    match activation {
        Activation::Gelu => gelu_on_host(x),
        Activation::GeluTanh => gelu_approximate(x),
        Activation::Relu => relu(x),
        Activation::Tanh => tanh(x),
    }
}

/// `gelu(x) = x·Φ(x)` and its derivative `Φ(x) + x·φ(x)`, sharing one `exp(−x²/2)`: `erf` by
/// Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, about one f32 rounding of values near
/// 1), whose exponential is the same one the density `φ` needs.
fn gelu_and_slope(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let gauss = (-0.5 * x * x).exp();
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf = (1.0 - poly * gauss).copysign(x);
    let cdf = 0.5 * (1.0 + erf);
    let pdf = gauss * (0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2);
    (x * cdf, cdf + x * pdf)
}

/// Exact GELU; Burn's unless `x` is an f32 tensor in host memory (`backend::host_values`: flex),
/// then computed here on every core. Without autodiff, the values.
/// With autodiff, `x·g + c` where the constants `g` (the derivative at `x`) and
/// `c = gelu(x) − x·g` come from one host pass: the value is `gelu(x)` (to a rounding of
/// `x·g`) and the gradient that flows back is `grad·g`, as Burn's own `gelu_backward` gives.
fn gelu_on_host<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let shape = x.shape();
    // `x` stays in the graph: read in place.
    let Some(values) = crate::backend::host_values(&x) else {
        return gelu(x);
    };
    let host =
        |values: Vec<f32>| Tensor::<D>::from_data(TensorData::new(values, shape.clone()), &device);
    if !device.is_autodiff() {
        let out = values
            .par_iter()
            .with_min_len(CHUNK)
            .map(|&v| gelu_and_slope(v).0);
        return host(out.collect());
    }
    let (slope, offset): (Vec<f32>, Vec<f32>) = values
        .par_iter()
        .with_min_len(CHUNK)
        .map(|&v| {
            let (y, d) = gelu_and_slope(v);
            (d, y - v * d)
        })
        .unzip();
    drop(values); // before the product, which may then reuse `x`'s memory
    x * host(slope) + host(offset)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    /// Values and gradients equal Burn's own GELU (forward and backward) on the same inputs.
    #[test]
    fn host_gelu_equals_burns_gelu_in_value_and_gradient() {
        let device = Device::default().autodiff();
        let values: Vec<f32> = (0..40_000)
            .map(|i| (i as f32 - 20_000.0) / 2_000.0)
            .collect();
        let input = || {
            Tensor::<2>::from_data(TensorData::new(values.clone(), [200, 200]), &device)
                .require_grad()
        };
        let (ours, theirs) = (input(), input());
        if crate::backend::cheap_host_access(&device) {
            let read = crate::backend::host_values(&ours);
            assert!(
                read.is_some(),
                "on flex the host path must be the one tested"
            );
        }
        let y_ours = gelu_on_host(ours.clone());
        let y_theirs = gelu(theirs.clone());
        let diff = (y_ours.clone() - y_theirs.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-6, "value differs by {diff}");
        // Weights make the gradient depend on which element it flows to.
        let weights = Tensor::<2>::from_data(
            TensorData::new(
                (0..40_000).map(|i| (i % 7) as f32 - 3.0).collect(),
                [200, 200],
            ),
            &device,
        );
        let g_ours = (y_ours * weights.clone()).sum().backward();
        let g_theirs = (y_theirs * weights).sum().backward();
        let (g_ours, g_theirs) = (ours.grad(&g_ours).unwrap(), theirs.grad(&g_theirs).unwrap());
        let diff = (g_ours - g_theirs).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-6, "gradient differs by {diff}");
        // Inference (no autodiff) gives the values alone.
        let plain = Tensor::<2>::from_data(
            TensorData::new(values.clone(), [200, 200]),
            &Device::default(),
        );
        let diff = (gelu_on_host(plain.clone()) - gelu(plain))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-6, "inference value differs by {diff}");
    }
}
