//! `BertAttention` = `BertSelfAttention` (multi-head scaled dot-product with a padding mask)
//! followed by `BertSelfOutput` (dense, dropout, residual, LayerNorm).

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};

use super::dropout::dropout;
use burn::tensor::activation::softmax;
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
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: config.initializer_range,
        })
        .init(device);
    layer.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    layer
}

/// Builds a LayerNorm with the model's epsilon.
pub(crate) fn layer_norm(config: &ModelConfig, device: &Device) -> LayerNorm {
    LayerNormConfig::new(config.hidden_size)
        .with_epsilon(config.layer_norm_eps)
        .init(device)
}

/// The post-norm residual block both attention and feed-forward outputs end with:
/// `LayerNorm(dropout(dense(x)) + residual)`; `x` is `[batch, seq, d_in]`, the rest `[batch, seq, hidden]`.
pub(crate) fn add_and_norm(
    (dense, compute): (&Linear, Compute),
    drop: &Dropout,
    layer_norm: &LayerNorm,
    x: Tensor<3>,
    residual: Tensor<3>,
) -> Tensor<3> {
    layer_norm.forward(dropout(drop, compute.linear(dense, x)) + residual)
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

    /// - `hidden`: `[batch, seq, hidden]`
    /// - `pad_mask`: `[batch, seq]`, `true` on padding
    /// - returns the context `[batch, seq, hidden]`
    pub fn forward(&self, hidden: Tensor<3>, pad_mask: Tensor<2, Bool>) -> Tensor<3> {
        let [batch, seq, width] = hidden.dims();
        let head_dim = width / self.num_heads;
        // [batch, seq, hidden] -> [batch, heads, seq, head_dim]
        let split = |x: Tensor<3>| {
            x.reshape([batch, seq, self.num_heads, head_dim])
                .swap_dims(1, 2)
        };
        let c = self.compute;
        let hidden_device = hidden.device();
        let training = hidden_device.is_autodiff();
        let q = split(c.linear(&self.query, hidden.clone()));
        let k = split(c.linear(&self.key, hidden.clone()));
        let v = split(c.linear(&self.value, hidden));

        if !training && crate::backend::fused_attention_works(&hidden_device) {
            // Inference (no dropout): the backend's fused attention (flash kernels on CubeCL,
            // flex's own; not tch, see `fused_attention_works`); Burn's autodiff would fall back
            // to these same ops.
            let mask =
                pad_mask
                    .reshape([batch, 1, 1, seq])
                    .expand([batch, self.num_heads, seq, seq]);
            return c
                .attention(q, k, v, mask)
                .swap_dims(1, 2)
                .reshape([batch, seq, width]);
        }
        let scores = c.matmul(q, k.swap_dims(2, 3)) / (head_dim as f64).sqrt();
        let scores = scores.mask_fill(pad_mask.reshape([batch, 1, 1, seq]), MASKED_SCORE);
        let probs = dropout(&self.dropout, softmax(scores, 3));
        c.matmul(probs, v)
            .swap_dims(1, 2)
            .reshape([batch, seq, width])
    }
}

/// Output projection of the attention block with residual connection and post-LayerNorm.
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    /// `[hidden, hidden]` output projection.
    pub dense: Linear,
    /// LayerNorm over the projection plus the residual.
    pub layer_norm: LayerNorm,
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
            dropout: DropoutConfig::new(dropout).init(),
            compute: Compute::default(),
        }
    }

    /// `LayerNorm(dropout(dense(context)) + residual)`, all `[batch, seq, hidden]`.
    pub fn forward(&self, context: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        add_and_norm(
            (&self.dense, self.compute),
            &self.dropout,
            &self.layer_norm,
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

    /// `[batch, seq, hidden]` -> `[batch, seq, hidden]`; `pad_mask` is `[batch, seq]`.
    pub fn forward(&self, hidden: Tensor<3>, pad_mask: Tensor<2, Bool>) -> Tensor<3> {
        let context = self.self_attn.forward(hidden.clone(), pad_mask);
        self.output.forward(context, hidden)
    }
}
