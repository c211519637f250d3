//! BERT's sequence classifier (also RoBERTa's, DistilBERT's, ELECTRA's and ALBERT's):
//! embeddings → encoder → (pooler) → classification head, with the head each family uses in
//! transformers; the pooler, the heads and the output are shared with DeBERTa.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};

use super::dropout::dropout;
use burn::tensor::activation::{relu, tanh};
use burn::tensor::{Bool, Device, Int, Tensor};

use super::activation::{Activation, activate};
use super::attention::fresh_linear;
use super::config::{Architecture, ModelConfig};
use super::embeddings::BertEmbeddings;
use super::encoder::{BertEncoder, first_position};
use super::mixed::Compute;

/// `BertPooler`: `tanh(dense(hidden[:, 0]))`; also DeBERTa's `ContextPooler`,
/// `act(dense(dropout(hidden[:, 0])))` with `pooler_hidden_act` and `pooler_dropout`.
#[derive(Module, Debug)]
pub struct BertPooler {
    /// `[hidden, hidden]` projection of the first token.
    pub dense: Linear,
    /// Dropout on the first token (none in BERT).
    pub dropout: Dropout,
    /// tanh for BERT and ALBERT.
    #[module(skip)]
    pub activation: Activation,
    /// The float type the matmuls compute in (mixed precision).
    #[module(skip)]
    pub compute: Compute,
}

impl BertPooler {
    /// A freshly initialised pooler (as transformers initialises one a checkpoint lacks).
    pub fn new(config: &ModelConfig, activation: Activation, drop: f64, device: &Device) -> Self {
        Self {
            dense: fresh_linear(config.hidden_size, config.hidden_size, config, device),
            dropout: DropoutConfig::new(drop).init(),
            activation,
            compute: Compute::default(),
        }
    }

    /// `[batch, seq, hidden]` -> `[batch, hidden]`
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let first = dropout(&self.dropout, first_token(hidden));
        activate(self.activation, self.compute.linear(&self.dense, first))
    }
}

/// The classification head of each family:
/// - BERT, ALBERT, DeBERTa-v2: `classifier(dropout(pooler_output))`
/// - RoBERTa (`RobertaClassificationHead`): `out_proj(dropout(tanh(dense(dropout(h[:, 0])))))`
/// - DistilBERT: `classifier(dropout(relu(pre_classifier(h[:, 0]))))`
/// - ELECTRA (`ElectraClassificationHead`): `out_proj(dropout(gelu(dense(dropout(h[:, 0])))))`
#[derive(Module, Debug)]
pub struct ClassificationHead {
    /// RoBERTa's and ELECTRA's `classifier.dense`, DistilBERT's `pre_classifier`; absent for
    /// BERT.
    pub pre_classifier: Option<Linear>,
    /// `[hidden, num_labels]`: BERT/DistilBERT `classifier`, RoBERTa/ELECTRA
    /// `classifier.out_proj`.
    pub classifier: Linear,
    /// Dropout on the head's inputs (see [`ModelConfig::head_dropout`]).
    pub dropout: Dropout,
    /// The family, which picks the head's layout.
    #[module(skip)]
    pub architecture: Architecture,
    /// The float type the matmuls compute in (mixed precision).
    #[module(skip)]
    pub compute: Compute,
}

impl ClassificationHead {
    /// A freshly initialised head with `config.num_labels()` outputs.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        Self {
            pre_classifier: (!config.architecture.has_pooler())
                .then(|| fresh_linear(h, h, config, device)),
            classifier: fresh_linear(h, config.num_labels(), config, device),
            dropout: DropoutConfig::new(config.head_dropout()).init(),
            architecture: config.architecture,
            compute: Compute::default(),
        }
    }

    /// `hidden`: `[batch, seq, hidden]`; `pooled`: `[batch, hidden]` (BERT only).
    /// Returns logits `[batch, num_labels]`.
    pub fn forward(&self, hidden: Tensor<3>, pooled: Option<Tensor<2>>) -> Tensor<2> {
        let c = self.compute;
        let x = match (&self.pre_classifier, pooled) {
            (None, Some(pooled)) => dropout(&self.dropout, pooled),
            (None, None) => dropout(&self.dropout, first_token(hidden)),
            (Some(dense), _) => match self.architecture {
                Architecture::Roberta => {
                    let x = dropout(&self.dropout, first_token(hidden));
                    dropout(&self.dropout, tanh(c.linear(dense, x)))
                }
                Architecture::Electra => {
                    let x = dropout(&self.dropout, first_token(hidden));
                    dropout(
                        &self.dropout,
                        activate(Activation::Gelu, c.linear(dense, x)),
                    )
                }
                _ => self
                    .dropout
                    .forward(relu(c.linear(dense, first_token(hidden)))),
            },
        };
        c.linear(&self.classifier, x)
    }
}

/// Everything a forward pass produces.
#[derive(Debug, Clone)]
pub struct ClassifierOutput {
    /// `[batch, seq, hidden]`
    pub last_hidden_state: Tensor<3>,
    /// `[batch, hidden]`; BERT only.
    pub pooler_output: Option<Tensor<2>>,
    /// `[batch, num_labels]`
    pub logits: Tensor<2>,
}

/// A BERT-family encoder with a sequence-classification head.
#[derive(Module, Debug)]
pub struct BertClassifier {
    /// Word, position and token type embeddings.
    pub embeddings: BertEmbeddings,
    /// `[embedding_size, hidden]` projection: ELECTRA's `embeddings_project` when the widths
    /// differ, ALBERT's `embedding_hidden_mapping_in` always.
    pub embeddings_project: Option<Linear>,
    /// The transformer blocks.
    pub encoder: BertEncoder,
    /// Present for BERT and ALBERT; the others classify the first token directly.
    pub pooler: Option<BertPooler>,
    /// The classification head, producing the logits.
    pub head: ClassificationHead,
}

impl BertClassifier {
    /// A randomly initialised model.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        Self {
            embeddings: BertEmbeddings::new(config, device),
            embeddings_project: (config.embedding_size != config.hidden_size)
                .then(|| fresh_linear(config.embedding_size, config.hidden_size, config, device)),
            encoder: BertEncoder::new(config, device),
            pooler: config
                .architecture
                .has_pooler()
                .then(|| BertPooler::new(config, Activation::Tanh, 0.0, device)),
            head: ClassificationHead::new(config, device),
        }
    }

    /// The model with its matmuls computing in `compute` (mixed precision; see [`Compute`]).
    pub fn with_compute(mut self, compute: Compute) -> Self {
        for layer in &mut self.encoder.layer {
            layer.set_compute(compute);
        }
        if let Some(pooler) = &mut self.pooler {
            pooler.compute = compute;
        }
        self.head.compute = compute;
        self
    }

    /// - `input_ids`, `token_type_ids`: `[batch, seq]`
    /// - `attention_mask`: `[batch, seq]`, 1 on real tokens, 0 on padding
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> ClassifierOutput {
        let last_hidden_state = self.encode([input_ids, token_type_ids, attention_mask], false);
        let (pooler_output, logits) = self.classify(last_hidden_state.clone());
        ClassifierOutput {
            last_hidden_state,
            pooler_output,
            logits,
        }
    }

    /// The logits `[batch, num_labels]` of [`Self::forward`], from the first position's final
    /// state alone ([`BertEncoder::forward_first_token`]): what training and prediction use.
    pub fn logits(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> Tensor<2> {
        let first = self.encode([input_ids, token_type_ids, attention_mask], true);
        self.classify(first).1
    }

    /// `[input_ids, token_type_ids, attention_mask]` (`[batch, seq]`) -> the final states
    /// `[batch, seq, hidden]`, or `[batch, 1, hidden]` of the first position when `first_only`.
    fn encode(
        &self,
        [input_ids, token_type_ids, attention_mask]: [Tensor<2, Int>; 3],
        first_only: bool,
    ) -> Tensor<3> {
        let pad_mask: Tensor<2, Bool> = attention_mask.equal_elem(0);
        let mut embedded = self.embeddings.forward(input_ids, token_type_ids);
        if let Some(project) = &self.embeddings_project {
            embedded = project.forward(embedded);
        }
        if first_only {
            self.encoder.forward_first_token(embedded, pad_mask)
        } else {
            self.encoder.forward(embedded, pad_mask)
        }
    }

    /// Final states `[batch, seq, hidden]` (only the first position is read) -> the pooler's
    /// output (BERT, ALBERT) and the logits `[batch, num_labels]`.
    fn classify(&self, hidden: Tensor<3>) -> (Option<Tensor<2>>, Tensor<2>) {
        let pooled = self
            .pooler
            .as_ref()
            .map(|pooler| pooler.forward(hidden.clone()));
        let logits = self.head.forward(hidden, pooled.clone());
        (pooled, logits)
    }
}

/// `[batch, seq, hidden]` -> `[batch, hidden]`, the [CLS] / `<s>` position.
pub(crate) fn first_token(hidden: Tensor<3>) -> Tensor<2> {
    let [batch, _, width] = hidden.dims();
    first_position(hidden).reshape([batch, width])
}
