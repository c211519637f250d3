//! The corpus of bad inputs in tests/bad_inputs/cases.toml (files, configs, models, flags):
//! each must end with exit code 1 and exactly its one-line error, no panic, and nothing written
//! at the output path.

mod common;

use common::{fixtures, repo};

#[derive(serde::Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    args: String,
    error: String,
}

const TRAIN: &str = "train --model {fixtures}/roberta --output {out} --no-tui --max-len 24";

#[test]
fn every_bad_input_gets_its_one_line_error_and_writes_nothing() {
    let bad = repo("tests/bad_inputs");
    let text = std::fs::read_to_string(bad.join("cases.toml")).unwrap();
    let corpus: Corpus = toml::from_str(&text).unwrap();
    assert!(
        corpus.case.len() >= 30,
        "the corpus keeps at least 30 cases"
    );
    let mut failures = Vec::new();
    for case in &corpus.case {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("run");
        let fill = |s: &str| {
            s.replace("{train}", TRAIN)
                .replace("{bad}", &bad.to_string_lossy())
                .replace("{fixtures}", &fixtures().to_string_lossy())
                .replace("{out}", &out.to_string_lossy())
        };
        let args = fill(&case.args);
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_burnbert"))
            .args(args.split_whitespace())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        let lines: Vec<&str> = stderr
            .trim()
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect();
        let expected = fill(&case.error);
        let problem = if run.status.code() != Some(1) {
            Some(format!("exit {:?}", run.status.code()))
        } else if stderr.contains("panicked") {
            Some("panicked".into())
        } else if lines != [expected.as_str()] {
            Some(format!("stderr {lines:?}, expected {expected:?}"))
        } else if out.exists() {
            Some(format!("{} was written", out.display()))
        } else {
            None
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
