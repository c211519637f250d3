//! Batched inference: texts in, label scores out.

use burn::tensor::Device;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::checkpoint::{LoadedClassifier, load_classifier, resolve_model};
use crate::data::{Encoded, TextTokenizer, collate};
use crate::error::{Error, Result};
use crate::metrics::argmax;
use crate::model::{Architecture, ModelConfig, ProblemType, SequenceClassifier};

/// One input row: a text and an optional second text of a pair.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct TextInput {
    /// The text.
    pub text: String,
    /// The second text of a pair, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_pair: Option<String>,
}

/// The model's answer for one input.
#[derive(Clone, Debug, PartialEq)]
pub enum Prediction {
    /// Softmax over the labels; `label` is the most probable.
    SingleLabel {
        /// The most probable label.
        label: String,
        /// Each label with its probability, in model order (most probable first after `top_k`).
        scores: Vec<(String, f32)>,
    },
    /// Independent sigmoid per label; `labels` are those at or above the threshold.
    MultiLabel {
        /// The labels at or above the threshold, in model order.
        labels: Vec<String>,
        /// Each label with its probability, in model order (most probable first after `top_k`).
        scores: Vec<(String, f32)>,
    },
    /// The raw regression output.
    Regression {
        /// The model's single output.
        score: f32,
    },
}

impl Prediction {
    /// Keeps the `k` most probable labels in `scores` (most probable first).
    pub fn top_k(self, k: Option<usize>) -> Self {
        let Some(k) = k else { return self };
        let cut = |mut scores: Vec<(String, f32)>| {
            scores.sort_by(|a, b| b.1.total_cmp(&a.1));
            scores.truncate(k);
            scores
        };
        match self {
            Self::SingleLabel { label, scores } => Self::SingleLabel {
                label,
                scores: cut(scores),
            },
            Self::MultiLabel { labels, scores } => Self::MultiLabel {
                labels,
                scores: cut(scores),
            },
            other => other,
        }
    }
}

/// Serialises as `{"label": …, "scores": {label: p, …}}` with labels in model order.
impl Serialize for Prediction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Scores<'a>(&'a [(String, f32)]);
        impl Serialize for Scores<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (label, p) in self.0 {
                    map.serialize_entry(label, p)?;
                }
                map.end()
            }
        }
        let mut map = serializer.serialize_map(None)?;
        match self {
            Self::SingleLabel { label, scores } => {
                map.serialize_entry("label", label)?;
                map.serialize_entry("scores", &Scores(scores))?;
            }
            Self::MultiLabel { labels, scores } => {
                map.serialize_entry("labels", labels)?;
                map.serialize_entry("scores", &Scores(scores))?;
            }
            Self::Regression { score } => map.serialize_entry("score", score)?,
        }
        map.end()
    }
}

/// The problem type a config asks for, inferred like transformers when unset.
pub fn problem_type(config: &ModelConfig) -> ProblemType {
    config.problem_type.unwrap_or(if config.num_labels() == 1 {
        ProblemType::Regression
    } else {
        ProblemType::SingleLabel
    })
}

/// The longest input the model's position embeddings allow (at most 512, but ModernBERT's
/// rotary positions: its `max_position_embeddings`, 8192 on the hub).
pub fn model_max_len(config: &ModelConfig) -> usize {
    let (offset, cap) = match config.architecture {
        Architecture::Roberta => (config.pad_token_id + 1, 512),
        Architecture::ModernBert => (0, usize::MAX),
        _ => (0, 512),
    };
    config
        .max_position_embeddings
        .saturating_sub(offset)
        .min(cap)
}

/// A loaded model with its tokenizer, ready to label texts.
pub struct Predictor {
    /// The classifier.
    pub model: SequenceClassifier,
    /// The model's configuration (labels, problem type, limits).
    pub config: ModelConfig,
    /// The tokenizer, with the predictor's truncation and padding.
    pub tokenizer: TextTokenizer,
    /// The device the model runs on.
    pub device: Device,
    /// Probability at or above which a multi-label output counts as present.
    pub threshold: f32,
}

impl Predictor {
    /// Loads `--model` (directory or hub id). `max_len` defaults to the model's limit.
    /// Returns the predictor and the loader's notices.
    pub fn load(
        model: &str,
        max_len: Option<usize>,
        device: Device,
    ) -> Result<(Self, Vec<String>)> {
        let dir = resolve_model(model)?;
        let LoadedClassifier {
            model,
            config,
            notices,
        } = load_classifier(&dir, None, &device)?;
        let limit = model_max_len(&config);
        let max_len = max_len.unwrap_or(limit);
        if max_len > limit {
            return Err(Error::Input(format!(
                "--max-len {max_len} exceeds what the model supports ({limit})"
            )));
        }
        let tokenizer = TextTokenizer::from_dir(&dir, max_len, config.pad_token_id as u32)?;
        let predictor = Self {
            model,
            config,
            tokenizer,
            device,
            threshold: 0.5,
        };
        Ok((predictor, notices))
    }

    /// Tokenizes every input.
    pub fn encode(&self, inputs: &[TextInput]) -> Result<Vec<Encoded>> {
        self.tokenizer.encode_batch(
            inputs
                .iter()
                .map(|i| (i.text.as_str(), i.text_pair.as_deref())),
        )
    }

    /// Raw logits `[inputs.len()][num_labels]`, computed in batches of similar length.
    pub fn logits(&self, inputs: &[TextInput], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        let encoded = self.encode(inputs)?;
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].input_ids.len());
        let mut out = vec![Vec::new(); encoded.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let examples: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
            let rows = self.forward_rows(&examples)?;
            for (&i, row) in chunk.iter().zip(rows) {
                out[i] = row;
            }
        }
        Ok(out)
    }

    /// Predictions for every input, in input order.
    pub fn predict(&self, inputs: &[TextInput], batch_size: usize) -> Result<Vec<Prediction>> {
        let problem = problem_type(&self.config);
        Ok(self
            .logits(inputs, batch_size)?
            .into_iter()
            .map(|logits| self.to_prediction(problem, &logits))
            .collect())
    }

    /// Logits `[examples.len()][num_labels]` of one padded batch.
    pub fn forward_rows(&self, examples: &[&Encoded]) -> Result<Vec<Vec<f32>>> {
        let batch = collate(examples, self.tokenizer.padding(), &self.device);
        let logits = self
            .model
            .logits(batch.input_ids, batch.token_type_ids, batch.attention_mask);
        let [_, width] = logits.dims();
        let values = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Device(format!("reading model output: {e:?}")))?;
        Ok(values.chunks(width).map(<[f32]>::to_vec).collect())
    }

    /// The problem type of the model.
    pub fn problem(&self) -> ProblemType {
        problem_type(&self.config)
    }

    /// The prediction a row of logits stands for.
    pub fn to_prediction(&self, problem: ProblemType, logits: &[f32]) -> Prediction {
        let labels = &self.config.id2label;
        match problem {
            ProblemType::Regression => Prediction::Regression { score: logits[0] },
            ProblemType::SingleLabel => {
                let probs = softmax_row(logits);
                let best = argmax(&probs);
                Prediction::SingleLabel {
                    label: labels[best].clone(),
                    scores: labels.iter().cloned().zip(probs).collect(),
                }
            }
            ProblemType::MultiLabel => {
                let probs: Vec<f32> = logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect();
                Prediction::MultiLabel {
                    labels: labels
                        .iter()
                        .zip(&probs)
                        .filter(|(_, p)| **p >= self.threshold)
                        .map(|(l, _)| l.clone())
                        .collect(),
                    scores: labels.iter().cloned().zip(probs).collect(),
                }
            }
        }
    }
}

fn softmax_row(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}
