//! ModernBERT (`modernbert`), one struct per transformers sub-module: `ModernBertEmbeddings`
//! (token embeddings, no positions), pre-norm `ModernBertEncoderLayer`s whose attention
//! (`Wqkv`, rotary positions) is global every `global_attn_every_n_layers`-th layer and local
//! (a `local_attention`-token window) otherwise, the GeGLU `ModernBertMLP`, `final_norm`, and
//! `ModernBertForSequenceClassification`'s head (`cls` or `mean` pooling → dense → activation
//! → norm → dropout → classifier).
//!
//! transformers unpads the batch; here padded keys are masked, and the mean pooling averages
//! real tokens only, so padding changes no prediction (the parity tests run padded batches).

use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::activation::Activation;
use super::activation::activate;
use super::attention::{
    Scores, key_mask, merge_heads, normal_linear, scaled_dot_product, split_heads,
};
use super::classifier::{ClassifierOutput, first_token};
use super::config::{FamilyConfig, ModelConfig};
use super::dropout::dropout;
use super::mixed::Compute;
use crate::backend::ops::{embedding, layer_norm, mul};

pub(crate) mod config;

pub use config::{ModernBertConfig, Pooling};

/// The ModernBERT settings of a ModernBERT `config`.
fn family(config: &ModelConfig) -> &ModernBertConfig {
    match &config.family {
        FamilyConfig::ModernBert(family) => family,
        _ => unreachable!(
            "a ModernBERT module built from a {:?} config",
            config.architecture
        ),
    }
}

/// `LayerNorm` of `hidden_size` with ModernBERT's `norm_eps` and `norm_bias`.
fn norm(config: &ModelConfig, device: &Device) -> LayerNorm {
    LayerNormConfig::new(config.hidden_size)
        .with_epsilon(config.layer_norm_eps)
        .with_bias(family(config).norm_bias)
        .init(device)
}

fn linear(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out).with_bias(bias).init(device)
}

/// `ModernBertEmbeddings`: `drop(norm(tok_embeddings(ids)))`.
#[derive(Module, Debug)]
pub struct ModernBertEmbeddings {
    /// `[vocab_size, hidden]`
    pub tok_embeddings: Embedding,
    /// LayerNorm over the embeddings.
    pub norm: LayerNorm,
    /// `embedding_dropout`.
    pub drop: Dropout,
    /// The norms' epsilon (`norm_eps`).
    #[module(skip)]
    pub norm_eps: f64,
}

impl ModernBertEmbeddings {
    /// `[batch, seq]` ids -> `[batch, seq, hidden]`
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        dropout(
            &self.drop,
            layer_norm(
                &self.norm,
                self.norm_eps,
                embedding(&self.tok_embeddings, input_ids),
            ),
        )
    }
}

/// `ModernBertAttention`: fused `Wqkv`, rotary positions on queries and keys, global or local
/// attention, `Wo` and its dropout.
#[derive(Module, Debug)]
pub struct ModernBertAttention {
    /// `[hidden, 3·hidden]` query, key and value projections in one (transformers' `Wqkv`).
    pub wqkv: Linear,
    /// `[hidden, hidden]` output projection (`Wo`).
    pub wo: Linear,
    /// `attention_dropout` on the probabilities.
    pub attn_drop: Dropout,
    /// `attention_dropout` on the output (`out_drop`).
    pub out_drop: Dropout,
    /// Attention heads.
    #[module(skip)]
    pub num_heads: usize,
    /// Rotary base (`global_rope_theta` or `local_rope_theta`).
    #[module(skip)]
    pub rope_theta: f64,
    /// `None` for global attention; `Some(w)`: keys at most `w` positions away.
    #[module(skip)]
    pub window: Option<usize>,
    /// The float type the matmuls compute in (mixed precision).
    #[module(skip)]
    pub compute: Compute,
}

/// What every layer of one attention kind (global, or local with its window) takes in a forward
/// pass, built once for all of them: the rotary tables and the masks.
#[derive(Clone, Debug)]
pub struct AttentionInputs {
    /// `[1, 1, seq, head_dim]` cosines and sines of the rotary angles.
    pub rotary: (Tensor<4>, Tensor<4>),
    /// The padded keys `[batch, 1, 1, seq]` and, for local attention, the keys outside the
    /// window `[1, 1, seq, seq]`; `true` where hidden.
    pub masks: Vec<Tensor<4, Bool>>,
}

impl ModernBertAttention {
    /// This layer's [`AttentionInputs`]; `pad_mask`: `[batch, seq]`, `true` on padding.
    pub fn inputs(&self, pad_mask: Tensor<2, Bool>, head_dim: usize) -> AttentionInputs {
        let [_, seq] = pad_mask.dims();
        let device = pad_mask.device();
        let mut masks = vec![key_mask(pad_mask)];
        if let Some(window) = self.window {
            masks.push(outside_window(seq, window, &device));
        }
        AttentionInputs {
            rotary: rotary(seq, head_dim, self.rope_theta, &device),
            masks,
        }
    }

    /// `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, hidden: Tensor<3>, inputs: &AttentionInputs) -> Tensor<3> {
        let c = self.compute;
        let qkv = c.linear(&self.wqkv, hidden).chunk(3, 2);
        let [q, k, v] = <[Tensor<3>; 3]>::try_from(qkv).expect("three chunks");
        let (q, k, v) = (
            split_heads(q, self.num_heads),
            split_heads(k, self.num_heads),
            split_heads(v, self.num_heads),
        );
        let (cos, sin) = inputs.rotary.clone();
        let q = rotate(q, cos.clone(), sin.clone());
        let k = rotate(k, cos, sin);
        let context = scaled_dot_product(
            c,
            [q, k, v],
            &inputs.masks,
            Scores::default(),
            &self.attn_drop,
        );
        dropout(&self.out_drop, c.linear(&self.wo, merge_heads(context)))
    }

    /// The attention kind: layers with the same one share their [`AttentionInputs`].
    fn kind(&self) -> (u64, Option<usize>) {
        (self.rope_theta.to_bits(), self.window)
    }
}

/// `cos` and `sin` of the rotary angles as transformers computes them in f32, each
/// `[1, 1, seq, head_dim]`: position `p`, frequency `i < head_dim/2` at `p·θ^(−2i/head_dim)`,
/// repeated for the second half.
fn rotary(seq: usize, head_dim: usize, theta: f64, device: &Device) -> (Tensor<4>, Tensor<4>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(seq * head_dim);
    let mut sin = Vec::with_capacity(seq * head_dim);
    for p in 0..seq {
        for i in 0..head_dim {
            let angle = p as f32 * inv_freq[i % half];
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    let tensor = |values| Tensor::from_data(TensorData::new(values, [1, 1, seq, head_dim]), device);
    (tensor(cos), tensor(sin))
}

/// `x·cos + rotate_half(x)·sin`, `rotate_half([x1, x2]) = [−x2, x1]`; `x`: `[batch, heads, seq,
/// head_dim]`, `cos`/`sin` broadcast over batch and heads.
fn rotate(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    let [batch, heads, seq, head_dim] = x.dims();
    let half = head_dim / 2;
    let x1 = x.clone().slice([0..batch, 0..heads, 0..seq, 0..half]);
    let x2 = x
        .clone()
        .slice([0..batch, 0..heads, 0..seq, half..head_dim]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos + rotated * sin
}

/// `[1, 1, seq, seq]`, `true` where key `j` is more than `window` positions from query `i`.
fn outside_window(seq: usize, window: usize, device: &Device) -> Tensor<4, Bool> {
    let far: Vec<bool> = (0..seq * seq)
        .map(|n| (n / seq).abs_diff(n % seq) > window)
        .collect();
    Tensor::from_data(TensorData::new(far, [1, 1, seq, seq]), device)
}

/// `ModernBertMLP`: `Wo(drop(act(input) · gate))` with `[input, gate] = Wi(x)` (GeGLU).
#[derive(Module, Debug)]
pub struct ModernBertMlp {
    /// `[hidden, 2·intermediate]`, the input half first, then the gate.
    pub wi: Linear,
    /// `[intermediate, hidden]`
    pub wo: Linear,
    /// `mlp_dropout`.
    pub drop: Dropout,
    /// `hidden_activation`.
    #[module(skip)]
    pub activation: Activation,
    /// The float type the matmuls compute in (mixed precision).
    #[module(skip)]
    pub compute: Compute,
}

impl ModernBertMlp {
    /// `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let c = self.compute;
        let mut halves = c.linear(&self.wi, x).chunk(2, 2);
        let gate = halves.pop().expect("two chunks");
        let input = halves.pop().expect("two chunks");
        let inner = dropout(&self.drop, mul(activate(self.activation, input), gate));
        c.linear(&self.wo, inner)
    }
}

/// `ModernBertEncoderLayer`: `h + attn(attn_norm(h))`, then `h + mlp(mlp_norm(h))`; the first
/// layer's `attn_norm` is the identity.
#[derive(Module, Debug)]
pub struct ModernBertEncoderLayer {
    /// Absent in layer 0.
    pub attn_norm: Option<LayerNorm>,
    /// Self-attention.
    pub attn: ModernBertAttention,
    /// Norm before the MLP.
    pub mlp_norm: LayerNorm,
    /// GeGLU feed-forward.
    pub mlp: ModernBertMlp,
    /// The norms' epsilon (`norm_eps`).
    #[module(skip)]
    pub norm_eps: f64,
}

impl ModernBertEncoderLayer {
    fn new(config: &ModelConfig, index: usize, device: &Device) -> Self {
        let family = family(config);
        let h = config.hidden_size;
        let global = family.global_layers[index];
        Self {
            attn_norm: (index > 0).then(|| norm(config, device)),
            attn: ModernBertAttention {
                wqkv: linear(h, 3 * h, family.attention_bias, device),
                wo: linear(h, h, family.attention_bias, device),
                attn_drop: DropoutConfig::new(family.attention_dropout).init(),
                out_drop: DropoutConfig::new(family.attention_dropout).init(),
                num_heads: config.num_attention_heads,
                rope_theta: if global {
                    family.global_rope_theta
                } else {
                    family.local_rope_theta
                },
                window: (!global).then_some(family.local_attention / 2),
                compute: Compute::default(),
            },
            mlp_norm: norm(config, device),
            mlp: ModernBertMlp {
                wi: linear(h, 2 * config.intermediate_size, family.mlp_bias, device),
                wo: linear(config.intermediate_size, h, family.mlp_bias, device),
                drop: DropoutConfig::new(family.mlp_dropout).init(),
                activation: config.hidden_act,
                compute: Compute::default(),
            },
            norm_eps: config.layer_norm_eps,
        }
    }

    /// `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, hidden: Tensor<3>, inputs: &AttentionInputs) -> Tensor<3> {
        let normed = match &self.attn_norm {
            Some(norm) => layer_norm(norm, self.norm_eps, hidden.clone()),
            None => hidden.clone(),
        };
        let hidden = hidden + self.attn.forward(normed, inputs);
        let normed = layer_norm(&self.mlp_norm, self.norm_eps, hidden.clone());
        hidden + self.mlp.forward(normed)
    }
}

/// `ModernBertModel`: embeddings, the layers, `final_norm`.
#[derive(Module, Debug)]
pub struct ModernBertModel {
    /// Token embeddings with their norm.
    pub embeddings: ModernBertEmbeddings,
    /// The encoder layers.
    pub layers: Vec<ModernBertEncoderLayer>,
    /// Norm of the last hidden state.
    pub final_norm: LayerNorm,
    /// The norms' epsilon (`norm_eps`).
    #[module(skip)]
    pub norm_eps: f64,
}

/// `ModernBertForSequenceClassification`'s head: pooling, `ModernBertPredictionHead` (dense →
/// activation → norm), dropout, classifier.
#[derive(Module, Debug)]
pub struct ModernBertHead {
    /// `[hidden, hidden]` (bias: `classifier_bias`).
    pub dense: Linear,
    /// Norm after the activation.
    pub norm: LayerNorm,
    /// `classifier_dropout`.
    pub drop: Dropout,
    /// `[hidden, num_labels]`, with bias.
    pub classifier: Linear,
    /// `classifier_activation`.
    #[module(skip)]
    pub activation: Activation,
    /// `classifier_pooling`.
    #[module(skip)]
    pub pooling: Pooling,
    /// The float type the matmuls compute in (mixed precision).
    #[module(skip)]
    pub compute: Compute,
    /// The norms' epsilon (`norm_eps`).
    #[module(skip)]
    pub norm_eps: f64,
}

impl ModernBertHead {
    /// `hidden`: `[batch, seq, hidden]`; `attention_mask`: `[batch, seq]`, 1 on real tokens.
    /// Returns logits `[batch, num_labels]`.
    pub fn forward(&self, hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
        let c = self.compute;
        let pooled = match self.pooling {
            Pooling::Cls => first_token(hidden),
            Pooling::Mean => {
                let [batch, seq, width] = hidden.dims();
                let mask = attention_mask.float().reshape([batch, seq, 1]);
                let sum = (hidden * mask.clone()).sum_dim(1).reshape([batch, width]);
                sum / mask.sum_dim(1).reshape([batch, 1])
            }
        };
        let x = layer_norm(
            &self.norm,
            self.norm_eps,
            activate(self.activation, c.linear(&self.dense, pooled)),
        );
        c.linear(&self.classifier, dropout(&self.drop, x))
    }
}

/// A ModernBERT encoder with its sequence-classification head.
#[derive(Module, Debug)]
pub struct ModernBertClassifier {
    /// transformers' `model`.
    pub model: ModernBertModel,
    /// transformers' `head`, `drop` and `classifier`.
    pub head: ModernBertHead,
}

impl ModernBertClassifier {
    /// A freshly initialised model sized by `config` (a ModernBERT config).
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let family = family(config);
        let h = config.hidden_size;
        let out_std = config.initializer_range / (2.0 * config.num_hidden_layers as f64).sqrt();
        Self {
            model: ModernBertModel {
                embeddings: ModernBertEmbeddings {
                    tok_embeddings: EmbeddingConfig::new(config.vocab_size, h).init(device),
                    norm: norm(config, device),
                    drop: DropoutConfig::new(family.embedding_dropout).init(),
                    norm_eps: config.layer_norm_eps,
                },
                layers: (0..config.num_hidden_layers)
                    .map(|i| ModernBertEncoderLayer::new(config, i, device))
                    .collect(),
                final_norm: norm(config, device),
                norm_eps: config.layer_norm_eps,
            },
            // A head the checkpoint lacks starts as transformers' `_init_weights` has it (without
            // the truncation at two standard deviations).
            head: ModernBertHead {
                dense: normal_linear(h, h, out_std, family.classifier_bias, device),
                norm: norm(config, device),
                drop: DropoutConfig::new(config.head_dropout()).init(),
                classifier: normal_linear(
                    h,
                    config.num_labels(),
                    (h as f64).powf(-0.5),
                    true,
                    device,
                ),
                activation: family.classifier_activation,
                pooling: family.classifier_pooling,
                compute: Compute::default(),
                norm_eps: config.layer_norm_eps,
            },
        }
    }

    /// The model with its matmuls computing in `compute`.
    pub fn with_compute(mut self, compute: Compute) -> Self {
        for layer in &mut self.model.layers {
            layer.attn.compute = compute;
            layer.mlp.compute = compute;
        }
        self.head.compute = compute;
        self
    }

    /// `input_ids`, `attention_mask`: `[batch, seq]` (ModernBERT has no token types).
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> ClassifierOutput {
        let pad_mask: Tensor<2, Bool> = attention_mask.clone().equal_elem(0);
        let mut hidden = self.model.embeddings.forward(input_ids);
        let [_, _, width] = hidden.dims();
        // One set of rotary tables and masks per attention kind (global, local), not per layer:
        // a local mask of 8,192 tokens is 64 MiB.
        let mut kinds: Vec<((u64, Option<usize>), AttentionInputs)> = Vec::new();
        for layer in &self.model.layers {
            let kind = layer.attn.kind();
            let index = match kinds.iter().position(|(k, _)| *k == kind) {
                Some(index) => index,
                None => {
                    let head_dim = width / layer.attn.num_heads;
                    kinds.push((kind, layer.attn.inputs(pad_mask.clone(), head_dim)));
                    kinds.len() - 1
                }
            };
            hidden = layer.forward(hidden, &kinds[index].1);
        }
        let model = &self.model;
        let last_hidden_state = layer_norm(&model.final_norm, model.norm_eps, hidden);
        let logits = self.head.forward(last_hidden_state.clone(), attention_mask);
        ClassifierOutput {
            last_hidden_state,
            pooler_output: None,
            logits,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(extra: &str) -> Result<ModernBertConfig, String> {
        let text = format!(
            r#"{{"model_type":"modernbert","vocab_size":10,"hidden_size":8,"num_hidden_layers":4,
            "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":32{extra}}}"#
        );
        let config = ModelConfig::from_json_str(&text, Path::new("config.json"))
            .map_err(|e| e.to_string())?;
        Ok(family(&config).clone())
    }

    /// The hub's configs (answerdotai/ModernBERT-base) spell the layout with
    /// `global_attn_every_n_layers` and `*_rope_theta`; transformers 5 writes `layer_types` and
    /// `rope_parameters`. Both read the same.
    #[test]
    fn hub_and_transformers_5_spellings_agree() {
        let hub = parse(
            r#","global_attn_every_n_layers":3,"global_rope_theta":160000.0,"local_rope_theta":10000.0"#,
        )
        .unwrap();
        assert_eq!(hub.global_layers, vec![true, false, false, true]);
        let v5 = parse(
            r#","layer_types":["full_attention","sliding_attention","sliding_attention","full_attention"],
            "rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":160000.0},
            "sliding_attention":{"rope_type":"default","rope_theta":10000.0}}"#,
        )
        .unwrap();
        assert_eq!(v5.global_layers, hub.global_layers);
        assert_eq!(
            (v5.global_rope_theta, v5.local_rope_theta),
            (hub.global_rope_theta, hub.local_rope_theta)
        );
        assert_eq!(hub.local_attention, 128);
        assert_eq!(hub.classifier_pooling, Pooling::Cls);
    }

    #[test]
    fn unsupported_variants_are_one_line_errors() {
        for (extra, needle) in [
            (r#","classifier_pooling":"max""#, "classifier_pooling 'max'"),
            (
                r#","rope_parameters":{"full_attention":{"rope_type":"yarn","rope_theta":1.0}}"#,
                "rope_type 'yarn'",
            ),
            (
                r#","layer_types":["full_attention"]"#,
                "1 entries for 4 layers",
            ),
            (
                r#","classifier_activation":"swish""#,
                "classifier_activation 'swish'",
            ),
        ] {
            let err = parse(extra).unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(err.starts_with("config.json:"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    /// Local attention hides exactly the keys more than `window` positions away.
    #[test]
    fn the_local_window_is_symmetric_and_inclusive() {
        let far = outside_window(5, 1, &Device::default());
        let values: Vec<bool> = far.into_data().convert::<bool>().try_to_vec().unwrap();
        let expected: Vec<bool> = (0..25)
            .map(|n: usize| (n / 5).abs_diff(n % 5) >= 2)
            .collect();
        assert_eq!(values, expected);
        assert!(!values[1] && values[2], "distance 1 seen, 2 hidden");
    }
}
