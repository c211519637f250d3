//! `burnbert predict` end to end, through the built binary.

mod common;

use burnbert::metrics::argmax;
use common::{Reference, burnbert_err, burnbert_ok, fixtures, s};

#[test]
fn predict_prints_label_and_scores() {
    let model = fixtures().join("roberta");
    let line = burnbert_ok(&["predict", "--model", s(&model), "--text", "a fine film"]);
    let json: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let scores = json["scores"].as_object().unwrap();
    assert_eq!(scores.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    let total: f64 = scores.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5);
    // "a fine film" is input 0 of the parity fixtures: the label is transformers' argmax.
    let (logits, _) = Reference::open(&model.join("reference.safetensors")).f32("0.logits");
    assert_eq!(json["label"], ["a", "b", "c"][argmax(&logits)]);
}

#[test]
fn predict_reads_and_writes_jsonl_in_order() {
    let model = fixtures().join("distilbert");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let rows = common::inputs();
    let text: String = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(&input, text).unwrap();
    burnbert_ok(&[
        "predict",
        "--model",
        s(&model),
        "--max-len",
        "24",
        "--batch-size",
        "4",
        "--input",
        s(&input),
        "--output",
        s(&output),
    ]);
    let reference = Reference::open(&model.join("reference.safetensors"));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len());
    for (i, line) in lines.iter().enumerate() {
        let (logits, _) = reference.f32(&format!("{i}.logits"));
        assert_eq!(
            line["label"],
            ["LABEL_0", "LABEL_1"][argmax(&logits)],
            "row {i}"
        );
        assert_eq!(
            line["text"],
            rows[i].text.as_str(),
            "row {i} keeps its input"
        );
    }
}

#[test]
fn a_bad_input_row_is_one_clear_line_and_no_output() {
    let model = fixtures().join("distilbert");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, "{\"text\": \"ok\"}\n{\"txt\": \"typo\"}\n").unwrap();
    let line = burnbert_err(&[
        "predict",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&output),
    ]);
    assert!(
        line.contains("in.jsonl:2:") && line.contains("text"),
        "{line}"
    );
    assert!(!output.exists());
}

#[test]
fn an_unknown_model_type_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type": "gpt2", "vocab_size": 10}"#,
    )
    .unwrap();
    let line = burnbert_err(&["predict", "--model", s(dir.path()), "--text", "x"]);
    assert!(
        line.contains("config.json") && line.contains("gpt2"),
        "{line}"
    );
}

/// `--pad-to-multiple-of` changes batch shapes, never predictions; 0 is a one-line error.
#[test]
fn padding_to_a_multiple_leaves_predictions_unchanged() {
    let model = fixtures().join("roberta");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let text: String = common::inputs()
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(&input, text).unwrap();
    let scores = |multiple: &str| -> Vec<f64> {
        let out = burnbert_ok(&[
            "predict",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--max-len",
            "30",
            "--batch-size",
            "4",
            "--pad-to-multiple-of",
            multiple,
        ]);
        out.lines()
            .flat_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let map = v["scores"].as_object().unwrap().clone();
                map.into_iter().map(|(_, p)| p.as_f64().unwrap())
            })
            .collect()
    };
    let exact = scores("1");
    for multiple in ["8", "32"] {
        let padded = scores(multiple);
        assert_eq!(padded.len(), exact.len());
        let diff = exact
            .iter()
            .zip(&padded)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-5, "multiple {multiple}: {diff}");
    }
    let err = burnbert_err(&[
        "predict",
        "--model",
        s(&model),
        "--text",
        "x",
        "--pad-to-multiple-of",
        "0",
    ]);
    assert!(err.contains("--pad-to-multiple-of 0"), "{err}");
}
