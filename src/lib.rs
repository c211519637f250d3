//! burnbert: fine-tune pretrained BERT-family models for text classification with Burn.
//!
//! From code: [`Classifier`] labels texts with a fine-tuned model, [`train`] fine-tunes one from a
//! [`TrainConfig`] and returns its [`RunSummary`] (printing nothing). `examples/classify.rs` and
//! `examples/train.rs` show both.
//!
//! Data flows one way: CLI → config → data → batcher → model → Learner → artifacts. The
//! imports say the same: a module uses only modules after it in this order (tests/layers.rs
//! checks it), so nothing downstream reaches back up:
//! `cli` → `plot`, `serve` → `training` → `inference` → `config` → `checkpoint` → `data` → `model` →
//! `metrics`, `backend`, `fsutil`, `alloc` → `error`.

#![warn(missing_docs)]

pub mod alloc;
pub mod backend;
pub mod checkpoint;
mod cli;
pub mod config;
pub mod data;
pub mod error;
mod fsutil;
pub mod inference;
pub mod metrics;
pub mod model;
mod plot;
pub mod serve;
pub mod training;

pub use cli::main as run_cli;
pub use config::TrainConfig;
pub use error::{Error, Result};
pub use inference::{Classifier, Prediction};
pub use training::{RunSummary, train};

/// The default backend's default device (a GPU where the build's backend has one), in f32.
pub fn default_device() -> Result<burn::tensor::Device> {
    backend::select_device(None, "auto", backend::Precision::F32)
}
