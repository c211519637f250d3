//! `burnbert predict` end to end, through the built binary.

mod common;

use std::process::Command;

use common::{Reference, fixtures};

fn burnbert() -> Command {
    Command::new(env!("CARGO_BIN_EXE_burnbert"))
}

fn argmax(values: &[f32]) -> usize {
    (0..values.len())
        .max_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap()
}

#[test]
fn predict_prints_label_and_scores() {
    let model = fixtures().join("roberta");
    let out = burnbert()
        .args([
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--text",
            "a fine film",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
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
    let status = burnbert()
        .args([
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--max-len",
            "24",
            "--batch-size",
            "4",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success());
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
    }
}

#[test]
fn a_bad_input_row_is_one_clear_line_and_no_output() {
    let model = fixtures().join("distilbert");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, "{\"text\": \"ok\"}\n{\"txt\": \"typo\"}\n").unwrap();
    let out = burnbert()
        .args(["predict", "--model", model.to_str().unwrap()])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("in.jsonl:2:") && stderr.contains("text"),
        "{stderr}"
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
    let out = burnbert()
        .args([
            "predict",
            "--model",
            dir.path().to_str().unwrap(),
            "--text",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("config.json"), "{stderr}");
}
