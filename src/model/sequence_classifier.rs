//! The sequence classifier of every supported family, one variant per module family.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};

use super::classifier::{BertClassifier, ClassifierOutput};
use super::config::{Architecture, ModelConfig};
use super::deberta_v2::DebertaV2Classifier;
use super::mixed::Compute;
use super::modernbert::ModernBertClassifier;

/// A sequence classifier of any supported family. Burn paths skip the variant (load, save), so
/// each family's parameters are named as in its own struct.
#[derive(Module, Debug)]
pub enum SequenceClassifier {
    /// BERT, RoBERTa, DistilBERT, ELECTRA, ALBERT, XLM-RoBERTa, CamemBERT.
    Bert(BertClassifier),
    /// ModernBERT.
    ModernBert(ModernBertClassifier),
    /// DeBERTa-v2 and v3.
    DebertaV2(DebertaV2Classifier),
}

impl SequenceClassifier {
    /// A randomly initialised model of `config`'s family (use
    /// [`crate::checkpoint::load_classifier`] for weights).
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        match config.architecture {
            Architecture::ModernBert => Self::ModernBert(ModernBertClassifier::new(config, device)),
            Architecture::DebertaV2 => Self::DebertaV2(DebertaV2Classifier::new(config, device)),
            _ => Self::Bert(BertClassifier::new(config, device)),
        }
    }

    /// The model with its matmuls computing in `compute` (mixed precision; see [`Compute`]).
    pub fn with_compute(self, compute: Compute) -> Self {
        match self {
            Self::Bert(model) => Self::Bert(model.with_compute(compute)),
            Self::ModernBert(model) => Self::ModernBert(model.with_compute(compute)),
            Self::DebertaV2(model) => Self::DebertaV2(model.with_compute(compute)),
        }
    }

    /// The last layer, `[hidden, num_labels]`, of any family's head.
    pub fn classifier(&self) -> &Linear {
        match self {
            Self::Bert(model) => &model.head.classifier,
            Self::ModernBert(model) => &model.head.classifier,
            Self::DebertaV2(model) => &model.head.classifier,
        }
    }

    /// - `input_ids`, `token_type_ids`: `[batch, seq]` (token types unused by ModernBERT)
    /// - `attention_mask`: `[batch, seq]`, 1 on real tokens, 0 on padding
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> ClassifierOutput {
        match self {
            Self::Bert(model) => model.forward(input_ids, token_type_ids, attention_mask),
            Self::ModernBert(model) => model.forward(input_ids, attention_mask),
            Self::DebertaV2(model) => model.forward(input_ids, token_type_ids, attention_mask),
        }
    }

    /// The logits `[batch, num_labels]` of [`Self::forward`] (same inputs) without the other
    /// positions' final states where the family's head reads only the first position (BERT's
    /// variant: [`BertClassifier::logits`]).
    pub fn logits(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> Tensor<2> {
        match self {
            Self::Bert(model) => model.logits(input_ids, token_type_ids, attention_mask),
            _ => {
                self.forward(input_ids, token_type_ids, attention_mask)
                    .logits
            }
        }
    }
}
