//! Shared test helpers: fixture paths, the real all-MiniLM-L6-v2, reference values.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use burnbert::checkpoint::{DEFAULT_MODEL, resolve_model};
use burnbert::data::TOKENIZER_FILES;
use burnbert::inference::TextInput;

pub fn fixtures() -> PathBuf {
    repo("tests/fixtures")
}

/// The device of the backend this test binary was built with.
pub fn device() -> Device {
    burnbert::backend::select_device(None, "auto", burnbert::backend::Precision::F32)
        .expect("a backend")
}

/// The real all-MiniLM-L6-v2 (`$BURNBERT_MINILM_DIR`, else the HF cache, else fetched).
pub fn minilm_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BURNBERT_MINILM_DIR") {
        return dir.into();
    }
    resolve_model(DEFAULT_MODEL).expect("all-MiniLM-L6-v2 (see README: models)")
}

/// Assembles the 3-label classification checkpoint built by scripts/make_fixtures.py: the
/// committed head shard and index, with the real weights as shard 1.
pub fn minilm_classifier_dir() -> tempfile::TempDir {
    let base = minilm_dir();
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixtures().join("minilm");
    for name in [
        "config.json",
        "model.safetensors.index.json",
        "model-00002-of-00002.safetensors",
    ] {
        std::fs::copy(fixture.join(name), dir.path().join(name)).unwrap();
    }
    std::os::unix::fs::symlink(
        base.join("model.safetensors"),
        dir.path().join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    for name in TOKENIZER_FILES {
        if base.join(name).is_file() {
            std::fs::copy(base.join(name), dir.path().join(name)).unwrap();
        }
    }
    dir
}

/// The CI-sized SST-2 job (the quick start's: all-MiniLM-L6-v2, the first 2,000 training rows,
/// 1 epoch, the dev set), quiet, writing to `output`.
pub fn sst2_job(output: &Path) -> burnbert::TrainConfig {
    let mut c = sst2_config(output);
    c.max_train_samples = Some(2000);
    c.epochs = 1;
    c
}

/// The bundled SST-2 train and dev files, plain output into `output`, every other setting the
/// default.
pub fn sst2_config(output: &Path) -> burnbert::TrainConfig {
    let mut c = burnbert::TrainConfig::defaults();
    c.train = Some(repo("data/glue/sst2/train.tsv"));
    c.valid = Some(repo("data/glue/sst2/dev.tsv"));
    c.text_column = "sentence".into();
    c.no_tui = true;
    c.log_every = 1000;
    c.output = Some(output.to_path_buf());
    c
}

/// The texts every parity fixture was computed on.
pub fn inputs() -> Vec<TextInput> {
    let text = std::fs::read_to_string(fixtures().join("inputs.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Reference values written by scripts/make_fixtures.py.
pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    pub fn open(path: &Path) -> Self {
        Self {
            bytes: std::fs::read(path).unwrap(),
        }
    }

    fn view(&self) -> safetensors::SafeTensors<'_> {
        safetensors::SafeTensors::deserialize(&self.bytes).unwrap()
    }

    /// The `max_len` the reference ids were truncated to.
    pub fn max_len(&self) -> usize {
        let (_, meta) = safetensors::SafeTensors::read_metadata(&self.bytes).unwrap();
        meta.metadata().as_ref().unwrap()["max_len"]
            .parse()
            .unwrap()
    }

    pub fn has(&self, name: &str) -> bool {
        self.view().tensor(name).is_ok()
    }

    pub fn f32(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let view = self.view();
        let t = view.tensor(name).unwrap();
        let values = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (values, t.shape().to_vec())
    }

    pub fn ids(&self, name: &str) -> Vec<u32> {
        let view = self.view();
        let t = view.tensor(name).unwrap();
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect()
    }
}

/// Row-major values of a tensor.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().unwrap()
}

/// Largest absolute difference; panics if lengths differ.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs the built `burnbert` binary.
pub fn burnbert(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_burnbert"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `burnbert`, expecting success; returns stdout.
pub fn burnbert_ok(args: &[&str]) -> String {
    let out = burnbert(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `burnbert`, expecting a non-zero exit with exactly one line on stderr; returns it.
pub fn burnbert_err(args: &[&str]) -> String {
    let out = burnbert(args);
    assert!(!out.status.success(), "expected a failure: {args:?}");
    one_error_line(&out.stderr)
}

/// The one line a failed run wrote on stderr (asserting there is exactly one).
pub fn one_error_line(stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    // Mesa's software Vulkan (wgpu tests in CI) complains about a missing XDG_RUNTIME_DIR.
    let ours: Vec<&str> = stderr
        .trim()
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(ours.len(), 1, "{stderr}");
    ours[0].to_string()
}

/// A path inside this repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A path as the `&str` the helpers above take.
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Training runs take turns: Burn's seeded RNG is per process, so runs in parallel threads
/// would draw from it in an arbitrary interleaving and stop being reproducible.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the turn of one training run in this test process (see [`ONE_AT_A_TIME`]).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}
