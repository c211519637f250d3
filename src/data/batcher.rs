//! Dynamic padding: a list of [`Encoded`] examples becomes one batch of tensors padded to the
//! longest member.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::tokenizer::{Encoded, Padding};

/// Model inputs for one batch, all `[batch, seq]` where `seq` is the longest example.
#[derive(Clone, Debug)]
pub struct TextBatch {
    /// Token ids, padded with the padding id.
    pub input_ids: Tensor<2, Int>,
    /// Segment ids (0 for the first text, 1 for the pair), padded with 0.
    pub token_type_ids: Tensor<2, Int>,
    /// 1 on real tokens, 0 on padding.
    pub attention_mask: Tensor<2, Int>,
}

/// Pads `examples` (input ids with the padding id, segments and mask with 0) to
/// `padding.length(longest)`: `[batch, seq]` tensors.
///
/// # Panics
/// If `examples` is empty.
pub fn collate(examples: &[&Encoded], padding: impl Into<Padding>, device: &Device) -> TextBatch {
    assert!(!examples.is_empty(), "collate needs at least one example");
    let padding: Padding = padding.into();
    let pad_id = padding.id;
    let longest = examples
        .iter()
        .map(|e| e.input_ids.len())
        .max()
        .unwrap_or(0);
    let seq = padding.length(longest);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rounds_up_to_the_multiple_but_not_past_max_len() {
        let padding = Padding {
            id: 0,
            multiple: 32,
            max_len: 100,
        };
        assert_eq!(padding.length(1), 32);
        assert_eq!(padding.length(32), 32);
        assert_eq!(padding.length(33), 64);
        assert_eq!(padding.length(97), 100);
        assert_eq!(Padding::from(7).length(13), 13);
        let examples = [
            Encoded {
                input_ids: vec![5; 3],
                token_type_ids: vec![0; 3],
            },
            Encoded {
                input_ids: vec![5; 40],
                token_type_ids: vec![0; 40],
            },
        ];
        let refs: Vec<&Encoded> = examples.iter().collect();
        let device = Device::default();
        let batch = collate(&refs, padding, &device);
        assert_eq!(batch.input_ids.dims(), [2, 64]);
        let mask = batch.attention_mask.into_data().convert::<i64>();
        let mask = mask.as_slice::<i64>().unwrap();
        assert_eq!(mask.iter().sum::<i64>(), 43);
        assert_eq!(mask[..4], [1, 1, 1, 0]);
    }
}
