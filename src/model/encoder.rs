//! `BertLayer` (attention, `BertIntermediate`, `BertOutput`) and `BertEncoder`, post-norm,
//! with dropout exactly where transformers has it.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, Linear};
use burn::tensor::{Bool, Device, Tensor};

use super::activation::{Activation, activate};
use super::attention::{BertAttention, add_and_norm, layer_norm, linear};
use super::config::{Architecture, ModelConfig};
use super::mixed::Compute;

/// First feed-forward projection with the activation (no dropout here, as in transformers).
#[derive(Module, Debug)]
pub struct BertIntermediate {
    /// `[hidden, intermediate]` projection.
    pub dense: Linear,
    /// The activation applied after the projection (`hidden_act`).
    #[module(skip)]
    pub activation: Activation,
    /// The float type the matmuls compute in (mixed precision).
    #[module(skip)]
    pub compute: Compute,
}

impl BertIntermediate {
    /// `[batch, seq, hidden]` -> `[batch, seq, intermediate]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        activate(self.activation, self.compute.linear(&self.dense, x))
    }
}

/// Second feed-forward projection, dropout, residual and post-LayerNorm.
#[derive(Module, Debug)]
pub struct BertOutput {
    /// `[intermediate, hidden]` projection.
    pub dense: Linear,
    /// LayerNorm over the projection plus the residual.
    pub layer_norm: LayerNorm,
    /// Its epsilon (`layer_norm_eps`).
    #[module(skip)]
    pub layer_norm_eps: f64,
    /// Dropout on the projection (`hidden_dropout_prob`).
    pub dropout: Dropout,
    /// The float type the matmuls compute in (mixed precision).
    #[module(skip)]
    pub compute: Compute,
}

impl BertOutput {
    /// `[batch, seq, intermediate]` + residual `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        add_and_norm(
            (&self.dense, self.compute),
            &self.dropout,
            (&self.layer_norm, self.layer_norm_eps),
            x,
            residual,
        )
    }
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Self-attention with its output block.
    pub attention: BertAttention,
    /// First feed-forward projection and activation.
    pub intermediate: BertIntermediate,
    /// Second feed-forward projection, residual and LayerNorm.
    pub output: BertOutput,
}

impl BertLayer {
    /// A freshly initialised block sized by `config`.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        Self {
            attention: BertAttention::new(config, device),
            intermediate: BertIntermediate {
                dense: linear(config.hidden_size, config.intermediate_size, device),
                activation: config.hidden_act,
                compute: Compute::default(),
            },
            output: BertOutput {
                dense: linear(config.intermediate_size, config.hidden_size, device),
                layer_norm: layer_norm(config, device),
                layer_norm_eps: config.layer_norm_eps,
                // ALBERT has no dropout on its feed-forward output (`ffn_output`).
                dropout: DropoutConfig::new(match config.architecture {
                    Architecture::Albert => 0.0,
                    _ => config.hidden_dropout_prob,
                })
                .init(),
                compute: Compute::default(),
            },
        }
    }

    /// Makes every matmul of the block compute in `compute`.
    pub fn set_compute(&mut self, compute: Compute) {
        self.attention.self_attn.compute = compute;
        self.attention.output.compute = compute;
        self.intermediate.compute = compute;
        self.output.compute = compute;
    }

    /// `[batch, seq, hidden]` -> `[batch, seq, hidden]`; `pad_mask` is `[batch, seq]`.
    pub fn forward(&self, hidden: Tensor<3>, pad_mask: Tensor<2, Bool>) -> Tensor<3> {
        self.forward_queries(hidden.clone(), hidden, pad_mask)
    }

    /// The block's output at the positions of `queries` alone (`[batch, queries, hidden]`, rows
    /// of `hidden`), attending over all of `hidden` `[batch, seq, hidden]`: every part of the
    /// block but the keys and values works row by row.
    pub fn forward_queries(
        &self,
        queries: Tensor<3>,
        hidden: Tensor<3>,
        pad_mask: Tensor<2, Bool>,
    ) -> Tensor<3> {
        let attended = self.attention.forward(queries, hidden, pad_mask);
        let inner = self.intermediate.forward(attended.clone());
        self.output.forward(inner, attended)
    }
}

/// The stack of transformer blocks.
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// The distinct blocks, in order (`num_hidden_groups` of them; one per step but ALBERT's).
    pub layer: Vec<BertLayer>,
    /// Steps run (`num_hidden_layers`): step `i` runs block `i · blocks / steps` (ALBERT's
    /// groups; block `i` elsewhere).
    #[module(skip)]
    pub steps: usize,
}

impl BertEncoder {
    /// `num_hidden_groups` freshly initialised blocks run over `num_hidden_layers` steps.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        Self {
            layer: (0..config.num_hidden_groups)
                .map(|_| BertLayer::new(config, device))
                .collect(),
            steps: config.num_hidden_layers,
        }
    }

    /// `[batch, seq, hidden]` -> `[batch, seq, hidden]`; `pad_mask` is `[batch, seq]`, `true` on padding.
    pub fn forward(&self, hidden: Tensor<3>, pad_mask: Tensor<2, Bool>) -> Tensor<3> {
        self.run(hidden, pad_mask, false)
    }

    /// The final state of the first position alone, `[batch, 1, hidden]` (all that BERT-family
    /// heads read): the last step computes its queries, feed-forward and norms for that
    /// position only, about five sixths of a step's arithmetic less, the same values.
    pub fn forward_first_token(&self, hidden: Tensor<3>, pad_mask: Tensor<2, Bool>) -> Tensor<3> {
        self.run(hidden, pad_mask, true)
    }

    fn run(&self, mut hidden: Tensor<3>, pad_mask: Tensor<2, Bool>, first_only: bool) -> Tensor<3> {
        let blocks = self.layer.len();
        let steps = self.steps.max(blocks);
        for step in 0..steps {
            let layer = &self.layer[step * blocks / steps];
            hidden = if first_only && step + 1 == steps {
                layer.forward_queries(first_position(hidden.clone()), hidden, pad_mask.clone())
            } else {
                layer.forward(hidden, pad_mask.clone())
            };
        }
        hidden
    }
}

/// `[batch, seq, hidden]` -> `[batch, 1, hidden]`, the first ([CLS] / `<s>`) position.
pub(crate) fn first_position(hidden: Tensor<3>) -> Tensor<3> {
    let [batch, _, width] = hidden.dims();
    hidden.slice([0..batch, 0..1, 0..width])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn layer(json: &str) -> BertLayer {
        let config = ModelConfig::from_json_str(json, Path::new("config.json")).unwrap();
        BertLayer::new(&config, &Device::default())
    }

    /// Dropout sits where transformers has it: DistilBERT's attention output (`out_lin`) has
    /// none, BERT's attention output has `hidden_dropout_prob`.
    #[test]
    fn dropout_after_the_attention_output_follows_the_architecture() {
        let distil = layer(
            r#"{"model_type":"distilbert","vocab_size":10,"dim":8,"n_layers":1,"n_heads":2,
            "hidden_dim":16,"max_position_embeddings":32,"dropout":0.2,"attention_dropout":0.3}"#,
        );
        assert_eq!(distil.attention.output.dropout.prob, 0.0);
        assert_eq!(distil.attention.self_attn.dropout.prob, 0.3);
        assert_eq!(distil.output.dropout.prob, 0.2);
        let bert = layer(
            r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
            "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":32,
            "hidden_dropout_prob":0.2,"attention_probs_dropout_prob":0.3}"#,
        );
        assert_eq!(bert.attention.output.dropout.prob, 0.2);
        assert_eq!(bert.attention.self_attn.dropout.prob, 0.3);
        assert_eq!(bert.output.dropout.prob, 0.2);
    }
}
