//! Saving a classifier the way transformers' `save_pretrained` does: `model.safetensors` with
//! transformers parameter names and layout, `config.json`, and the tokenizer files.

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot};
use burn::tensor::DType;
use safetensors::tensor::TensorView;

use super::keys::{SKIP_VARIANT, burn_to_hf, full_trained_modules};
use crate::data::TOKENIZER_FILES;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::model::{ModelConfig, SequenceClassifier};

/// Writes `model.safetensors`, `config.json` and the tokenizer files of `tokenizer_dir`
/// into `dir`. Each file is written atomically.
pub fn save_pretrained(
    model: &SequenceClassifier,
    config: &ModelConfig,
    tokenizer_dir: &Path,
    dir: &Path,
) -> Result<()> {
    let weights = dir.join("model.safetensors");
    let fail = |message: String| Error::Checkpoint {
        path: weights.clone(),
        message,
    };
    let mut named = Vec::new();
    // Saved as f32 whatever the training precision, like transformers' default.
    let adapter = BurnToPyTorchAdapter.chain(FloatCastAdapter::to(DType::F32));
    for tensor in model.collect(None, Some(Box::new(adapter)), SKIP_VARIANT) {
        let name = burn_to_hf(config.architecture, &tensor.name)
            .ok_or_else(|| fail(format!("no transformers name for '{}'", tensor.name)))?;
        if tensor.dtype != DType::F32 {
            return Err(fail(format!(
                "'{name}' is {:?}, expected F32",
                tensor.dtype
            )));
        }
        let shape = tensor.shape.to_vec();
        let bytes = tensor
            .into_bytes()
            .map_err(|e| fail(format!("reading '{name}': {e:?}")))?;
        named.push((name, shape, bytes));
    }
    write_f32_safetensors(&weights, &named)?;

    let json = serde_json::to_string_pretty(&config.to_json()).unwrap_or_default();
    write_atomic(&dir.join("config.json"), json.as_bytes())?;
    for name in TOKENIZER_FILES {
        let src = tokenizer_dir.join(name);
        if src.is_file() {
            let content = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
            write_atomic(&dir.join(name), &content)?;
        }
    }
    Ok(())
}

/// What a LoRA run adapted, for [`save_peft_adapter`].
#[derive(Clone, Debug)]
pub struct PeftAdapter<'a> {
    /// The base model the adapter applies to (`base_model_name_or_path`).
    pub base_model: &'a str,
    /// The rank of the adapters (`r`).
    pub rank: usize,
    /// The LoRA scaling numerator (`lora_alpha`): adapters add (alpha / rank)·B·A.
    pub alpha: f64,
    /// Transformers names of the adapted modules (`bert.encoder.layer.0.attention.self.query`).
    pub targets: &'a [String],
}

/// Writes a LoRA-adapted `model` as a PEFT adapter into `dir`: `adapter_config.json`
/// (`task_type` SEQ_CLS, the head as `modules_to_save`) and `adapter_model.safetensors` with
/// PEFT's names (`base_model.model.<module>.lora_A.weight` `[r, in]`, `lora_B.weight`
/// `[out, r]`, and the head's weights), so that `PeftModel.from_pretrained` loads it.
pub fn save_peft_adapter(
    model: &SequenceClassifier,
    config: &ModelConfig,
    adapter: &PeftAdapter,
    dir: &Path,
) -> Result<()> {
    let weights = dir.join("adapter_model.safetensors");
    let fail = |message: String| Error::Checkpoint {
        path: weights.clone(),
        message,
    };
    let arch = config.architecture;
    let (head, trained) = full_trained_modules(arch);
    let mut named = Vec::new();
    let to_torch = BurnToPyTorchAdapter.chain(FloatCastAdapter::to(DType::F32));
    for tensor in model.collect(None, Some(Box::new(to_torch)), SKIP_VARIANT) {
        let path = tensor.name.clone();
        let (name, transpose) = if let Some(base) = path.strip_suffix(".lora.a") {
            (lora_key(arch, base, "lora_A"), true)
        } else if let Some(base) = path.strip_suffix(".lora.b") {
            (lora_key(arch, base, "lora_B"), true)
        } else if trained.iter().any(|prefix| path.starts_with(prefix)) {
            (
                burn_to_hf(arch, &path).map(|n| format!("base_model.model.{n}")),
                false,
            )
        } else {
            continue;
        };
        let name = name.ok_or_else(|| fail(format!("no transformers name for '{path}'")))?;
        let shape = tensor.shape.to_vec();
        let bytes = tensor
            .into_bytes()
            .map_err(|e| fail(format!("reading '{name}': {e:?}")))?
            .to_vec();
        // Burn's factors are `a: [in, r]`, `b: [r, out]`; torch's Linear weights `[out, in]`.
        let (shape, bytes) = if transpose {
            (
                vec![shape[1], shape[0]],
                transpose_f32(&bytes, shape[0], shape[1]),
            )
        } else {
            (shape, bytes)
        };
        named.push((name, shape, bytes));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_f32_safetensors(&weights, &named)?;
    let json = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "SEQ_CLS",
        "base_model_name_or_path": adapter.base_model,
        "r": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": 0.0,
        "target_modules": adapter.targets,
        "modules_to_save": head,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
    });
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    write_atomic(&dir.join("adapter_config.json"), text.as_bytes())
}

/// Writes f32 tensors (name, shape, little-endian bytes) to `path` as safetensors, atomically,
/// with transformers' `{"format": "pt"}` metadata.
fn write_f32_safetensors<B: std::ops::Deref<Target = [u8]>>(
    path: &Path,
    named: &[(String, Vec<usize>, B)],
) -> Result<()> {
    let fail = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let views = named
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(safetensors::Dtype::F32, shape.clone(), &**bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| fail(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| fail(e.to_string()))?;
    write_atomic(path, &bytes)
}

/// `base_model.model.<module>.<factor>.weight` for the LoRA factor of the weight at Burn `path`.
fn lora_key(arch: crate::model::Architecture, path: &str, factor: &str) -> Option<String> {
    let module = burn_to_hf(arch, path)?.strip_suffix(".weight")?.to_string();
    Some(format!("base_model.model.{module}.{factor}.weight"))
}

/// The `[rows, cols]` f32 matrix in `bytes` (little-endian) as `[cols, rows]`.
fn transpose_f32(bytes: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes.len()];
    for r in 0..rows {
        for c in 0..cols {
            let from = (r * cols + c) * 4;
            let to = (c * rows + r) * 4;
            out[to..to + 4].copy_from_slice(&bytes[from..from + 4]);
        }
    }
    out
}
