//! DeBERTa-v2 and v3 (`deberta-v2`), one struct per transformers sub-module:
//! `DebertaV2Embeddings` (absolute positions only with `position_biased_input`, `embed_proj`,
//! the mask applied after the LayerNorm), `DisentangledSelfAttention` (content-to-position and
//! position-to-content scores over log-bucketed relative positions), `DebertaV2Encoder` with its
//! relative embeddings and v2's `ConvLayer`, and `ContextPooler`. The attention output, the
//! intermediate and the output blocks are BERT's (`BertSelfOutput`, `BertIntermediate`,
//! `BertOutput`), and so is the head (`classifier(dropout(pooled))`).

use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, Linear, PaddingConfig1d,
};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::activation::Activation;
use super::activation::activate;
use super::attention::{
    BertSelfOutput, Scores, key_mask, layer_norm, linear, merge_heads, normal_linear,
    scaled_dot_product, split_heads,
};
use super::classifier::{BertPooler, ClassificationHead, ClassifierOutput};
use super::config::{FamilyConfig, ModelConfig};
use super::dropout::dropout;
use super::encoder::{BertIntermediate, BertLayer, BertOutput};
use super::mixed::Compute;
use crate::backend::ops;

pub(crate) mod config;

pub use config::{DebertaV2Config, log_bucket};

/// The DeBERTa settings of a DeBERTa-v2 `config`.
fn family(config: &ModelConfig) -> &DebertaV2Config {
    match &config.family {
        FamilyConfig::DebertaV2(family) => family,
        _ => unreachable!(
            "a DeBERTa module built from a {:?} config",
            config.architecture
        ),
    }
}

/// The relative positions of one sequence length, as indices into the relative embeddings.
#[derive(Clone, Debug)]
pub struct RelativePositions {
    /// `[1, 1, seq, seq]`: `clamp(rel(i, j) + span, 0, 2·span − 1)`.
    pub c2p: Tensor<4, Int>,
    /// `[1, 1, seq, seq]`: `clamp(−rel(i, j) + span, 0, 2·span − 1)`.
    pub p2c: Tensor<4, Int>,
}

impl RelativePositions {
    /// transformers' `build_relative_position` (bucketed when `position_buckets` is set) and the
    /// clamped gather indices both score kinds use.
    pub fn new(seq: usize, family: &DebertaV2Config, device: &Device) -> Self {
        let span = family.att_span() as i64;
        let rel = |i: usize, j: usize| {
            let d = i as i64 - j as i64;
            match family.position_buckets {
                Some(buckets) => log_bucket(d, buckets, family.max_relative_positions),
                None => d,
            }
        };
        let clamp = |x: i64| x.clamp(0, 2 * span - 1);
        let mut c2p = Vec::with_capacity(seq * seq);
        let mut p2c = Vec::with_capacity(seq * seq);
        for i in 0..seq {
            for j in 0..seq {
                c2p.push(clamp(rel(i, j) + span));
                p2c.push(clamp(-rel(i, j) + span));
            }
        }
        let tensor = |values| Tensor::from_data(TensorData::new(values, [1, 1, seq, seq]), device);
        Self {
            c2p: tensor(c2p),
            p2c: tensor(p2c),
        }
    }
}

/// `DebertaV2Embeddings`: `dropout(mask · LayerNorm(embed_proj(word (+ position) (+ type))))`.
#[derive(Module, Debug)]
pub struct DebertaV2Embeddings {
    /// `[vocab_size, embedding_size]`
    pub word_embeddings: Embedding,
    /// `[max_position_embeddings, embedding_size]`; only with `position_biased_input`.
    pub position_embeddings: Option<Embedding>,
    /// `[type_vocab_size, embedding_size]`; only when `type_vocab_size` > 0.
    pub token_type_embeddings: Option<Embedding>,
    /// `[embedding_size, hidden]`, no bias; only when the widths differ.
    pub embed_proj: Option<Linear>,
    /// LayerNorm of `hidden_size`.
    pub layer_norm: LayerNorm,
    /// `hidden_dropout_prob`.
    pub dropout: Dropout,
    /// The LayerNorms' epsilon (`layer_norm_eps`).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl DebertaV2Embeddings {
    fn new(config: &ModelConfig, device: &Device) -> Self {
        let family = family(config);
        let embedding = |n: usize| EmbeddingConfig::new(n, config.embedding_size).init(device);
        Self {
            word_embeddings: embedding(config.vocab_size),
            position_embeddings: family
                .position_biased_input
                .then(|| embedding(config.max_position_embeddings)),
            token_type_embeddings: (config.type_vocab_size > 0)
                .then(|| embedding(config.type_vocab_size)),
            embed_proj: (config.embedding_size != config.hidden_size).then(|| {
                normal_linear(
                    config.embedding_size,
                    config.hidden_size,
                    config.initializer_range,
                    false,
                    device,
                )
            }),
            layer_norm: layer_norm(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            layer_norm_eps: config.layer_norm_eps,
        }
    }

    /// `input_ids`, `token_type_ids`: `[batch, seq]`; `real`: `[batch, seq, 1]`, 1 on real
    /// tokens. Returns `[batch, seq, hidden]` (zero on padding).
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        real: Tensor<3>,
    ) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let mut x = ops::embedding(&self.word_embeddings, input_ids);
        if let Some(positions) = &self.position_embeddings {
            let ids = Tensor::<1, Int>::arange(0..seq as i64, &device)
                .unsqueeze::<2>()
                .expand([batch, seq]);
            x = x + ops::embedding(positions, ids);
        }
        if let Some(types) = &self.token_type_embeddings {
            x = x + ops::embedding(types, token_type_ids);
        }
        if let Some(project) = &self.embed_proj {
            x = project.forward(x);
        }
        let normed = ops::layer_norm(&self.layer_norm, self.layer_norm_eps, x);
        dropout(&self.dropout, normed * real)
    }
}

/// `DisentangledSelfAttention`: content scores plus, with relative attention, content-to-position
/// (`q_i · k_pos(δ(i, j))`) and position-to-content (`k_j · q_pos(δ(i, j))`) scores, each divided
/// by `√(head_dim · scale_factor)`.
#[derive(Module, Debug)]
pub struct DisentangledSelfAttention {
    /// `[hidden, hidden]`
    pub query_proj: Linear,
    /// `[hidden, hidden]`
    pub key_proj: Linear,
    /// `[hidden, hidden]`
    pub value_proj: Linear,
    /// Projection of the relative embeddings for c2p (without `share_att_key`).
    pub pos_key_proj: Option<Linear>,
    /// Projection of the relative embeddings for p2c (without `share_att_key`).
    pub pos_query_proj: Option<Linear>,
    /// `attention_probs_dropout_prob` on the probabilities.
    pub dropout: Dropout,
    /// `hidden_dropout_prob` on the relative embeddings.
    pub pos_dropout: Dropout,
    /// Attention heads.
    #[module(skip)]
    pub num_heads: usize,
    /// Which scores are added, and how positions are projected.
    #[module(skip)]
    pub kinds: PositionScores,
    /// The float type the matmuls compute in (mixed precision).
    #[module(skip)]
    pub compute: Compute,
}

/// The position scores a `DisentangledSelfAttention` adds.
#[derive(Clone, Copy, Debug)]
pub struct PositionScores {
    /// Relative attention is on (`relative_attention`).
    pub relative: bool,
    /// Content-to-position scores.
    pub c2p: bool,
    /// Position-to-content scores.
    pub p2c: bool,
    /// `share_att_key`.
    pub share_att_key: bool,
}

impl PositionScores {
    /// `1 + c2p + p2c`: every score is divided by `√(head_dim · scale_factor)` (with or
    /// without relative attention, as transformers).
    fn scale_factor(self) -> usize {
        1 + self.c2p as usize + self.p2c as usize
    }
}

/// What every layer's attention shares: the (normalised) relative embeddings and the indices.
#[derive(Clone, Debug)]
pub struct Relative {
    /// `[1, 2·span, hidden]`
    pub embeddings: Tensor<3>,
    /// The gather indices of this sequence length.
    pub positions: RelativePositions,
}

impl DisentangledSelfAttention {
    fn new(config: &ModelConfig, device: &Device) -> Self {
        let family = family(config);
        let h = config.hidden_size;
        let own = |kind: bool| {
            (family.relative_attention && !family.share_att_key && kind)
                .then(|| linear(h, h, device))
        };
        Self {
            query_proj: linear(h, h, device),
            key_proj: linear(h, h, device),
            value_proj: linear(h, h, device),
            pos_key_proj: own(family.c2p),
            pos_query_proj: own(family.p2c),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            pos_dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            num_heads: config.num_attention_heads,
            kinds: PositionScores {
                relative: family.relative_attention,
                c2p: family.c2p,
                p2c: family.p2c,
                share_att_key: family.share_att_key,
            },
            compute: Compute::default(),
        }
    }

    /// `hidden`: `[batch, seq, hidden]`; `pad_mask`: `[batch, seq]`, `true` on padding; returns
    /// the context `[batch, seq, hidden]`.
    pub fn forward(
        &self,
        hidden: Tensor<3>,
        pad_mask: Tensor<2, Bool>,
        relative: Option<&Relative>,
    ) -> Tensor<3> {
        let c = self.compute;
        let heads = |layer: &Linear, x: Tensor<3>| split_heads(c.linear(layer, x), self.num_heads);
        let q = heads(&self.query_proj, hidden.clone());
        let k = heads(&self.key_proj, hidden.clone());
        let v = heads(&self.value_proj, hidden);
        let [_, _, _, head_dim] = q.dims();
        let scale = ((head_dim * self.kinds.scale_factor()) as f64).sqrt();
        let bias = relative
            .filter(|_| self.kinds.relative)
            .and_then(|relative| self.position_scores(&q, &k, relative))
            .map(|scores| scores / scale);
        let scores = Scores {
            scale: Some(scale),
            bias,
        };
        let masks = [key_mask(pad_mask)];
        merge_heads(scaled_dot_product(
            c,
            [q, k, v],
            &masks,
            scores,
            &self.dropout,
        ))
    }

    /// c2p + p2c scores, `[batch, heads, seq, seq]`, not yet scaled; `None` when `pos_att_type`
    /// asks for neither.
    fn position_scores(
        &self,
        q: &Tensor<4>,
        k: &Tensor<4>,
        relative: &Relative,
    ) -> Option<Tensor<4>> {
        let c = self.compute;
        let [batch, heads, seq, _] = q.dims();
        let rel = dropout(&self.pos_dropout, relative.embeddings.clone());
        let project = |layer: &Linear| {
            let [_, rows, _] = rel.dims();
            let projected = split_heads(c.linear(layer, rel.clone()), self.num_heads);
            let [_, _, _, head_dim] = projected.dims();
            projected.expand([batch, heads, rows, head_dim])
        };
        let full = [batch, heads, seq, seq];
        let mut score: Option<Tensor<4>> = None;
        if self.kinds.c2p {
            let pos_key = match (&self.pos_key_proj, self.kinds.share_att_key) {
                (Some(own), false) => project(own),
                _ => project(&self.key_proj),
            };
            let c2p = c.matmul(q.clone(), pos_key.swap_dims(2, 3));
            score = Some(c2p.gather(3, relative.positions.c2p.clone().expand(full)));
        }
        if self.kinds.p2c {
            let pos_query = match (&self.pos_query_proj, self.kinds.share_att_key) {
                (Some(own), false) => project(own),
                _ => project(&self.query_proj),
            };
            let p2c = c.matmul(k.clone(), pos_query.swap_dims(2, 3));
            let p2c = p2c
                .gather(3, relative.positions.p2c.clone().expand(full))
                .swap_dims(2, 3);
            score = Some(match score {
                Some(c2p) => c2p + p2c,
                None => p2c,
            });
        }
        score
    }
}

/// `DebertaV2Attention`: disentangled self-attention, then BERT's output block.
#[derive(Module, Debug)]
pub struct DebertaV2Attention {
    /// transformers calls this `self`.
    pub self_attn: DisentangledSelfAttention,
    /// Dense, dropout, residual and LayerNorm (`DebertaV2SelfOutput` = `BertSelfOutput`).
    pub output: BertSelfOutput,
}

/// `DebertaV2Layer`: attention, then BERT's feed-forward blocks.
#[derive(Module, Debug)]
pub struct DebertaV2Layer {
    /// Self-attention with its output block.
    pub attention: DebertaV2Attention,
    /// `DebertaV2Intermediate` = `BertIntermediate`.
    pub intermediate: BertIntermediate,
    /// `DebertaV2Output` = `BertOutput`.
    pub output: BertOutput,
}

impl DebertaV2Layer {
    fn new(config: &ModelConfig, device: &Device) -> Self {
        // BERT's blocks with DeBERTa's sizes; only the self-attention differs.
        let BertLayer {
            attention,
            intermediate,
            output,
        } = BertLayer::new(config, device);
        Self {
            attention: DebertaV2Attention {
                self_attn: DisentangledSelfAttention::new(config, device),
                output: attention.output,
            },
            intermediate,
            output,
        }
    }

    /// Makes every matmul of the block compute in `compute`.
    pub fn set_compute(&mut self, compute: Compute) {
        self.attention.self_attn.compute = compute;
        self.attention.output.compute = compute;
        self.intermediate.compute = compute;
        self.output.compute = compute;
    }

    /// `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(
        &self,
        hidden: Tensor<3>,
        pad_mask: Tensor<2, Bool>,
        relative: Option<&Relative>,
    ) -> Tensor<3> {
        let context = self
            .attention
            .self_attn
            .forward(hidden.clone(), pad_mask, relative);
        let attended = self.attention.output.forward(context, hidden);
        let inner = self.intermediate.forward(attended.clone());
        self.output.forward(inner, attended)
    }
}

/// v2's `ConvLayer` after the first layer:
/// `mask · LayerNorm(layer_out + act(dropout(mask · conv(embeddings))))`.
#[derive(Module, Debug)]
pub struct ConvLayer {
    /// `[hidden, hidden / groups, kernel]`, length-preserving padding.
    pub conv: Conv1d,
    /// LayerNorm over the sum.
    pub layer_norm: LayerNorm,
    /// `hidden_dropout_prob`.
    pub dropout: Dropout,
    /// `conv_act`.
    #[module(skip)]
    pub activation: Activation,
    /// The LayerNorms' epsilon (`layer_norm_eps`).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl ConvLayer {
    /// `embedded`, `layer_out`: `[batch, seq, hidden]`; `real`: `[batch, seq, 1]`.
    pub fn forward(&self, embedded: Tensor<3>, layer_out: Tensor<3>, real: Tensor<3>) -> Tensor<3> {
        let out = self.conv.forward(embedded.swap_dims(1, 2)).swap_dims(1, 2) * real.clone();
        let out = activate(self.activation, dropout(&self.dropout, out));
        ops::layer_norm(&self.layer_norm, self.layer_norm_eps, layer_out + out) * real
    }
}

/// `DebertaV2Encoder`: the layers, the relative embeddings (and their LayerNorm), v2's conv.
#[derive(Module, Debug)]
pub struct DebertaV2Encoder {
    /// The transformer blocks.
    pub layer: Vec<DebertaV2Layer>,
    /// `[2·span, hidden]`; with relative attention.
    pub rel_embeddings: Option<Embedding>,
    /// LayerNorm of the relative embeddings (`norm_rel_ebd`).
    pub layer_norm: Option<LayerNorm>,
    /// v2's convolution after the first layer.
    pub conv: Option<ConvLayer>,
    /// The settings the relative positions are built from.
    #[module(skip)]
    pub family: DebertaV2Config,
    /// The LayerNorms' epsilon (`layer_norm_eps`).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl DebertaV2Encoder {
    fn new(config: &ModelConfig, device: &Device) -> Self {
        let family = family(config).clone();
        let h = config.hidden_size;
        Self {
            layer: (0..config.num_hidden_layers)
                .map(|_| DebertaV2Layer::new(config, device))
                .collect(),
            rel_embeddings: family
                .relative_attention
                .then(|| EmbeddingConfig::new(2 * family.att_span(), h).init(device)),
            layer_norm: (family.relative_attention && family.norm_rel_ebd)
                .then(|| layer_norm(config, device)),
            conv: family.conv.map(|(kernel, groups, activation)| ConvLayer {
                conv: Conv1dConfig::new(h, h, kernel)
                    .with_padding(PaddingConfig1d::Explicit(
                        (kernel - 1) / 2,
                        (kernel - 1) / 2,
                    ))
                    .with_groups(groups)
                    .init(device),
                layer_norm: layer_norm(config, device),
                dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
                activation,
                layer_norm_eps: config.layer_norm_eps,
            }),
            family,
            layer_norm_eps: config.layer_norm_eps,
        }
    }

    /// `embedded`: `[batch, seq, hidden]`; `pad_mask`: `[batch, seq]`; `real`: `[batch, seq, 1]`.
    pub fn forward(
        &self,
        embedded: Tensor<3>,
        pad_mask: Tensor<2, Bool>,
        real: Tensor<3>,
    ) -> Tensor<3> {
        let [_, seq, _] = embedded.dims();
        let relative = self.rel_embeddings.as_ref().map(|table| {
            let weights = table.weight.val();
            let weights = match &self.layer_norm {
                Some(norm) => ops::layer_norm(norm, self.layer_norm_eps, weights),
                None => weights,
            };
            Relative {
                embeddings: weights.unsqueeze::<3>(),
                positions: RelativePositions::new(seq, &self.family, &embedded.device()),
            }
        });
        let mut hidden = embedded.clone();
        for (i, layer) in self.layer.iter().enumerate() {
            hidden = layer.forward(hidden, pad_mask.clone(), relative.as_ref());
            if let (0, Some(conv)) = (i, &self.conv) {
                hidden = conv.forward(embedded.clone(), hidden, real.clone());
            }
        }
        hidden
    }
}

/// A DeBERTa-v2 encoder with `ContextPooler` and BERT's classification head.
#[derive(Module, Debug)]
pub struct DebertaV2Classifier {
    /// Word (+ position, + token type) embeddings.
    pub embeddings: DebertaV2Embeddings,
    /// The transformer blocks.
    pub encoder: DebertaV2Encoder,
    /// `ContextPooler`: `act(dense(dropout(h[:, 0])))`.
    pub pooler: BertPooler,
    /// `classifier(dropout(pooled))`.
    pub head: ClassificationHead,
}

impl DebertaV2Classifier {
    /// A freshly initialised model sized by `config` (a DeBERTa-v2 config).
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let family = family(config);
        Self {
            embeddings: DebertaV2Embeddings::new(config, device),
            encoder: DebertaV2Encoder::new(config, device),
            pooler: BertPooler::new(
                config,
                family.pooler_hidden_act,
                family.pooler_dropout,
                device,
            ),
            head: ClassificationHead::new(config, device),
        }
    }

    /// The model with its matmuls computing in `compute`.
    pub fn with_compute(mut self, compute: Compute) -> Self {
        for layer in &mut self.encoder.layer {
            layer.set_compute(compute);
        }
        self.pooler.compute = compute;
        self.head.compute = compute;
        self
    }

    /// `input_ids`, `token_type_ids`, `attention_mask`: `[batch, seq]`.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> ClassifierOutput {
        let [batch, seq] = attention_mask.dims();
        let pad_mask = attention_mask.clone().equal_elem(0);
        let real = attention_mask.float().reshape([batch, seq, 1]);
        let embedded = self
            .embeddings
            .forward(input_ids, token_type_ids, real.clone());
        let last_hidden_state = self.encoder.forward(embedded, pad_mask, real);
        let pooled = self.pooler.forward(last_hidden_state.clone());
        let logits = self
            .head
            .forward(last_hidden_state.clone(), Some(pooled.clone()));
        ClassifierOutput {
            last_hidden_state,
            pooler_output: Some(pooled),
            logits,
        }
    }
}
