//! Loading `model.safetensors` / `pytorch_model.bin` (single or sharded) into a
//! [`SequenceClassifier`], with transformers' rules for heads that are missing or resized.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    ApplyError, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};
use burn::tensor::{DType, Device};
use serde::Deserialize;

use super::keys::{SKIP_VARIANT, burn_to_hf, hf_to_burn};
use crate::error::{Error, Result};
use crate::model::{Architecture, ModelConfig, SequenceClassifier};

/// A classifier loaded from a checkpoint directory.
#[derive(Debug)]
pub struct LoadedClassifier {
    /// The model with the checkpoint's weights (and a fresh head where the notices say so).
    pub model: SequenceClassifier,
    /// The checkpoint's `config.json`, with the given labels applied.
    pub config: ModelConfig,
    /// One-line notices about freshly initialised parameters (a missing or resized head),
    /// the equivalent of transformers' load warnings.
    pub notices: Vec<String>,
}

/// Weight files in the order transformers prefers them.
const WEIGHT_FILES: &[&str] = &[
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

/// Loads the classifier in `dir` (`config.json` + weights).
///
/// `labels`, when given, sets the head's label names and size (e.g. the training labels);
/// otherwise the checkpoint's `id2label` is used. A head missing from the checkpoint (a bare
/// encoder) or of another size is freshly initialised with a notice; anything missing or
/// mis-shaped in the encoder is an error naming the tensor.
pub fn load_classifier(
    dir: &Path,
    labels: Option<Vec<String>>,
    device: &Device,
) -> Result<LoadedClassifier> {
    let mut config = ModelConfig::from_file(&dir.join("config.json"))?;
    if let Some(labels) = labels {
        config = config.with_labels(labels);
    }
    let mut model = SequenceClassifier::new(&config, device);
    let weights = weight_file(dir)?;
    let arch = config.architecture;
    let tensors = read_tensors(&weights)?
        .into_iter()
        .filter_map(|mut tensor| {
            tensor.name = hf_to_burn(arch, &tensor.name)?;
            Some(tensor)
        })
        .collect::<Vec<_>>();
    // Floats take the device's type (f32 unless --precision says otherwise).
    let float: DType = device.settings().float_dtype.into();
    let adapter: Box<dyn ModuleAdapter> =
        Box::new(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(float)));
    let result = model.apply(tensors, None, Some(adapter), SKIP_VARIANT);

    let checkpoint_error = |message: String| Error::Checkpoint {
        path: weights.clone(),
        message,
    };
    let mut resized = Vec::new();
    for error in &result.errors {
        match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } if is_head(path) => resized.push(format!(
                "{} {:?} -> {:?}",
                hf_name(arch, path),
                torch_shape(path, found.as_slice()),
                torch_shape(path, expected.as_slice())
            )),
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => {
                return Err(checkpoint_error(format!(
                    "tensor '{}' has shape {:?}, the config needs {:?}",
                    hf_name(arch, path),
                    torch_shape(path, found.as_slice()),
                    torch_shape(path, expected.as_slice())
                )));
            }
            ApplyError::DTypeMismatch { path, found, .. } => {
                return Err(checkpoint_error(format!(
                    "tensor '{}' has unsupported dtype {found:?}",
                    hf_name(arch, path)
                )));
            }
            ApplyError::AdapterError { path, message }
            | ApplyError::LoadError { path, message } => {
                return Err(checkpoint_error(format!(
                    "tensor '{}' could not be read: {message}",
                    hf_name(arch, path)
                )));
            }
        }
    }
    let (fresh, missing): (Vec<_>, Vec<_>) = result
        .missing
        .iter()
        .map(|(path, _)| path)
        .partition(|path| is_head(path));
    if let Some(path) = missing.first() {
        return Err(checkpoint_error(format!(
            "tensor '{}' is missing ({} encoder tensors missing in all); is this a {} checkpoint?",
            hf_name(arch, path),
            missing.len(),
            arch.model_type()
        )));
    }
    let mut notices = Vec::new();
    if !fresh.is_empty() {
        let names: BTreeSet<String> = fresh.iter().map(|p| hf_name(arch, p)).collect();
        notices.push(format!(
            "newly initialised (not in {}): {}",
            weights.display(),
            names.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if !resized.is_empty() {
        notices.push(format!(
            "re-initialised with {} labels (size differs in {}): {}",
            config.num_labels(),
            weights.display(),
            resized.join(", ")
        ));
    }
    Ok(LoadedClassifier {
        model,
        config,
        notices,
    })
}

/// Parameters that transformers initialises afresh rather than failing on.
fn is_head(path: &str) -> bool {
    path.starts_with("head.") || path.starts_with("pooler.")
}

/// A shape as PyTorch lays the tensor out (Linear weights are stored transposed in Burn).
fn torch_shape(path: &str, shape: &[usize]) -> Vec<usize> {
    let mut shape = shape.to_vec();
    if shape.len() == 2 && !path.starts_with("embeddings.") {
        shape.reverse();
    }
    shape
}

/// The transformers name of a burnbert parameter path, for messages.
fn hf_name(arch: Architecture, path: &str) -> String {
    let torch_path = path
        .strip_suffix(".gamma")
        .map(|p| format!("{p}.weight"))
        .or_else(|| path.strip_suffix(".beta").map(|p| format!("{p}.bias")))
        .unwrap_or_else(|| path.to_string());
    burn_to_hf(arch, &torch_path).unwrap_or(torch_path)
}

/// The weights file of a model directory.
pub fn weight_file(dir: &Path) -> Result<PathBuf> {
    WEIGHT_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| Error::Checkpoint {
            path: dir.to_path_buf(),
            message: format!("no weights found (looked for {})", WEIGHT_FILES.join(", ")),
        })
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

/// Every tensor of a weights file, or of all shards listed by an `*.index.json`.
pub fn read_tensors(path: &Path) -> Result<Vec<PackTensor>> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.ends_with(".index.json") {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let index: ShardIndex = serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let shards: BTreeSet<&String> = index.weight_map.values().collect();
        let mut tensors = Vec::new();
        for shard in shards {
            tensors.extend(read_tensors(&dir.join(shard))?);
        }
        return Ok(tensors);
    }
    if !path.is_file() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: "file not found".into(),
        });
    }
    let corrupt = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot read checkpoint: {message}"),
    };
    if name.ends_with(".safetensors") {
        let mut store = SafetensorsStore::from_file(path);
        let all = store
            .get_all_tensors()
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(all.values().cloned().collect())
    } else {
        let mut store = PytorchStore::from_file(path);
        let all = store
            .get_all_tensors()
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(all.values().cloned().collect())
    }
}
