//! `burnbert serve` as a real process on a free port: concurrent clients get exactly what
//! `burnbert predict` says, batches and pairs keep their shapes, bad requests get a 4xx JSON
//! error without failing the others, a full queue answers 429, and SIGTERM finishes what is in
//! flight and exits 0.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::{repo, s};
use serde_json::{Value, json};

/// A running server, killed when dropped.
struct Server {
    child: Child,
    url: String,
    _model: Arc<tempfile::TempDir>,
}

impl Server {
    fn start(model: Arc<tempfile::TempDir>, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_burnbert"))
            .args(["serve", "--model", s(model.path()), "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Self {
            child,
            url,
            _model: model,
        }
    }

    /// POSTs `body` to `/predict`: (status, JSON answer).
    fn predict(&self, body: &Value) -> (u16, Value) {
        match ureq::post(&format!("{}/predict", self.url)).send_json(body) {
            Ok(response) => (response.status(), response.into_json().unwrap()),
            Err(ureq::Error::Status(code, response)) => (code, response.into_json().unwrap()),
            Err(e) => panic!("{e}"),
        }
    }

    fn post_raw(&self, body: &str) -> (u16, Value) {
        match ureq::post(&format!("{}/predict", self.url)).send_string(body) {
            Ok(response) => (response.status(), response.into_json().unwrap()),
            Err(ureq::Error::Status(code, response)) => (code, response.into_json().unwrap()),
            Err(e) => panic!("{e}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first `n` SST-2 dev sentences.
fn sentences(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(repo("data/glue/sst2/dev.tsv")).unwrap();
    text.lines()
        .skip(1)
        .take(n)
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

/// `burnbert predict` on each of `texts` (one file, streamed): label → probability per text.
fn predicted(model: &std::path::Path, texts: &[String]) -> Vec<HashMap<String, f64>> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = texts
        .iter()
        .map(|t| json!({ "text": t }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let output = dir.path().join("out.jsonl");
    common::burnbert_ok(&[
        "predict",
        "--model",
        s(model),
        "--input",
        s(&input),
        "--output",
        s(&output),
    ]);
    std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["scores"].clone())
        .map(|scores| serde_json::from_value(scores).unwrap())
        .collect()
}

/// Asserts that `answer` lists every label of `expected` once, most probable first, with
/// `expected`'s probabilities.
fn assert_same(answer: &Value, expected: &HashMap<String, f64>, what: &str) {
    let list = answer
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {answer}"));
    assert_eq!(list.len(), expected.len(), "{what}: {answer}");
    let scores: Vec<f64> = list.iter().map(|x| x["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "{what}: not sorted: {answer}"
    );
    for item in list {
        let label = item["label"].as_str().unwrap();
        let diff = (item["score"].as_f64().unwrap() - expected[label]).abs();
        assert!(
            diff < 1e-5,
            "{what}: {label} differs by {diff}: {answer} vs {expected:?}"
        );
    }
}

fn model() -> Arc<tempfile::TempDir> {
    Arc::new(common::minilm_classifier_dir())
}

#[test]
fn concurrent_clients_get_what_predict_says() {
    let model = model();
    let texts = sentences(96);
    let expected = predicted(model.path(), &texts);
    let server = Arc::new(Server::start(model, &["--max-batch-tokens", "2048"]));
    // 24 clients at once, each sending its texts one by one and then as one batch.
    let clients: Vec<_> = (0..24)
        .map(|c| {
            let server = server.clone();
            let mine: Vec<(usize, String)> = texts
                .iter()
                .cloned()
                .enumerate()
                .filter(|(i, _)| i % 24 == c)
                .collect();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                for (i, text) in &mine {
                    let (status, answer) = server.predict(&json!({ "inputs": text }));
                    assert_eq!(status, 200, "{answer}");
                    answers.push((*i, answer));
                }
                let batch: Vec<Value> = mine.iter().map(|(_, t)| json!([t])).collect();
                let (status, answer) = server.predict(&json!({ "inputs": batch }));
                assert_eq!(status, 200, "{answer}");
                for ((i, _), one) in mine.iter().zip(answer.as_array().unwrap()) {
                    answers.push((*i, one.clone()));
                }
                answers
            })
        })
        .collect();
    let mut answered = 0;
    for client in clients {
        for (i, answer) in client.join().unwrap() {
            assert_same(&answer, &expected[i], &format!("text {i}"));
            answered += 1;
        }
    }
    assert_eq!(answered, 2 * texts.len());
    let metrics = ureq::get(&format!("{}/metrics", server.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("burnbert_requests_total{status=\"200\"} 120"),
        "{metrics}"
    );
    assert!(metrics.contains("burnbert_batch_size_count"), "{metrics}");
}

#[test]
fn pairs_raw_scores_info_and_health() {
    let model = model();
    let expected = {
        let out = common::burnbert_ok(&[
            "predict",
            "--model",
            s(model.path()),
            "--text",
            "a fine film",
            "--text-pair",
            "a dull mess",
        ]);
        let value: Value = serde_json::from_str(out.trim()).unwrap();
        serde_json::from_value::<HashMap<String, f64>>(value["scores"].clone()).unwrap()
    };
    let server = Server::start(model, &[]);
    let (status, answer) = server.predict(&json!({ "inputs": ["a fine film", "a dull mess"] }));
    assert_eq!(status, 200);
    assert_same(&answer, &expected, "pair");
    let (_, batch) = server.predict(&json!({ "inputs": [["a fine film", "a dull mess"], ["x"]] }));
    assert_same(&batch[0], &expected, "pair in a batch");
    assert_eq!(batch.as_array().unwrap().len(), 2);
    // Raw scores are logits: their softmax is the probabilities.
    let (_, raw) =
        server.predict(&json!({ "inputs": ["a fine film", "a dull mess"], "raw_scores": true }));
    let logits: HashMap<String, f64> = raw
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["label"].as_str().unwrap().to_string(),
                x["score"].as_f64().unwrap(),
            )
        })
        .collect();
    let total: f64 = logits.values().map(|l| l.exp()).sum();
    for (label, p) in &expected {
        assert!((logits[label].exp() / total - p).abs() < 1e-5, "{raw}");
    }
    let info: Value = ureq::get(&format!("{}/info", server.url))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(info["labels"], json!(["negative", "neutral", "positive"]));
    assert_eq!(info["max_input_length"], 512);
    assert_eq!(info["backend"], "flex");
    let health = ureq::get(&format!("{}/health", server.url)).call().unwrap();
    assert_eq!(health.status(), 200);
}

#[test]
fn bad_requests_get_a_json_error_and_fail_no_other_request() {
    let server = Arc::new(Server::start(model(), &["--max-len", "16"]));
    let long = "a rather long sentence that keeps going well past sixteen tokens of text for sure";
    let cases: Vec<(&str, u16, &str)> = vec![
        ("{", 422, "not valid JSON"),
        (r#"{"text": "a"}"#, 422, "missing field `inputs`"),
        (r#"{"inputs": []}"#, 422, "empty batch"),
        (r#"{"inputs": [["a", "b", "c"]]}"#, 422, "inputs[0]"),
        (r#"{"inputs": 7}"#, 422, "`inputs` must be"),
    ];
    // Good requests run at the same time as the bad ones.
    let good: Vec<_> = (0..8)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                server.predict(&json!({ "inputs": [["a fine film"], ["a dull mess"]] }))
            })
        })
        .collect();
    for (body, status, message) in cases {
        let (code, answer) = server.post_raw(body);
        assert_eq!(code, status, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(message),
            "{body}: {answer}"
        );
        assert_eq!(answer["error_type"], "Validation");
    }
    let (code, answer) = server.predict(&json!({ "inputs": [["fine"], [long]] }));
    assert_eq!(code, 413, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("input 1 is longer than the model's 16 tokens"),
        "{answer}"
    );
    let (code, answer) = server.predict(&json!({ "inputs": long, "truncate": true }));
    assert_eq!(code, 200, "{answer}");
    for request in good {
        let (code, answer) = request.join().unwrap();
        assert_eq!(code, 200, "{answer}");
        assert_eq!(answer.as_array().unwrap().len(), 2);
    }
}

#[test]
fn a_full_queue_answers_429_and_the_rest_is_answered() {
    let model = model();
    let texts = sentences(16);
    let expected = predicted(model.path(), &texts);
    // One request may wait; small model batches keep the worker busy.
    let server = Arc::new(Server::start(
        model,
        &["--max-concurrent-requests", "1", "--max-batch-tokens", "64"],
    ));
    let batch: Vec<Value> = texts.iter().map(|t| json!([t])).collect();
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let server = server.clone();
            let body = json!({ "inputs": batch.clone() });
            std::thread::spawn(move || server.predict(&body))
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for client in clients {
        let (code, answer) = client.join().unwrap();
        match code {
            200 => {
                for (i, one) in answer.as_array().unwrap().iter().enumerate() {
                    assert_same(one, &expected[i], &format!("text {i}"));
                }
                ok += 1;
            }
            429 => {
                assert_eq!(answer["error_type"], "Overloaded", "{answer}");
                busy += 1;
            }
            _ => panic!("{code}: {answer}"),
        }
    }
    eprintln!("{ok} answered, {busy} refused as busy");
    assert!(ok >= 1 && busy >= 1, "{ok} answered, {busy} refused");
}

#[test]
fn sigterm_finishes_what_is_in_flight_and_exits_0() {
    let model = model();
    let texts = sentences(64);
    let server = Server::start(model, &["--max-batch-tokens", "512"]);
    let address = server.url.trim_start_matches("http://").to_string();
    let body =
        json!({ "inputs": texts.iter().map(|t| json!([t])).collect::<Vec<_>>() }).to_string();
    // Requests written in full on their own connections before the signal.
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (address, body, sent) = (address.clone(), body.clone(), sent_tx.clone());
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(&address).unwrap();
                write!(
                    stream,
                    "POST /predict HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                sent.send(()).unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).unwrap();
                response
            })
        })
        .collect();
    for _ in 0..4 {
        sent_rx.recv().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for client in clients {
        let response = client.join().unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        let answer: Value = serde_json::from_str(body).unwrap();
        assert_eq!(answer.as_array().unwrap().len(), texts.len());
    }
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "still listening"
    );
}
