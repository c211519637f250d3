//! Text in, tensors out: reading labelled files, labels, tokenization, batching.

mod batcher;
mod labels;
mod loader;
mod split;
mod stream;
mod table;
mod tokenizer;

pub use batcher::*;
pub use labels::*;
pub use loader::*;
pub use split::*;
pub use stream::*;
pub use table::*;
pub use tokenizer::*;
