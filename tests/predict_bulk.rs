//! `burnbert predict --input` on CSV/TSV/JSONL: input columns kept, predictions added.

mod common;

use burnbert::metrics::argmax;
use common::{Reference, burnbert_err, burnbert_ok, fixtures, inputs, s};

/// The parity texts that fit in a CSV cell, with their expected labels.
fn texts_and_labels() -> Vec<(String, String)> {
    let model = fixtures().join("distilbert");
    let reference = Reference::open(&model.join("reference.safetensors"));
    inputs()
        .into_iter()
        .enumerate()
        .filter(|(_, r)| r.text_pair.is_none())
        .map(|(i, r)| {
            let (logits, _) = reference.f32(&format!("{i}.logits"));
            (r.text, format!("LABEL_{}", argmax(&logits)))
        })
        .collect()
}

#[test]
fn csv_in_csv_out_keeps_every_column() {
    let model = fixtures().join("distilbert");
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
    let rows = texts_and_labels();
    let mut writer = csv::Writer::from_path(&input).unwrap();
    writer.write_record(["id", "text", "note"]).unwrap();
    for (i, (text, _)) in rows.iter().enumerate() {
        writer
            .write_record([i.to_string().as_str(), text, "keep, \"this\""])
            .unwrap();
    }
    writer.flush().unwrap();
    burnbert_ok(&[
        "predict",
        "--model",
        s(&model),
        "--max-len",
        "24",
        "--input",
        s(&input),
        "--output",
        s(&output),
    ]);
    let mut reader = csv::Reader::from_path(&output).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["id", "text", "note", "label", "scores"]);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows.len());
    for (record, (text, label)) in records.iter().zip(&rows) {
        assert_eq!(&record[1], text.as_str());
        assert_eq!(&record[2], "keep, \"this\"");
        assert_eq!(&record[3], label.as_str(), "{text}");
        let scores: serde_json::Value = serde_json::from_str(&record[4]).unwrap();
        assert_eq!(scores.as_object().unwrap().len(), 2);
    }
}

#[test]
fn tsv_in_jsonl_out_with_top_k() {
    let model = fixtures().join("distilbert");
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.tsv"), dir.path().join("out.jsonl"));
    let rows = texts_and_labels();
    let mut text = String::from("sentence\tsource\n");
    for (t, _) in &rows {
        text.push_str(&format!("{}\tweb\n", t.replace('\t', " ")));
    }
    std::fs::write(&input, text).unwrap();
    burnbert_ok(&[
        "predict",
        "--model",
        s(&model),
        "--max-len",
        "24",
        "--text-column",
        "sentence",
        "--top-k",
        "1",
        "--input",
        s(&input),
        "--output",
        s(&output),
    ]);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len());
    for line in &lines {
        assert_eq!(line["source"], "web");
        let scores = line["scores"].as_object().unwrap();
        assert_eq!(scores.len(), 1);
        assert!(scores.contains_key(line["label"].as_str().unwrap()));
    }
}

#[test]
fn a_missing_column_is_named() {
    let model = fixtures().join("distilbert");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "id,body\n1,hello\n").unwrap();
    let line = burnbert_err(&["predict", "--model", s(&model), "--input", s(&input)]);
    assert!(
        line.contains("no column 'text' (columns: id, body)"),
        "{line}"
    );
}
