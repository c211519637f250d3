//! Inference: batched prediction on texts, and streaming prediction over whole files.

mod bulk;
mod predictor;

pub use bulk::*;
pub use predictor::*;
