//! Checkpoint loading rules: fresh and resized heads, clear errors for broken checkpoints,
//! and the vocab.txt tokenizer fallback.

mod common;

use std::collections::HashMap;
use std::path::Path;

use burnbert::checkpoint::load_classifier;
use burnbert::data::TextTokenizer;
use common::{device, fixtures, inputs};

fn labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("class{i}")).collect()
}

#[test]
fn bare_encoder_gets_a_fresh_head_with_the_callers_labels() {
    let loaded = load_classifier(&common::minilm_dir(), Some(labels(5)), &device()).unwrap();
    assert_eq!(loaded.config.num_labels(), 5);
    assert_eq!(loaded.model.classifier().weight.dims(), [384, 5]);
    assert_eq!(loaded.notices.len(), 1, "{:?}", loaded.notices);
    assert!(loaded.notices[0].contains("newly initialised"));
    assert!(loaded.notices[0].contains("classifier.weight"));
}

#[test]
fn a_head_of_another_size_is_reinitialised_with_a_notice() {
    let dir = common::minilm_classifier_dir();
    let loaded = load_classifier(dir.path(), Some(labels(2)), &device()).unwrap();
    assert_eq!(loaded.model.classifier().weight.dims(), [384, 2]);
    assert!(
        loaded
            .notices
            .iter()
            .any(|n| n.contains("re-initialised with 2 labels")
                && n.contains("classifier.weight [3, 384] -> [2, 384]")),
        "{:?}",
        loaded.notices
    );
    // With its own labels the checkpoint loads silently.
    let loaded = load_classifier(dir.path(), None, &device()).unwrap();
    assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
    assert_eq!(loaded.config.id2label, ["negative", "neutral", "positive"]);
}

/// Copies the RoBERTa fixture, rewriting its weights with `edit`.
fn edited_roberta(
    edit: impl FnOnce(&mut HashMap<String, (Vec<usize>, Vec<u8>)>),
) -> tempfile::TempDir {
    let src = fixtures().join("roberta");
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, (view.shape().to_vec(), view.data().to_vec())))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, (shape, data))| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    load_classifier(dir, None, &device())
        .unwrap_err()
        .to_string()
}

#[test]
fn a_missing_encoder_tensor_is_named() {
    let dir = edited_roberta(|t| {
        t.remove("roberta.encoder.layer.1.attention.self.key.weight");
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("roberta.encoder.layer.1.attention.self.key.weight"),
        "{err}"
    );
    assert!(err.contains("missing"), "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn a_wrong_shape_is_named() {
    let dir = edited_roberta(|t| {
        let (shape, data) = t
            .get_mut("roberta.encoder.layer.0.output.dense.bias")
            .unwrap();
        *shape = vec![16];
        data.truncate(16 * 4);
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("roberta.encoder.layer.0.output.dense.bias"),
        "{err}"
    );
    assert!(err.contains("[16]") && err.contains("[32]"), "{err}");
}

#[test]
fn a_corrupt_file_is_named() {
    let dir = edited_roberta(|_| {});
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn no_weights_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("roberta/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("no weights found"), "{err}");
}

#[test]
fn vocab_txt_fallback_tokenizes_like_tokenizer_json() {
    let minilm = common::minilm_dir();
    let dir = tempfile::tempdir().unwrap();
    for name in ["vocab.txt", "tokenizer_config.json"] {
        std::fs::copy(minilm.join(name), dir.path().join(name)).unwrap();
    }
    let fast = TextTokenizer::from_dir(&minilm, 128, 0).unwrap();
    let fallback = TextTokenizer::from_dir(dir.path(), 128, 0).unwrap();
    for input in inputs() {
        let pair = input.text_pair.as_deref();
        assert_eq!(
            fast.encode(&input.text, pair).unwrap(),
            fallback.encode(&input.text, pair).unwrap(),
            "{input:?}"
        );
    }
}
