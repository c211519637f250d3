//! Inference: batched prediction on texts, and streaming prediction over whole files.

mod bulk;
mod classifier;
mod predictor;

pub use bulk::*;
pub use classifier::*;
pub use predictor::*;
