//! Mixed precision: the matmuls (linear layers and attention) compute in bf16 or f16 through
//! casts, everything else (embeddings, LayerNorm, softmax, activations, the loss) and every
//! parameter stay f32. Autodiff returns each cast's gradient in its input's type, so parameter
//! gradients and the optimizer state are f32 too (master weights).

use burn::nn::Linear;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, FloatDType, Tensor};

/// The float type matmuls compute in; `None` (the default): the tensors' own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compute(pub Option<FloatDType>);

impl Compute {
    /// `layer(x)`, `[.., d_in]` -> `[.., d_out]`: input, weight and bias cast to the compute
    /// type, the result cast back to `x`'s.
    pub fn linear<const D: usize>(self, layer: &Linear, x: Tensor<D>) -> Tensor<D> {
        let Some(dtype) = self.0 else {
            return crate::backend::ops::linear(layer, x);
        };
        let back = x.dtype();
        let weight = layer.weight.val().cast(dtype);
        let bias = layer.bias.as_ref().map(|b| b.val().cast(dtype));
        burn::tensor::module::linear(x.cast(dtype), weight, bias).cast(back)
    }

    /// `a.matmul(b)` in the compute type, returned in `a`'s.
    pub fn matmul<const D: usize>(self, a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
        let Some(dtype) = self.0 else {
            return crate::backend::ops::matmul(a, b);
        };
        let back = a.dtype();
        a.cast(dtype).matmul(b.cast(dtype)).cast(back)
    }

    /// `softmax(q kᵀ / scale + bias, masked) v` as one fused op, in the compute type, returned
    /// in `q`'s. `q`, `k`, `v`: `[batch, heads, seq, head_dim]`; `mask`: `[batch, heads, seq,
    /// seq]`, `true` where a key is padding; `bias`: `[batch, heads, seq, seq]`; `scale`:
    /// `None` for √head_dim.
    pub fn attention(
        self,
        [q, k, v]: [Tensor<4>; 3],
        mask: Tensor<4, Bool>,
        bias: Option<Tensor<4>>,
        scale: Option<f64>,
    ) -> Tensor<4> {
        let options = AttentionModuleOptions {
            scale: scale.map(|s| 1.0 / s),
            ..AttentionModuleOptions::default()
        };
        let Some(dtype) = self.0 else {
            return attention(q, k, v, Some(mask), bias, options);
        };
        let back = q.dtype();
        attention(
            q.cast(dtype),
            k.cast(dtype),
            v.cast(dtype),
            Some(mask),
            bias.map(|b| b.cast(dtype)),
            options,
        )
        .cast(back)
    }

    /// [`crate::backend::ops::trained_attention`] in the compute type, returned in `q`'s.
    pub fn trained_attention(
        self,
        [q, k, v]: [Tensor<4>; 3],
        hidden: Tensor<4, Bool>,
        dropout: f64,
    ) -> Tensor<4> {
        let Some(dtype) = self.0 else {
            return crate::backend::ops::trained_attention([q, k, v], hidden, dropout);
        };
        let back = q.dtype();
        let qkv = [q, k, v].map(|t| t.cast(dtype));
        crate::backend::ops::trained_attention(qkv, hidden, dropout).cast(back)
    }
}
