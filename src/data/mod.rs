//! Text in, tensors out: reading labelled files, labels, tokenization, batching.

mod batcher;
mod index;
mod labels;
mod loader;
mod order;
mod stream;
mod table;
mod tokenizer;

pub use batcher::*;
pub use index::*;
pub use labels::*;
pub use loader::*;
pub use order::*;
pub use stream::*;
pub use table::*;
pub use tokenizer::*;
