//! `BertAttention` = `BertSelfAttention` (multi-head scaled dot-product with a padding mask)
//! followed by `BertSelfOutput` (dense, dropout, residual, LayerNorm).

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};

use super::dropout::dropout;
use burn::tensor::{Bool, Device, Tensor};

use super::config::{Architecture, ModelConfig};
use super::mixed::Compute;

/// Value added to the scores of padded keys; `exp` of it is 0 in f32 and f16.
const MASKED_SCORE: f32 = -1e4;

/// Builds a `Linear` (overwritten by checkpoint weights when they exist).
pub(crate) fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out).init(device)
}

/// A freshly initialised `Linear` the way transformers initialises one that the checkpoint
/// lacks: weights `N(0, initializer_range²)`, zero bias.
pub(crate) fn fresh_linear(
    d_in: usize,
    d_out: usize,
    config: &ModelConfig,
    device: &Device,
) -> Linear {
    normal_linear(d_in, d_out, config.initializer_range, true, device)
}

/// A `Linear` with weights `N(0, std²)` and a zero bias when `bias`.
pub(crate) fn normal_linear(
    d_in: usize,
    d_out: usize,
    std: f64,
    bias: bool,
    device: &Device,
) -> Linear {
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .with_bias(false)
        .init(device);
    layer.bias = bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device)));
    layer
}

/// Builds a LayerNorm with the model's epsilon.
pub(crate) fn layer_norm(config: &ModelConfig, device: &Device) -> LayerNorm {
    LayerNormConfig::new(config.hidden_size)
        .with_epsilon(config.layer_norm_eps)
        .init(device)
}

/// The post-norm residual block both attention and feed-forward outputs end with:
/// `LayerNorm(dropout(dense(x)) + residual)` with the LayerNorm's epsilon; `x` is
/// `[batch, seq, d_in]`, the rest `[batch, seq, hidden]`.
pub(crate) fn add_and_norm(
    (dense, compute): (&Linear, Compute),
    drop: &Dropout,
    (layer_norm, epsilon): (&LayerNorm, f64),
    x: Tensor<3>,
    residual: Tensor<3>,
) -> Tensor<3> {
    let sum = dropout(drop, compute.linear(dense, x)) + residual;
    crate::backend::ops::layer_norm(layer_norm, epsilon, sum)
}

/// Multi-head self-attention with separate `query`, `key`, `value` projections.
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    /// `[hidden, hidden]` query projection.
    pub query: Linear,
    /// `[hidden, hidden]` key projection.
    pub key: Linear,
    /// `[hidden, hidden]` value projection.
    pub value: Linear,
    /// Dropout on the attention probabilities.
    pub dropout: Dropout,
    /// Number of attention heads; each gets `hidden / num_heads` dimensions.
    #[module(skip)]
    pub num_heads: usize,
    /// The float type the matmuls compute in (mixed precision).
    #[module(skip)]
    pub compute: Compute,
}

impl BertSelfAttention {
    /// Freshly initialised projections sized by `config`.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        Self {
            query: linear(h, h, device),
            key: linear(h, h, device),
            value: linear(h, h, device),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            num_heads: config.num_attention_heads,
            compute: Compute::default(),
        }
    }

    /// - `queries`: `[batch, queries, hidden]`, the positions to attend from (`hidden` itself,
    ///   or its first position where only that one is needed)
    /// - `hidden`: `[batch, seq, hidden]`, the keys and values
    /// - `pad_mask`: `[batch, seq]`, `true` on padding
    /// - returns the context `[batch, queries, hidden]`
    pub fn forward(
        &self,
        queries: Tensor<3>,
        hidden: Tensor<3>,
        pad_mask: Tensor<2, Bool>,
    ) -> Tensor<3> {
        let c = self.compute;
        let heads =
            |layer: &Linear, x: &Tensor<3>| split_heads(c.linear(layer, x.clone()), self.num_heads);
        let q = heads(&self.query, &queries);
        let (k, v) = (heads(&self.key, &hidden), heads(&self.value, &hidden));
        let masks = [key_mask(pad_mask)];
        let scores = Scores::default();
        merge_heads(scaled_dot_product(
            c,
            [q, k, v],
            &masks,
            scores,
            &self.dropout,
        ))
    }
}

/// `[batch, seq]` padding (`true` on padding) -> `[batch, 1, 1, seq]`, the keys no query may see.
pub(crate) fn key_mask(pad_mask: Tensor<2, Bool>) -> Tensor<4, Bool> {
    let [batch, seq] = pad_mask.dims();
    pad_mask.reshape([batch, 1, 1, seq])
}

/// `[batch, seq, heads·head_dim]` -> `[batch, heads, seq, head_dim]`
pub(crate) fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [batch, seq, width] = x.dims();
    x.reshape([batch, seq, heads, width / heads])
        .swap_dims(1, 2)
}

/// `[batch, heads, seq, head_dim]` -> `[batch, seq, heads·head_dim]`
pub(crate) fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [batch, heads, seq, head_dim] = x.dims();
    x.swap_dims(1, 2).reshape([batch, seq, heads * head_dim])
}

/// How the scores of [`scaled_dot_product`] are formed beyond `q·kᵀ/√head_dim`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scores {
    /// Divides `q·kᵀ` instead of `√head_dim` (DeBERTa's `√(head_dim · scale_factor)`).
    pub scale: Option<f64>,
    /// `[batch, heads, seq, seq]` added to the scaled scores (DeBERTa's relative positions).
    pub bias: Option<Tensor<4>>,
}

/// Multi-head scaled dot-product attention, the one every family's self-attention ends in:
/// `dropout(softmax(q·kᵀ/scale + bias, hidden keys masked))·v`.
/// - `q`: `[batch, heads, queries, head_dim]`; `k`, `v`: `[batch, heads, seq, head_dim]`
/// - `masks`: at least one, each broadcastable to `[batch, heads, queries, seq]`, `true` where a
///   key is hidden from a query (padding; ModernBERT's local window)
/// - `scores`: the scale and bias (`Scores::default()`: `√head_dim`, none)
/// - returns `[batch, heads, queries, head_dim]`
///
/// Without autodiff (no dropout), the backend's fused attention runs where it computes these
/// scores right (flash kernels on CubeCL, flex's own, torch's SDPA on tch with the mask
/// inverted: see `fused_attention`); Burn's autodiff would fall back to these same ops. While
/// training on tch, torch's SDPA runs with its own dropout where there is one mask and no bias
/// (`ops::trained_attention`).
pub(crate) fn scaled_dot_product(
    c: Compute,
    [q, k, v]: [Tensor<4>; 3],
    masks: &[Tensor<4, Bool>],
    scores: Scores,
    drop: &Dropout,
) -> Tensor<4> {
    let [batch, heads, queries, head_dim] = q.dims();
    let seq = k.dims()[2];
    let device = q.device();
    let Scores { scale, bias } = scores;
    let with_bias = scale.is_some() || bias.is_some();
    let fused = (!device.is_autodiff())
        .then(|| crate::backend::fused_attention(&device, with_bias))
        .flatten();
    if let Some(sense) = fused {
        // The keys any mask hides, or (inverted before broadcasting) those every mask keeps.
        let keeps = sense == crate::backend::MaskSense::Keeps;
        let full = [batch, heads, queries, seq];
        let mask = masks
            .iter()
            .map(|m| {
                if keeps {
                    m.clone().bool_not()
                } else {
                    m.clone()
                }
                .expand(full)
            })
            .reduce(|a, b| if keeps { a.bool_and(b) } else { a.bool_or(b) })
            .expect("at least one mask");
        return c.attention([q, k, v], mask, bias, scale);
    }
    // Training on tch: torch's SDPA, dropout included (one padding mask, no bias).
    if masks.len() == 1 && !with_bias && crate::backend::ops::trains_fused_attention(&q) {
        let dropout = if drop.training.is_enabled() {
            drop.prob
        } else {
            0.0
        };
        return c.trained_attention([q, k, v], masks[0].clone(), dropout);
    }
    let scale = scale.unwrap_or((head_dim as f64).sqrt());
    let mut scores = c.matmul(q, k.swap_dims(2, 3)) / scale;
    if let Some(bias) = bias {
        scores = scores + bias;
    }
    for mask in masks {
        scores = scores.mask_fill(mask.clone(), MASKED_SCORE);
    }
    let probs = dropout(drop, crate::backend::ops::softmax(scores));
    c.matmul(probs, v)
}

/// Output projection of the attention block with residual connection and post-LayerNorm.
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    /// `[hidden, hidden]` output projection.
    pub dense: Linear,
    /// LayerNorm over the projection plus the residual.
    pub layer_norm: LayerNorm,
    /// Its epsilon (`layer_norm_eps`).
    #[module(skip)]
    pub layer_norm_eps: f64,
    /// Dropout on the projection (`hidden_dropout_prob`; none in DistilBERT).
    pub dropout: Dropout,
    /// The float type the matmuls compute in (mixed precision).
    #[module(skip)]
    pub compute: Compute,
}

impl BertSelfOutput {
    /// DistilBERT has no dropout after its attention output projection (`out_lin`); BERT and
    /// RoBERTa have `hidden_dropout_prob` there.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let dropout = match config.architecture {
            Architecture::DistilBert => 0.0,
            _ => config.hidden_dropout_prob,
        };
        Self {
            dense: linear(config.hidden_size, config.hidden_size, device),
            layer_norm: layer_norm(config, device),
            layer_norm_eps: config.layer_norm_eps,
            dropout: DropoutConfig::new(dropout).init(),
            compute: Compute::default(),
        }
    }

    /// `LayerNorm(dropout(dense(context)) + residual)`, all `[batch, seq, hidden]`.
    pub fn forward(&self, context: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        add_and_norm(
            (&self.dense, self.compute),
            &self.dropout,
            (&self.layer_norm, self.layer_norm_eps),
            context,
            residual,
        )
    }
}

/// Self-attention plus its output block.
#[derive(Module, Debug)]
pub struct BertAttention {
    /// transformers calls this `self`.
    pub self_attn: BertSelfAttention,
    /// Output projection, residual and LayerNorm.
    pub output: BertSelfOutput,
}

impl BertAttention {
    /// A freshly initialised attention block sized by `config`.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        Self {
            self_attn: BertSelfAttention::new(config, device),
            output: BertSelfOutput::new(config, device),
        }
    }

    /// `queries` `[batch, queries, hidden]` (rows of `hidden`) attending over `hidden`
    /// `[batch, seq, hidden]` -> `[batch, queries, hidden]`; `pad_mask` is `[batch, seq]`.
    pub fn forward(
        &self,
        queries: Tensor<3>,
        hidden: Tensor<3>,
        pad_mask: Tensor<2, Bool>,
    ) -> Tensor<3> {
        let context = self.self_attn.forward(queries.clone(), hidden, pad_mask);
        self.output.forward(context, queries)
    }
}
