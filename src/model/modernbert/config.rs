//! ModernBERT's fields of `config.json`, in the hub's spelling and transformers 5's.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::model::activation::Activation;

/// How the classifier pools the last hidden state (`classifier_pooling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The first token (`cls`).
    Cls,
    /// The mean over real tokens (`mean`).
    Mean,
}

/// ModernBERT's settings beyond the shared ones (`config.json`, both the hub's spelling with
/// `global_rope_theta` / `global_attn_every_n_layers` and transformers 5's `layer_types` /
/// `rope_parameters`).
#[derive(Clone, Debug)]
pub struct ModernBertConfig {
    /// Per layer: `true` for global attention, `false` for the local window.
    pub global_layers: Vec<bool>,
    /// Rotary base of the global layers (`global_rope_theta`, default 160000).
    pub global_rope_theta: f64,
    /// Rotary base of the local layers (`local_rope_theta`, default 10000).
    pub local_rope_theta: f64,
    /// Local layers see keys at most `local_attention / 2` positions away.
    pub local_attention: usize,
    /// Biases of the LayerNorms (`norm_bias`).
    pub norm_bias: bool,
    /// Biases of `Wqkv` and the attention's `Wo` (`attention_bias`).
    pub attention_bias: bool,
    /// Biases of the MLP's `Wi` and `Wo` (`mlp_bias`).
    pub mlp_bias: bool,
    /// Bias of the head's dense layer (`classifier_bias`).
    pub classifier_bias: bool,
    /// Dropout after the embedding norm (`embedding_dropout`).
    pub embedding_dropout: f64,
    /// Dropout inside the MLP (`mlp_dropout`).
    pub mlp_dropout: f64,
    /// Dropout on the attention probabilities and output (`attention_dropout`).
    pub attention_dropout: f64,
    /// Pooling of the classifier (`classifier_pooling`).
    pub classifier_pooling: Pooling,
    /// Activation of the head (`classifier_activation`).
    pub classifier_activation: Activation,
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_type: Option<String>,
    rope_theta: Option<f64>,
}

#[derive(Deserialize)]
struct RawModernBert {
    #[serde(default = "every_third")]
    global_attn_every_n_layers: usize,
    layer_types: Option<Vec<String>>,
    rope_parameters: Option<BTreeMap<String, RopeParameters>>,
    global_rope_theta: Option<f64>,
    local_rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    #[serde(default = "window")]
    local_attention: usize,
    #[serde(default)]
    norm_bias: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    classifier_bias: bool,
    #[serde(default)]
    embedding_dropout: f64,
    #[serde(default)]
    mlp_dropout: f64,
    #[serde(default)]
    attention_dropout: f64,
    #[serde(default = "cls")]
    classifier_pooling: String,
    #[serde(default = "gelu")]
    classifier_activation: String,
}

fn every_third() -> usize {
    3
}
fn window() -> usize {
    128
}
fn cls() -> String {
    "cls".into()
}
fn gelu() -> String {
    "gelu".into()
}

impl ModernBertConfig {
    /// Reads ModernBERT's fields from `config.json`; `layers` is `num_hidden_layers`. The error
    /// is one line naming the field.
    pub fn from_json(raw: &Value, layers: usize) -> Result<Self, String> {
        let cfg: RawModernBert = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        if cfg.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("ModernBERT with rope_scaling is not supported".into());
        }
        let global_layers = match &cfg.layer_types {
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(true),
                    "sliding_attention" => Ok(false),
                    other => Err(format!("unsupported layer_types entry '{other}'")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            None if cfg.global_attn_every_n_layers == 0 => {
                return Err("global_attn_every_n_layers must be at least 1".into());
            }
            None => (0..layers)
                .map(|i| i % cfg.global_attn_every_n_layers == 0)
                .collect(),
        };
        if global_layers.len() != layers {
            return Err(format!(
                "layer_types has {} entries for {layers} layers",
                global_layers.len()
            ));
        }
        let theta = |kind: &str, flat: Option<f64>, default: f64| {
            let params = cfg.rope_parameters.as_ref().and_then(|p| p.get(kind));
            match params.and_then(|p| p.rope_type.as_deref()) {
                None | Some("default") => Ok(params
                    .and_then(|p| p.rope_theta)
                    .or(flat)
                    .unwrap_or(default)),
                Some(other) => Err(format!(
                    "unsupported rope_type '{other}' for {kind} (only 'default')"
                )),
            }
        };
        let classifier_pooling = match cfg.classifier_pooling.as_str() {
            "cls" => Pooling::Cls,
            "mean" => Pooling::Mean,
            other => {
                return Err(format!(
                    "unsupported classifier_pooling '{other}' (supported: cls, mean)"
                ));
            }
        };
        Ok(Self {
            global_rope_theta: theta("full_attention", cfg.global_rope_theta, 160_000.0)?,
            local_rope_theta: theta("sliding_attention", cfg.local_rope_theta, 10_000.0)?,
            global_layers,
            local_attention: cfg.local_attention,
            norm_bias: cfg.norm_bias,
            attention_bias: cfg.attention_bias,
            mlp_bias: cfg.mlp_bias,
            classifier_bias: cfg.classifier_bias,
            embedding_dropout: cfg.embedding_dropout,
            mlp_dropout: cfg.mlp_dropout,
            attention_dropout: cfg.attention_dropout,
            classifier_pooling,
            classifier_activation: Activation::parse(
                &cfg.classifier_activation,
                "classifier_activation",
            )?,
        })
    }
}
