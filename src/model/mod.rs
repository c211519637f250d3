//! BERT-family models built from Burn modules, one struct per Hugging Face sub-module: BERT's
//! modules (embeddings, attention, encoder, classifier; also RoBERTa's, DistilBERT's,
//! ELECTRA's and ALBERT's), and a file for each family with modules of its own
//! (`modernbert`, `deberta_v2`) that reuses the shared pieces (attention, heads, activations).

mod activation;
mod attention;
mod classifier;
mod config;
mod deberta_v2;
mod dropout;
mod embeddings;
mod encoder;
mod mixed;
mod modernbert;

pub use activation::*;
pub use attention::*;
pub use classifier::*;
pub use config::*;
pub use dropout::seed_dropout;
pub use embeddings::*;
pub use encoder::*;
pub use mixed::*;
pub use modernbert::*;
pub use deberta_v2::*;
