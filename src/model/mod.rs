//! BERT-family models built from Burn modules, one struct per Hugging Face sub-module: BERT's
//! modules (embeddings, attention, encoder, classifier; also RoBERTa's, DistilBERT's,
//! ELECTRA's and ALBERT's), a folder for each family with modules of its own (`modernbert`,
//! `deberta_v2`: the modules, and `config.rs` for their fields of `config.json`) that reuses the
//! shared pieces (attention, heads, activations), and the `SequenceClassifier` of them all.

mod activation;
mod attention;
mod classifier;
mod config;
mod deberta_v2;
pub(crate) mod dropout;
mod embeddings;
mod encoder;
mod mixed;
mod modernbert;
mod sequence_classifier;

pub use activation::*;
pub use attention::*;
pub use classifier::*;
pub use config::*;
pub use deberta_v2::*;
pub use dropout::seed_dropout;
pub use embeddings::*;
pub use encoder::*;
pub use mixed::*;
pub use modernbert::*;
pub use sequence_classifier::*;
