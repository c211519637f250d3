//! The model configuration, read from a Hugging Face `config.json`.
//!
//! BERT, RoBERTa and DistilBERT spell their hyper-parameters differently; [`ModelConfig`] is the
//! one normalised view the modules are built from. The original JSON is kept so that saving a
//! model writes back every field transformers put there.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::activation::Activation;
use super::deberta_v2::config::DebertaV2Config;
use super::modernbert::config::ModernBertConfig;
use crate::error::{Error, Result};

/// The supported model families (`model_type` in `config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// BERT (`bert`).
    Bert,
    /// RoBERTa (`roberta`): positions counted past the padding id, no pooler.
    Roberta,
    /// DistilBERT (`distilbert`): no token type embeddings, no pooler.
    DistilBert,
    /// ELECTRA (`electra`): BERT's layers on embeddings of `embedding_size`, projected to
    /// `hidden_size` when they differ; no pooler, `ElectraClassificationHead`.
    Electra,
    /// ALBERT (`albert`): embeddings of `embedding_size` always projected to `hidden_size`,
    /// `num_hidden_groups` layers shared by the `num_hidden_layers` steps, BERT's pooler.
    Albert,
    /// ModernBERT (`modernbert`): pre-norm layers with rotary positions, local and global
    /// attention and a GeGLU feed-forward; its own prediction head (see `model::modernbert`).
    ModernBert,
    /// DeBERTa-v2 and v3 (`deberta-v2`): disentangled relative-position attention, v2's
    /// convolution layer, `ContextPooler` (see `model::deberta_v2`).
    DebertaV2,
}

impl Architecture {
    /// The `model_type` string transformers uses.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Roberta => "roberta",
            Self::DistilBert => "distilbert",
            Self::Electra => "electra",
            Self::Albert => "albert",
            Self::ModernBert => "modernbert",
            Self::DebertaV2 => "deberta-v2",
        }
    }

    /// Whether the family has a pooler (`act(dense(dropout(h[:, 0])))`: `BertPooler`,
    /// DeBERTa's `ContextPooler`) before its classifier.
    pub fn has_pooler(self) -> bool {
        matches!(self, Self::Bert | Self::Albert | Self::DebertaV2)
    }

    fn from_model_type(model_type: &str) -> Option<Self> {
        MODEL_TYPES
            .iter()
            .find(|(name, ..)| *name == model_type)
            .map(|&(_, architecture, _)| architecture)
    }
}

/// Every supported `model_type`: the modules it is built from, and the `architectures` entry
/// transformers writes for its sequence classifier. XLM-RoBERTa and CamemBERT are RoBERTa's
/// modules and weight names under their own types (and tokenizers).
const MODEL_TYPES: [(&str, Architecture, &str); 9] = [
    ("bert", Architecture::Bert, "BertForSequenceClassification"),
    (
        "roberta",
        Architecture::Roberta,
        "RobertaForSequenceClassification",
    ),
    (
        "xlm-roberta",
        Architecture::Roberta,
        "XLMRobertaForSequenceClassification",
    ),
    (
        "camembert",
        Architecture::Roberta,
        "CamembertForSequenceClassification",
    ),
    (
        "distilbert",
        Architecture::DistilBert,
        "DistilBertForSequenceClassification",
    ),
    (
        "electra",
        Architecture::Electra,
        "ElectraForSequenceClassification",
    ),
    (
        "albert",
        Architecture::Albert,
        "AlbertForSequenceClassification",
    ),
    (
        "modernbert",
        Architecture::ModernBert,
        "ModernBertForSequenceClassification",
    ),
    (
        "deberta-v2",
        Architecture::DebertaV2,
        "DebertaV2ForSequenceClassification",
    ),
];

/// What the classification head is trained for (`problem_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemType {
    /// One class per input: softmax and cross-entropy (`single_label_classification`).
    SingleLabel,
    /// Any number of classes per input: sigmoid and binary cross-entropy
    /// (`multi_label_classification`).
    MultiLabel,
    /// Real-valued outputs with an MSE loss (`regression`).
    Regression,
}

impl ProblemType {
    /// The string transformers writes in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SingleLabel => "single_label_classification",
            Self::MultiLabel => "multi_label_classification",
            Self::Regression => "regression",
        }
    }

    /// Parses transformers' spelling.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "single_label_classification" => Some(Self::SingleLabel),
            "multi_label_classification" => Some(Self::MultiLabel),
            "regression" => Some(Self::Regression),
            _ => None,
        }
    }
}

/// Normalised hyper-parameters of a BERT-family sequence classifier.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// The model family (`model_type`).
    pub architecture: Architecture,
    /// Number of tokens in the vocabulary (`vocab_size`).
    pub vocab_size: usize,
    /// Width of the hidden states (`hidden_size`; DistilBERT's `dim`).
    pub hidden_size: usize,
    /// Width of the embeddings (`embedding_size`, ELECTRA's; `hidden_size` elsewhere).
    pub embedding_size: usize,
    /// Number of transformer blocks run (`num_hidden_layers`; DistilBERT's `n_layers`).
    pub num_hidden_layers: usize,
    /// Distinct blocks, shared in turn by the `num_hidden_layers` steps (ALBERT's
    /// `num_hidden_groups`; `num_hidden_layers` elsewhere).
    pub num_hidden_groups: usize,
    /// Attention heads per block (`num_attention_heads`; DistilBERT's `n_heads`).
    pub num_attention_heads: usize,
    /// Width of the feed-forward inner layer (`intermediate_size`; DistilBERT's `hidden_dim`).
    pub intermediate_size: usize,
    /// Feed-forward activation (`hidden_act`; DistilBERT's `activation`).
    pub hidden_act: Activation,
    /// Dropout probability of the embeddings and the sublayer outputs (`hidden_dropout_prob`;
    /// DistilBERT's `dropout`).
    pub hidden_dropout_prob: f64,
    /// Dropout probability of the attention weights (`attention_probs_dropout_prob`;
    /// DistilBERT's `attention_dropout`).
    pub attention_probs_dropout_prob: f64,
    /// Dropout before the classifier; `None` means "use `hidden_dropout_prob`" (BERT/RoBERTa).
    pub classifier_dropout: Option<f64>,
    /// Longest sequence the position embeddings cover (`max_position_embeddings`).
    pub max_position_embeddings: usize,
    /// 0 for DistilBERT, which has no token type embeddings.
    pub type_vocab_size: usize,
    /// Epsilon of every LayerNorm (`layer_norm_eps`, default 1e-12).
    pub layer_norm_eps: f64,
    /// Standard deviation of the normal init transformers gives fresh weights.
    pub initializer_range: f64,
    /// Id of the padding token (`pad_token_id`; default 1 for RoBERTa, else 0).
    pub pad_token_id: usize,
    /// Label names by class index; its length is the number of outputs of the head.
    pub id2label: Vec<String>,
    /// The task the head is trained for (`problem_type`); `None`: inferred from the number of
    /// labels.
    pub problem_type: Option<ProblemType>,
    /// What only ModernBERT or DeBERTa-v2 configure.
    pub family: FamilyConfig,
    /// The `config.json` as read, so that unknown fields survive a save.
    pub raw: Value,
}

/// The settings of one family beyond the fields every family shares.
#[derive(Clone, Debug)]
pub enum FamilyConfig {
    /// BERT and the families built from its modules.
    Bert,
    /// ModernBERT's attention layout, rotary positions, biases, dropouts and head.
    ModernBert(ModernBertConfig),
    /// DeBERTa-v2's relative attention, convolution and pooler.
    DebertaV2(DebertaV2Config),
}

/// The fields of `config.json` burnbert reads, in every spelling the three families use.
#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    #[serde(alias = "dim")]
    hidden_size: usize,
    embedding_size: Option<usize>,
    #[serde(alias = "n_layers")]
    num_hidden_layers: usize,
    num_hidden_groups: Option<usize>,
    inner_group_num: Option<usize>,
    #[serde(alias = "n_heads")]
    num_attention_heads: usize,
    #[serde(alias = "hidden_dim")]
    intermediate_size: usize,
    #[serde(
        alias = "activation",
        alias = "hidden_activation",
        default = "default_act"
    )]
    hidden_act: String,
    #[serde(alias = "dropout", default = "default_dropout")]
    hidden_dropout_prob: f64,
    #[serde(alias = "attention_dropout", default = "default_dropout")]
    attention_probs_dropout_prob: f64,
    #[serde(
        alias = "seq_classif_dropout",
        alias = "classifier_dropout_prob",
        alias = "cls_dropout"
    )]
    classifier_dropout: Option<f64>,
    max_position_embeddings: usize,
    type_vocab_size: Option<usize>,
    #[serde(alias = "norm_eps")]
    layer_norm_eps: Option<f64>,
    initializer_range: Option<f64>,
    pad_token_id: Option<usize>,
    id2label: Option<BTreeMap<String, String>>,
    num_labels: Option<usize>,
    problem_type: Option<String>,
    #[serde(default)]
    sinusoidal_pos_embds: bool,
    position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_dropout() -> f64 {
    0.1
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses the text of a `config.json`; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let parse_err = |message: String| Error::Parse {
            path: path.to_path_buf(),
            message,
        };
        let unsupported = |message: String| Error::UnsupportedConfig {
            path: path.to_path_buf(),
            message,
        };
        let raw: Value = serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        let model_type = raw
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| unsupported("no `model_type` field".into()))?
            .to_string();
        let architecture = Architecture::from_model_type(&model_type).ok_or_else(|| {
            let names: Vec<&str> = MODEL_TYPES.iter().map(|(name, ..)| *name).collect();
            unsupported(format!(
                "unsupported model_type '{model_type}' (supported: {})",
                names.join(", ")
            ))
        })?;
        let cfg: RawConfig =
            serde_json::from_value(raw.clone()).map_err(|e| parse_err(e.to_string()))?;
        let hidden_act = Activation::parse(&cfg.hidden_act, "activation").map_err(unsupported)?;
        let family = match architecture {
            Architecture::ModernBert => ModernBertConfig::from_json(&raw, cfg.num_hidden_layers)
                .map(FamilyConfig::ModernBert),
            Architecture::DebertaV2 => {
                DebertaV2Config::from_json(&raw, cfg.hidden_size).map(FamilyConfig::DebertaV2)
            }
            _ => Ok(FamilyConfig::Bert),
        }
        .map_err(unsupported)?;
        if let Some(kind) = cfg.position_embedding_type.as_deref()
            && kind != "absolute"
        {
            return Err(unsupported(format!(
                "unsupported position_embedding_type '{kind}' (only 'absolute')"
            )));
        }
        if cfg.sinusoidal_pos_embds {
            return Err(unsupported(
                "sinusoidal_pos_embds=true is not supported".into(),
            ));
        }
        let groups = match architecture {
            Architecture::Albert => cfg.num_hidden_groups.unwrap_or(1),
            _ => cfg.num_hidden_layers,
        };
        if cfg.inner_group_num.unwrap_or(1) != 1 || groups == 0 || groups > cfg.num_hidden_layers {
            return Err(unsupported(format!(
                "ALBERT with inner_group_num {} and num_hidden_groups {groups} of {} layers is not supported (inner_group_num 1, 1 ≤ groups ≤ layers)",
                cfg.inner_group_num.unwrap_or(1),
                cfg.num_hidden_layers
            )));
        }
        if cfg.num_attention_heads == 0 || cfg.hidden_size % cfg.num_attention_heads != 0 {
            return Err(unsupported(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size, cfg.num_attention_heads
            )));
        }
        let id2label = match cfg.id2label {
            Some(map) => labels_from_map(map).map_err(parse_err)?,
            None => default_labels(cfg.num_labels.unwrap_or(2)),
        };
        let problem_type = match cfg.problem_type.as_deref() {
            None => None,
            Some(name) => Some(
                ProblemType::parse(name)
                    .ok_or_else(|| unsupported(format!("unknown problem_type '{name}'")))?,
            ),
        };
        let type_vocab_size = match architecture {
            Architecture::DistilBert | Architecture::ModernBert => 0,
            Architecture::DebertaV2 => cfg.type_vocab_size.unwrap_or(0),
            _ => cfg.type_vocab_size.unwrap_or(2),
        };
        let layer_norm_eps = cfg.layer_norm_eps.unwrap_or(match architecture {
            Architecture::ModernBert => 1e-5,
            Architecture::DebertaV2 => 1e-7,
            _ => 1e-12,
        });
        let pad_token_id = cfg.pad_token_id.unwrap_or(match architecture {
            Architecture::Roberta => 1,
            _ => 0,
        });
        Ok(Self {
            architecture,
            vocab_size: cfg.vocab_size,
            hidden_size: cfg.hidden_size,
            embedding_size: cfg.embedding_size.unwrap_or(cfg.hidden_size),
            num_hidden_layers: cfg.num_hidden_layers,
            num_hidden_groups: groups,
            num_attention_heads: cfg.num_attention_heads,
            intermediate_size: cfg.intermediate_size,
            hidden_act,
            hidden_dropout_prob: cfg.hidden_dropout_prob,
            attention_probs_dropout_prob: cfg.attention_probs_dropout_prob,
            classifier_dropout: cfg.classifier_dropout,
            max_position_embeddings: cfg.max_position_embeddings,
            type_vocab_size,
            layer_norm_eps,
            initializer_range: cfg.initializer_range.unwrap_or(0.02),
            pad_token_id,
            id2label,
            problem_type,
            family,
            raw,
        })
    }

    /// Number of outputs of the classification head.
    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// Replaces the label set (e.g. the labels of a training file, or `--num-labels`).
    pub fn with_labels(mut self, labels: Vec<String>) -> Self {
        self.id2label = labels;
        self
    }

    /// The dropout probability in front of the classifier.
    pub fn head_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(match self.architecture {
            Architecture::DistilBert => 0.2,
            Architecture::ModernBert => 0.0,
            _ => self.hidden_dropout_prob,
        })
    }

    /// The `architectures` entry transformers writes for this model type's sequence classifier.
    pub fn classifier_class(&self) -> &'static str {
        let model_type = self.raw.get("model_type").and_then(Value::as_str);
        MODEL_TYPES
            .iter()
            .find(|(name, ..)| Some(*name) == model_type)
            .map_or("BertForSequenceClassification", |&(.., class)| class)
    }

    /// The `config.json` to write next to a saved model: the original fields, with the
    /// labels, problem type and architecture of this classifier.
    pub fn to_json(&self) -> Value {
        let mut out = match &self.raw {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        let id2label: serde_json::Map<String, Value> = self
            .id2label
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), Value::String(l.clone())))
            .collect();
        let label2id: serde_json::Map<String, Value> = self
            .id2label
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), Value::from(i)))
            .collect();
        out.insert("id2label".into(), Value::Object(id2label));
        out.insert("label2id".into(), Value::Object(label2id));
        out.remove("num_labels");
        out.insert(
            "architectures".into(),
            Value::Array(vec![self.classifier_class().into()]),
        );
        if let Some(problem) = self.problem_type {
            out.insert("problem_type".into(), problem.as_str().into());
        }
        Value::Object(out)
    }
}

/// Label names in index order from transformers' `{"0": "NEGATIVE", ...}` map.
fn labels_from_map(map: BTreeMap<String, String>) -> std::result::Result<Vec<String>, String> {
    let mut pairs = map
        .into_iter()
        .map(|(k, v)| {
            k.parse::<usize>()
                .map(|i| (i, v))
                .map_err(|_| format!("id2label key '{k}' is not an integer"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    pairs.sort_by_key(|(i, _)| *i);
    for (expected, (i, _)) in pairs.iter().enumerate() {
        if *i != expected {
            return Err(format!("id2label is missing index {expected}"));
        }
    }
    Ok(pairs.into_iter().map(|(_, v)| v).collect())
}

/// transformers' default names: `LABEL_0`, `LABEL_1`, …
pub fn default_labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("LABEL_{i}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelConfig> {
        ModelConfig::from_json_str(text, Path::new("config.json"))
    }

    const BERT: &str = r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
        "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":32}"#;

    #[test]
    fn bert_defaults_match_transformers() {
        let cfg = parse(BERT).unwrap();
        assert_eq!(cfg.architecture, Architecture::Bert);
        assert_eq!(cfg.type_vocab_size, 2);
        assert_eq!(cfg.id2label, vec!["LABEL_0", "LABEL_1"]);
        assert_eq!(cfg.hidden_act, Activation::Gelu);
        assert_eq!(cfg.head_dropout(), 0.1);
    }

    #[test]
    fn distilbert_spelling_is_normalised() {
        let cfg = parse(
            r#"{"model_type":"distilbert","vocab_size":10,"dim":8,"n_layers":1,"n_heads":2,
            "hidden_dim":16,"max_position_embeddings":32,"activation":"gelu","dropout":0.2,
            "attention_dropout":0.3,"seq_classif_dropout":0.4,
            "id2label":{"1":"pos","0":"neg"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.architecture, Architecture::DistilBert);
        assert_eq!((cfg.hidden_size, cfg.intermediate_size), (8, 16));
        assert_eq!(cfg.type_vocab_size, 0);
        assert_eq!(cfg.head_dropout(), 0.4);
        assert_eq!(cfg.attention_probs_dropout_prob, 0.3);
        assert_eq!(cfg.id2label, vec!["neg", "pos"]);
    }

    #[test]
    fn unknown_model_type_is_a_clear_error() {
        let err = parse(&BERT.replace("\"bert\"", "\"gpt2\"")).unwrap_err();
        assert!(
            err.to_string().contains("unsupported model_type 'gpt2'"),
            "{err}"
        );
        assert!(err.to_string().starts_with("config.json:"), "{err}");
    }

    #[test]
    fn unknown_activation_is_a_clear_error() {
        let text = BERT.replace("\"vocab_size\"", "\"hidden_act\":\"swiglu\",\"vocab_size\"");
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("swiglu"), "{err}");
    }

    #[test]
    fn saved_json_carries_labels_and_architecture() {
        let cfg = parse(BERT)
            .unwrap()
            .with_labels(vec!["neg".into(), "pos".into()]);
        let json = cfg.to_json();
        assert_eq!(json["id2label"]["1"], "pos");
        assert_eq!(json["label2id"]["neg"], 0);
        assert_eq!(json["architectures"][0], "BertForSequenceClassification");
        assert_eq!(json["vocab_size"], 10);
    }
}
