//! AdamW with transformers' parameter groups: weight decay on everything but biases and
//! LayerNorm weights.

use burn::module::ParamGroup;
use burn::optim::{AdamWConfig, ModuleOptimizer};

use crate::config::TrainConfig;

/// Parameter paths (Burn names: a LayerNorm's weight is `gamma`, its bias `beta`) that get no
/// weight decay, like transformers' biases and LayerNorm parameters (by module type, so
/// ModernBERT's `norm`, `attn_norm`, `mlp_norm` and `final_norm` too).
pub const NO_DECAY: &str = r"(\.bias|\.beta|\.gamma)$";

/// Whether the parameter at `path` gets weight decay.
pub fn decays(path: &str) -> bool {
    !regex::Regex::new(NO_DECAY)
        .expect("NO_DECAY is a valid regex")
        .is_match(path)
}

/// AdamW with every field set from the config (Burn's defaults differ from PyTorch's), and a
/// second group without weight decay.
pub fn adamw(config: &TrainConfig) -> ModuleOptimizer {
    let base = AdamWConfig::new()
        .with_beta_1(config.adam_beta1 as f32)
        .with_beta_2(config.adam_beta2 as f32)
        .with_epsilon(config.adam_epsilon as f32)
        .with_weight_decay(config.weight_decay as f32);
    let no_decay = base.clone().with_weight_decay(0.0).build();
    let group = ParamGroup::from_regex(NO_DECAY).expect("NO_DECAY is a valid regex");
    base.init().with_group(group, no_decay, None)
}
