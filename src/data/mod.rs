//! Text in, tensors out: reading labelled files, labels, tokenization, batching.

mod batcher;
mod labels;
mod loader;
mod table;
mod tokenizer;

pub use batcher::*;
pub use labels::*;
pub use loader::*;
pub use table::*;
pub use tokenizer::*;
