//! Feed-forward activations. Exact GELU goes through `backend::ops::gelu`: on the flex CPU
//! backend burnbert's own op, on every core (Burn's flex evaluates `erf` with libm's scalar
//! `erff`, one element at a time on one thread, which was 29% of a training run's CPU samples;
//! README, Performance).

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu_approximate, relu, tanh};

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

/// Applies a feed-forward activation; any shape.
pub fn activate<const D: usize>(activation: Activation, x: Tensor<D>) -> Tensor<D> {
    match activation {
        Activation::Gelu => crate::backend::ops::gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
        Activation::Relu => relu(x),
        Activation::Tanh => tanh(x),
    }
}
