//! Data-parallel training through Burn's multi-device strategy, on two handles of the CPU:
//! two devices with batch B follow the loss curve of one device with batch 2B.

mod common;

use std::path::Path;

use burnbert::training::{History, read_history};
use common::{fixtures, repo, s};

/// The tiny RoBERTa fixture without dropout, so two runs can be compared step by step.
fn model_without_dropout(dir: &Path) {
    let source = fixtures().join("roberta");
    for file in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(source.join("config.json")).unwrap()).unwrap();
    config["hidden_dropout_prob"] = 0.0.into();
    config["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// `burnbert train` for 6 steps on 200 SST-2 rows, evaluating after each, and `extra`.
fn run(model: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    let train = repo("data/glue/sst2/train.tsv");
    let valid = repo("data/glue/sst2/dev.tsv");
    let mut args = vec![
        "train",
        "--model",
        s(model),
        "--train",
        s(&train),
        "--valid",
        s(&valid),
        "--text-column",
        "sentence",
        "--max-train-samples",
        "200",
        "--max-eval-samples",
        "64",
        "--max-len",
        "24",
        "--sampling",
        "sequential",
        "--eval-steps",
        "1",
        "--max-steps",
        "6",
        "--lr",
        "1e-3",
        "--no-tui",
        "--output",
        s(output),
    ];
    args.extend_from_slice(extra);
    common::burnbert(&args)
}

/// [`run`], which must succeed; returns the run's metrics.
fn train(model: &Path, output: &Path, extra: &[&str]) -> History {
    let out = run(model, output, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_history(&output.join("metrics.jsonl")).unwrap()
}

#[test]
fn two_devices_follow_the_loss_curve_of_one_with_the_same_effective_batch() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    model_without_dropout(&model);
    let one = train(&model, &dir.path().join("one"), &["--batch-size", "16"]);
    let two_dir = dir.path().join("two");
    let two = train(
        &model,
        &two_dir,
        &["--batch-size", "8", "--devices", "cpu,cpu"],
    );
    for split in ["train", "valid"] {
        let (a, b) = (&one[split], &two[split]);
        assert_eq!(a.len(), 6, "{split}: {a:?}");
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (evaluation, values) in a {
            for key in ["loss", "grad_norm", "step"] {
                let (Some(x), Some(y)) = (values.get(key), b[evaluation].get(key)) else {
                    continue;
                };
                assert!(
                    (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                    "{split} evaluation {evaluation} {key}: one device {x}, two {y}"
                );
            }
        }
    }
    // The curve moved: a run that ignored one device's gradients would not match it.
    let losses: Vec<f64> = one["train"].values().map(|v| v["loss"]).collect();
    assert!(
        losses.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-3),
        "{losses:?}"
    );

    // Resuming with another device count would count steps differently: refused.
    let out = run(&model, &two_dir, &["--batch-size", "8", "--resume"]);
    assert!(!out.status.success());
    let err = common::one_error_line(&out.stderr);
    assert!(
        err.contains("evaluation 6 was taken after step 6 (epoch 0.48)")
            && err.contains("device count"),
        "{err}"
    );
}
