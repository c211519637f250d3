//! BERT-family models built from Burn modules, one struct per Hugging Face sub-module.

mod activation;
mod attention;
mod classifier;
mod config;
mod dropout;
mod embeddings;
mod encoder;
mod mixed;

pub use activation::*;
pub use attention::*;
pub use classifier::*;
pub use config::*;
pub use dropout::seed_dropout;
pub use embeddings::*;
pub use encoder::*;
pub use mixed::*;
