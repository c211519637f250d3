//! DeBERTa-v2's fields of `config.json`, and its log-bucketed relative positions.

use serde::Deserialize;
use serde_json::Value;

use crate::model::activation::Activation;

/// DeBERTa-v2's settings beyond the shared ones.
#[derive(Clone, Debug)]
pub struct DebertaV2Config {
    /// Relative-position attention (`relative_attention`).
    pub relative_attention: bool,
    /// Log buckets of relative positions (`position_buckets`; `None`: exact positions).
    pub position_buckets: Option<usize>,
    /// Largest relative distance (`max_relative_positions`, `max_position_embeddings` when < 1).
    pub max_relative_positions: usize,
    /// Content-to-position scores (`pos_att_type` has `c2p`).
    pub c2p: bool,
    /// Position-to-content scores (`pos_att_type` has `p2c`).
    pub p2c: bool,
    /// Positions projected by the content projections (`share_att_key`).
    pub share_att_key: bool,
    /// LayerNorm on the relative embeddings (`norm_rel_ebd` has `layer_norm`).
    pub norm_rel_ebd: bool,
    /// Absolute position embeddings added to the input (`position_biased_input`).
    pub position_biased_input: bool,
    /// v2's convolution after the first layer: `(conv_kernel_size, conv_groups, conv_act)`.
    pub conv: Option<(usize, usize, Activation)>,
    /// Dropout of `ContextPooler` (`pooler_dropout`).
    pub pooler_dropout: f64,
    /// Activation of `ContextPooler` (`pooler_hidden_act`).
    pub pooler_hidden_act: Activation,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PosAttType {
    Joined(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
struct RawDeberta {
    #[serde(default)]
    relative_attention: bool,
    #[serde(default = "minus_one")]
    position_buckets: i64,
    #[serde(default = "minus_one")]
    max_relative_positions: i64,
    max_position_embeddings: usize,
    pos_att_type: Option<PosAttType>,
    #[serde(default)]
    share_att_key: bool,
    norm_rel_ebd: Option<String>,
    #[serde(default = "yes")]
    position_biased_input: bool,
    #[serde(default)]
    conv_kernel_size: usize,
    #[serde(default = "one")]
    conv_groups: usize,
    #[serde(default = "tanh")]
    conv_act: String,
    #[serde(default)]
    pooler_dropout: f64,
    #[serde(default = "gelu")]
    pooler_hidden_act: String,
    pooler_hidden_size: Option<usize>,
    attention_head_size: Option<usize>,
    num_attention_heads: usize,
    hidden_size: usize,
}

fn minus_one() -> i64 {
    -1
}
fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn tanh() -> String {
    "tanh".into()
}
fn gelu() -> String {
    "gelu".into()
}

impl DebertaV2Config {
    /// Reads DeBERTa-v2's fields from `config.json` (`hidden` is `hidden_size`); the error is
    /// one line naming the field.
    pub fn from_json(raw: &Value, hidden: usize) -> Result<Self, String> {
        let cfg: RawDeberta = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        let kinds: Vec<String> = match cfg.pos_att_type {
            None => Vec::new(),
            Some(PosAttType::Joined(s)) => s.split('|').map(|k| k.trim().to_lowercase()).collect(),
            Some(PosAttType::List(list)) => list.iter().map(|k| k.trim().to_lowercase()).collect(),
        };
        if let Some(other) = kinds.iter().find(|k| !["c2p", "p2c"].contains(&k.as_str())) {
            return Err(format!(
                "unsupported pos_att_type '{other}' (supported: c2p, p2c)"
            ));
        }
        if cfg.pooler_hidden_size.is_some_and(|size| size != hidden) {
            return Err("pooler_hidden_size different from hidden_size is not supported".into());
        }
        if cfg
            .attention_head_size
            .is_some_and(|size| size * cfg.num_attention_heads != cfg.hidden_size)
        {
            return Err(
                "attention_head_size other than hidden_size / num_attention_heads is not supported"
                    .into(),
            );
        }
        let conv = match cfg.conv_kernel_size {
            0 => None,
            k if k % 2 == 0 => {
                return Err(format!(
                    "conv_kernel_size {k} is even (only odd sizes keep the length)"
                ));
            }
            k => Some((
                k,
                cfg.conv_groups.max(1),
                Activation::parse(&cfg.conv_act, "conv_act")?,
            )),
        };
        let norm_rel_ebd = cfg
            .norm_rel_ebd
            .unwrap_or_default()
            .to_lowercase()
            .split('|')
            .any(|k| k.trim() == "layer_norm");
        Ok(Self {
            relative_attention: cfg.relative_attention,
            position_buckets: (cfg.position_buckets > 0).then_some(cfg.position_buckets as usize),
            max_relative_positions: match cfg.max_relative_positions {
                n if n < 1 => cfg.max_position_embeddings,
                n => n as usize,
            },
            c2p: kinds.iter().any(|k| k == "c2p"),
            p2c: kinds.iter().any(|k| k == "p2c"),
            share_att_key: cfg.share_att_key,
            norm_rel_ebd,
            position_biased_input: cfg.position_biased_input,
            conv,
            pooler_dropout: cfg.pooler_dropout,
            pooler_hidden_act: Activation::parse(&cfg.pooler_hidden_act, "pooler_hidden_act")?,
        })
    }

    /// Rows on each side of the relative embeddings (`pos_ebd_size`, transformers' `att_span`).
    pub fn att_span(&self) -> usize {
        self.position_buckets.unwrap_or(self.max_relative_positions)
    }
}

/// transformers' `make_log_bucket_position` for one relative position `rel = i − j`, in f32 as
/// torch computes it: exact within `bucket_size / 2`, then log-spaced up to `max_position`.
pub fn log_bucket(rel: i64, bucket_size: usize, max_position: usize) -> i64 {
    let mid = (bucket_size / 2) as i64;
    if rel.abs() <= mid {
        return rel;
    }
    let ratio = ((max_position as f64 - 1.0) / mid as f64) as f32;
    let log = ((rel.abs() as f32 / mid as f32).ln() / ratio.ln() * (mid - 1) as f32).ceil();
    (log as i64 + mid) * rel.signum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' `make_log_bucket_position(rel, 256, 512)` for DeBERTa-v3's defaults, as
    /// torch computed them (transformers 5.24): exact up to ±128, log-spaced beyond.
    #[test]
    fn log_buckets_match_transformers() {
        for (rel, bucket) in [
            (0, 0),
            (5, 5),
            (-128, -128),
            (128, 128),
            (129, 129),
            (200, 169),
            (-200, -169),
            (511, 255),
            (1000, 317),
        ] {
            assert_eq!(log_bucket(rel, 256, 512), bucket, "rel {rel}");
        }
        // The fixtures' 8 buckets over 64 positions.
        for (rel, bucket) in [
            (4, 4),
            (5, 5),
            (7, 5),
            (9, 5),
            (23, 6),
            (-23, -6),
            (200, 9),
            (1000, 11),
        ] {
            assert_eq!(log_bucket(rel, 8, 64), bucket, "rel {rel}");
        }
    }
}
