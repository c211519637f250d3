//! Dynamic padding: a list of [`Encoded`] examples becomes one batch of tensors padded to the
//! longest member.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::tokenizer::Encoded;

/// Model inputs for one batch, all `[batch, seq]` where `seq` is the longest example.
#[derive(Clone, Debug)]
pub struct TextBatch {
    pub input_ids: Tensor<2, Int>,
    pub token_type_ids: Tensor<2, Int>,
    /// 1 on real tokens, 0 on padding.
    pub attention_mask: Tensor<2, Int>,
}

/// Pads `examples` to the longest one (input ids with `pad_id`, segments and mask with 0).
///
/// # Panics
/// If `examples` is empty.
pub fn collate(examples: &[&Encoded], pad_id: u32, device: &Device) -> TextBatch {
    assert!(!examples.is_empty(), "collate needs at least one example");
    let seq = examples
        .iter()
        .map(|e| e.input_ids.len())
        .max()
        .unwrap_or(0);
    let batch = examples.len();
    let mut ids = Vec::with_capacity(batch * seq);
    let mut types = Vec::with_capacity(batch * seq);
    let mut mask = Vec::with_capacity(batch * seq);
    for example in examples {
        let n = example.input_ids.len();
        ids.extend(example.input_ids.iter().map(|&t| t as i64));
        ids.extend(std::iter::repeat_n(pad_id as i64, seq - n));
        types.extend(example.token_type_ids.iter().map(|&t| t as i64));
        types.extend(std::iter::repeat_n(0, seq - n));
        mask.extend(std::iter::repeat_n(1i64, n));
        mask.extend(std::iter::repeat_n(0, seq - n));
    }
    let tensor = |values: Vec<i64>| {
        Tensor::<2, Int>::from_data(TensorData::new(values, [batch, seq]), device)
    };
    TextBatch {
        input_ids: tensor(ids),
        token_type_ids: tensor(types),
        attention_mask: tensor(mask),
    }
}
