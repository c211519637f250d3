//! Numerical parity with Python transformers (reference values from scripts/make_fixtures.py):
//! token ids, last hidden state, pooler output and logits agree within 1e-4 on every input,
//! alone and in a padded batch; so do the logits of `SequenceClassifier::logits` (what training
//! and prediction run: BERT-family models compute only the first position in the last layer).

mod common;

use std::path::Path;

use burn::tensor::Tensor;
use burnbert::data::{Encoded, collate};
use burnbert::inference::Predictor;
use common::{Reference, device, fixtures, inputs, max_abs_diff, values};

const TOLERANCE: f32 = 1e-4;

/// Checks one model directory against its reference file.
fn check_parity(model_dir: &Path, reference: &Path) {
    let reference = Reference::open(reference);
    let (predictor, _) = Predictor::load(
        model_dir.to_str().unwrap(),
        Some(reference.max_len()),
        device(),
    )
    .unwrap();
    let inputs = inputs();
    assert!(inputs.len() >= 8);
    let encoded = predictor.encode(&inputs).unwrap();
    for (i, enc) in encoded.iter().enumerate() {
        assert_eq!(
            enc.input_ids,
            reference.ids(&format!("{i}.input_ids")),
            "input {i} ids"
        );
        if reference.has(&format!("{i}.token_type_ids")) {
            assert_eq!(
                enc.token_type_ids,
                reference.ids(&format!("{i}.token_type_ids")),
                "input {i} token types"
            );
        }
    }
    assert!(
        encoded
            .iter()
            .any(|e| e.input_ids.len() == reference.max_len()),
        "some input is truncated to max_len"
    );

    // Each input alone.
    for (i, enc) in encoded.iter().enumerate() {
        let out = forward(&predictor, &[enc]);
        compare(
            &reference,
            i,
            "last_hidden_state",
            values(out.last_hidden_state),
        );
        compare(&reference, i, "logits", values(out.logits));
        compare(&reference, i, "logits", values(logits(&predictor, &[enc])));
        if let Some(pooled) = out.pooler_output {
            compare(&reference, i, "pooler_output", values(pooled));
        }
    }

    // All inputs in one batch padded to the longest: the real positions are unchanged.
    let all: Vec<&Encoded> = encoded.iter().collect();
    let out = forward(&predictor, &all);
    let [_, seq, hidden] = out.last_hidden_state.dims();
    let states = values(out.last_hidden_state);
    let [_, labels] = out.logits.dims();
    let full = values(out.logits);
    let first_only = values(logits(&predictor, &all));
    for (i, enc) in encoded.iter().enumerate() {
        let len = enc.input_ids.len();
        let row = &states[i * seq * hidden..(i * seq + len) * hidden];
        compare(&reference, i, "last_hidden_state", row.to_vec());
        for logits in [&full, &first_only] {
            let row = logits[i * labels..(i + 1) * labels].to_vec();
            compare(&reference, i, "logits", row);
        }
    }
}

fn logits(predictor: &Predictor, examples: &[&Encoded]) -> Tensor<2> {
    let batch = collate(examples, predictor.tokenizer.pad_id(), &predictor.device);
    predictor
        .model
        .logits(batch.input_ids, batch.token_type_ids, batch.attention_mask)
}

fn forward(predictor: &Predictor, examples: &[&Encoded]) -> burnbert::model::ClassifierOutput {
    let batch = collate(examples, predictor.tokenizer.pad_id(), &predictor.device);
    predictor
        .model
        .forward(batch.input_ids, batch.token_type_ids, batch.attention_mask)
}

fn compare(reference: &Reference, i: usize, what: &str, actual: Vec<f32>) {
    let (expected, _) = reference.f32(&format!("{i}.{what}"));
    let diff = max_abs_diff(&actual, &expected);
    assert!(diff <= TOLERANCE, "input {i} {what}: max abs diff {diff}");
}

#[test]
fn minilm_classifier_matches_transformers() {
    let dir = common::minilm_classifier_dir();
    check_parity(dir.path(), &fixtures().join("minilm/reference.safetensors"));
}

#[test]
fn roberta_matches_transformers() {
    let dir = fixtures().join("roberta");
    check_parity(&dir, &dir.join("reference.safetensors"));
}

/// XLM-RoBERTa and CamemBERT: RoBERTa's modules under their own `model_type`, with a
/// SentencePiece-style (Unigram, Metaspace) tokenizer.
#[test]
fn xlm_roberta_and_camembert_match_transformers() {
    for name in ["xlm-roberta", "camembert"] {
        let dir = fixtures().join(name);
        check_parity(&dir, &dir.join("reference.safetensors"));
    }
}

/// ELECTRA with `embedding_size` ≠ `hidden_size` (`embeddings_project`) and its head.
#[test]
fn electra_matches_transformers() {
    let dir = fixtures().join("electra");
    check_parity(&dir, &dir.join("reference.safetensors"));
}

/// ALBERT: 4 layers sharing 2 groups, factorized embeddings, SentencePiece-style tokenizer.
#[test]
fn albert_matches_transformers() {
    let dir = fixtures().join("albert");
    check_parity(&dir, &dir.join("reference.safetensors"));
}

/// ModernBERT with cls pooling and no biases, and with mean pooling and every bias: rotary
/// positions, a local layer whose 8-token window is shorter than most inputs, GeGLU, the
/// prediction head.
#[test]
fn modernbert_matches_transformers() {
    for name in ["modernbert", "modernbert-mean"] {
        let dir = fixtures().join(name);
        check_parity(&dir, &dir.join("reference.safetensors"));
    }
}

/// DeBERTa v3-style (log position buckets, shared keys, normalised relative embeddings) and
/// v2-style (convolution layer, own position projections, absolute positions, token types,
/// embedding_size ≠ hidden_size).
#[test]
fn deberta_v3_and_v2_match_transformers() {
    // On flex, inference runs Burn's fused attention with DeBERTa's bias and scale, so this also
    // checks that path.
    #[cfg(feature = "flex")]
    assert_eq!(
        burnbert::backend::fused_attention(&burn::tensor::Device::flex(), true),
        Some(burnbert::backend::MaskSense::Hides)
    );
    for name in ["deberta-v3", "deberta-v2"] {
        let dir = fixtures().join(name);
        check_parity(&dir, &dir.join("reference.safetensors"));
    }
}

#[test]
fn distilbert_from_pytorch_bin_matches_transformers() {
    let dir = fixtures().join("distilbert");
    check_parity(&dir, &dir.join("reference.safetensors"));
}

#[test]
fn padding_mask_matters() {
    // Guard against a parity test that passes because padding is ignored by accident:
    // without the mask, padded rows must differ.
    let dir = fixtures().join("roberta");
    let (predictor, _) = Predictor::load(dir.to_str().unwrap(), Some(24), device()).unwrap();
    let short = predictor.tokenizer.encode("a fine film", None).unwrap();
    let long = predictor
        .tokenizer
        .encode("a much longer sentence about a film that goes on", None)
        .unwrap();
    let batch = collate(
        &[&short, &long],
        predictor.tokenizer.pad_id(),
        &predictor.device,
    );
    let unmasked = Tensor::<2, burn::tensor::Int>::ones_like(&batch.attention_mask);
    let masked = predictor.model.forward(
        batch.input_ids.clone(),
        batch.token_type_ids.clone(),
        batch.attention_mask,
    );
    let plain = predictor
        .model
        .forward(batch.input_ids, batch.token_type_ids, unmasked);
    let diff = max_abs_diff(&values(masked.logits), &values(plain.logits));
    assert!(diff > 1e-3, "mask had no effect ({diff})");
}
