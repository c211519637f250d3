//! LoRA fine-tuning through Burn's own [`Module::apply_lora`]: rank-r adapters on the weights
//! whose transformers name matches the targets (PEFT's defaults: the attention's query and value
//! projections), the classification head trainable, every other parameter frozen.

use burn::module::{Lora, Module, ModuleVisitor, Param, ParamGroup};
use burn::store::ModuleSnapshot;
use burn::tensor::Tensor;

use crate::checkpoint::{burn_to_hf, full_trained_modules};
use crate::error::{Error, Result};
use crate::model::{Architecture, SequenceClassifier};

/// PEFT's default LoRA targets for the family (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`).
pub fn default_lora_targets(arch: Architecture) -> &'static str {
    match arch {
        Architecture::DistilBert => r"\.(q_lin|v_lin)$",
        Architecture::DebertaV2 => r"\.(query_proj|value_proj)$",
        // PEFT has no default for ModernBERT; its fused query-key-value projection.
        Architecture::ModernBert => r"\.Wqkv$",
        _ => r"\.(query|value)$",
    }
}

/// What LoRA left trainable.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSummary {
    /// Transformers names of the adapted weights' modules (`….attention.self.query`).
    pub targets: Vec<String>,
    /// Parameters left trainable (adapters and head).
    pub trainable: usize,
    /// All parameters, a LoRA weight counting its base and its two factors.
    pub total: usize,
}

/// Attaches rank-`rank` adapters (scale `alpha / rank`) to the 2-D weights of `model` whose
/// transformers module name matches `targets`, and makes the head trainable.
pub fn apply_lora(
    model: SequenceClassifier,
    arch: Architecture,
    rank: usize,
    alpha: f64,
    targets: &str,
) -> Result<(SequenceClassifier, LoraSummary)> {
    let pattern = regex::Regex::new(targets)
        .map_err(|e| Error::Input(format!("--lora-targets '{targets}': {e}")))?;
    if rank == 0 {
        return Err(Error::Input("--lora-rank must be at least 1".into()));
    }
    let (_, trained) = full_trained_modules(arch);
    let mut paths = Vec::new();
    let mut names = Vec::new();
    // Burn's mappers see the model's variant as the first path segment (`Bert.encoder…`); the
    // names of the checkpoint table do not have it.
    for snapshot in model.collect(None, None, false) {
        let path = snapshot.name.clone();
        let local = path.split_once('.').map_or(path.as_str(), |(_, rest)| rest);
        let Some(module) =
            burn_to_hf(arch, local).and_then(|hf| hf.strip_suffix(".weight").map(str::to_string))
        else {
            continue;
        };
        let head = trained.iter().any(|prefix| local.starts_with(prefix));
        if snapshot.shape.len() == 2 && !head && pattern.is_match(&module) {
            paths.push(path);
            names.push(module);
        }
    }
    let trained = trained
        .iter()
        .map(|prefix| regex::escape(prefix))
        .collect::<Vec<_>>()
        .join("|");
    if paths.is_empty() {
        return Err(Error::Input(format!(
            "--lora-targets '{targets}' matches no weight matrix of the encoder (transformers names such as 'bert.encoder.layer.0.attention.self.query')"
        )));
    }
    let model = model
        .apply_lora(Lora::new(rank, alpha).set_param_group(ParamGroup::from_paths(paths)))
        .unfreeze_group(
            ParamGroup::from_regex(format!(r"^\w+\.({trained})"))
                .map_err(|e| Error::Input(format!("{e:?}")))?,
        );
    let (trainable, total) = count_params(&model);
    Ok((
        model,
        LoraSummary {
            targets: names,
            trainable,
            total,
        },
    ))
}

/// (trainable, all) parameter counts; a LoRA weight counts its base and its two factors.
pub fn count_params<M: Module>(model: &M) -> (usize, usize) {
    struct Count(usize, usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.lazy_shape().num_elements();
            self.1 += n;
            if param.is_require_grad() {
                self.0 += n;
            }
        }
    }
    let mut count = Count(0, 0);
    model.visit(&mut count);
    (count.0, count.1)
}
