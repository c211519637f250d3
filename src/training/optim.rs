//! AdamW with transformers' parameter groups: weight decay on everything but biases and
//! LayerNorm weights.

use burn::module::ParamGroup;
use burn::optim::ModuleOptimizer;

use super::adamw::AdamW;

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
    let with_decay = |weight_decay: f64| {
        AdamW::new(
            config.adam_beta1 as f32,
            config.adam_beta2 as f32,
            config.adam_epsilon as f32,
            weight_decay as f32,
        )
    };
    let group = ParamGroup::from_regex(NO_DECAY).expect("NO_DECAY is a valid regex");
    ModuleOptimizer::from(with_decay(config.weight_decay)).with_group(group, with_decay(0.0), None)
}
