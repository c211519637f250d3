//! Saving a classifier the way transformers' `save_pretrained` does: `model.safetensors` with
//! transformers parameter names and layout, `config.json`, and the tokenizer files.

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot};
use burn::tensor::DType;
use safetensors::tensor::TensorView;

use super::keys::burn_to_hf;
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
    for tensor in model.collect(None, Some(Box::new(adapter)), false) {
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
    let views = named
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| fail(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| fail(e.to_string()))?;
    write_atomic(&weights, &bytes)?;

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
