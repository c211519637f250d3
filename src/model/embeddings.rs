//! `BertEmbeddings` (also RoBERTa's, DistilBERT's and ELECTRA's): word + position (+ token
//! type) embeddings, then LayerNorm and dropout, `embedding_size` wide.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};

use super::dropout::dropout;
use burn::tensor::{Device, Int, Tensor};

use super::config::{Architecture, ModelConfig};

/// Input embeddings of a BERT-family encoder.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `[vocab_size, embedding_size]`
    pub word_embeddings: Embedding,
    /// `[max_position_embeddings, embedding_size]`
    pub position_embeddings: Embedding,
    /// `[type_vocab_size, embedding_size]`; absent in DistilBERT.
    pub token_type_embeddings: Option<Embedding>,
    /// LayerNorm over the summed embeddings.
    pub layer_norm: LayerNorm,
    /// Its epsilon (`layer_norm_eps`).
    #[module(skip)]
    pub layer_norm_eps: f64,
    /// Dropout after the LayerNorm (`hidden_dropout_prob`).
    pub dropout: Dropout,
    /// RoBERTa counts positions from `pad_token_id + 1` and skips padding; `None` elsewhere.
    #[module(skip)]
    pub padding_idx: Option<usize>,
}

impl BertEmbeddings {
    /// Builds freshly initialised embeddings.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let embedding = |n: usize| EmbeddingConfig::new(n, config.embedding_size).init(device);
        Self {
            word_embeddings: embedding(config.vocab_size),
            position_embeddings: embedding(config.max_position_embeddings),
            token_type_embeddings: (config.type_vocab_size > 0)
                .then(|| embedding(config.type_vocab_size)),
            layer_norm: LayerNormConfig::new(config.embedding_size)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            layer_norm_eps: config.layer_norm_eps,
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            padding_idx: (config.architecture == Architecture::Roberta)
                .then_some(config.pad_token_id),
        }
    }

    /// - `input_ids`: `[batch, seq]`
    /// - `token_type_ids`: `[batch, seq]` (ignored by DistilBERT)
    /// - returns `[batch, seq, embedding_size]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let position_ids = self.position_ids(&input_ids);
        let lookup = crate::backend::ops::embedding;
        let mut x = lookup(&self.word_embeddings, input_ids)
            + lookup(&self.position_embeddings, position_ids);
        if let Some(token_types) = &self.token_type_embeddings {
            x = x + lookup(token_types, token_type_ids);
        }
        let normed = crate::backend::ops::layer_norm(&self.layer_norm, self.layer_norm_eps, x);
        dropout(&self.dropout, normed)
    }

    /// `[batch, seq]` position ids: `0..seq` for BERT/DistilBERT; for RoBERTa
    /// `pad + cumsum(not pad)` on real tokens and `pad` on padding, as transformers does.
    fn position_ids(&self, input_ids: &Tensor<2, Int>) -> Tensor<2, Int> {
        let [batch, seq] = input_ids.dims();
        match self.padding_idx {
            None => Tensor::<1, Int>::arange(0..seq as i64, &input_ids.device())
                .unsqueeze::<2>()
                .expand([batch, seq]),
            Some(pad) => {
                let not_pad = input_ids.clone().not_equal_elem(pad as i64).int();
                not_pad.clone().cumsum(1) * not_pad + pad as i64
            }
        }
    }
}
