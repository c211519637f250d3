//! Training equals transformers' Trainer step by step: five AdamW steps of the same recipe
//! (warmup + cosine, clipping, weight-decay groups, gradient accumulation with a short last
//! group) on the tiny RoBERTa and DistilBERT fixtures and the real all-MiniLM-L6-v2, with
//! dropout off and batches in file order: every step's loss and gradient norm, and the weights
//! after the fifth. Reference: scripts/make_step_fixtures.py.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::train::checkpoint::Checkpointer;
use burnbert::checkpoint::{load_classifier, save_pretrained};
use burnbert::config::{ScheduleKind, TrainConfig};
use burnbert::data::{Sampling, TOKENIZER_FILES};
use burnbert::training::{AtomicCheckpointer, Trainee, read_history, train};
use common::{device, fixtures, minilm_dir};
use serde_json::Value;

fn steps_dir() -> PathBuf {
    fixtures().join("steps")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(steps_dir().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The model the reference trained: a committed directory, or for MiniLM the committed head
/// shard beside the real weights.
fn model_dir(name: &str, scratch: &Path) -> PathBuf {
    let fixture = steps_dir().join(name);
    if name != "minilm" {
        return fixture;
    }
    let dir = scratch.join("minilm");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let base = minilm_dir();
    std::os::unix::fs::symlink(
        base.join("model.safetensors"),
        dir.join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    for name in TOKENIZER_FILES {
        if base.join(name).is_file() {
            std::fs::copy(base.join(name), dir.join(name)).unwrap();
        }
    }
    dir
}

/// burnbert's flags for the reference's recipe.
fn config(case: &Value, recipe: &Value, model: &Path, output: &Path) -> TrainConfig {
    let data = steps_dir().join("train.tsv");
    let mut c = TrainConfig::defaults();
    c.model = model.to_string_lossy().into_owned();
    c.train = Some(data.clone());
    c.valid = Some(data);
    c.text_column = "sentence".into();
    c.max_train_samples = Some(case["rows"].as_u64().unwrap() as usize);
    c.epochs = 1;
    c.batch_size = recipe["batch_size"].as_u64().unwrap() as usize;
    c.grad_accum = case["grad_accum"].as_u64().unwrap() as usize;
    c.lr = recipe["lr"].as_f64().unwrap();
    c.weight_decay = recipe["weight_decay"].as_f64().unwrap();
    // 5 optimizer steps: 1 warmup step, as the reference's warmup_steps = 1.
    c.warmup_ratio = 0.2;
    c.scheduler = ScheduleKind::Cosine;
    c.max_grad_norm = case["max_grad_norm"].as_f64().unwrap();
    c.max_len = recipe["max_len"].as_u64().unwrap() as usize;
    c.sampling = Sampling::Sequential;
    c.eval_steps = Some(1);
    c.seed = recipe["seed"].as_u64().unwrap();
    c.no_tui = true;
    c.log_every = 1000;
    c.output = Some(output.to_path_buf());
    c
}

/// Tensors of the classifier after evaluation `evaluation`'s checkpoint, in transformers'
/// names without the base model's prefix (`bert.`, `roberta.`, `distilbert.`).
fn checkpoint_params(model: &Path, output: &Path, evaluation: usize) -> HashMap<String, Vec<f32>> {
    let loaded = load_classifier(model, None, &device()).unwrap();
    let trainee = Trainee::new(loaded.model);
    let checkpointer = AtomicCheckpointer::new(&output.join("checkpoint"), "model");
    let trainee = trainee.load_record(checkpointer.restore(evaluation).unwrap());
    let saved = tempfile::tempdir().unwrap();
    save_pretrained(&trainee.model, &loaded.config, model, saved.path()).unwrap();
    let bytes = std::fs::read(saved.path().join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    tensors
        .iter()
        .filter(|(_, view)| view.dtype() == safetensors::Dtype::F32)
        .map(|(name, view)| {
            let short = ["bert.", "roberta.", "distilbert."]
                .iter()
                .find_map(|p| name.strip_prefix(p))
                .unwrap_or(&name);
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (short.to_string(), values)
        })
        .collect()
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn run_case(name: &str, grad_accum: u64) {
    let _one = common::serial();
    let reference = reference();
    let case = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == name && c["grad_accum"] == grad_accum)
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let model = model_dir(name, scratch.path());
    let output = scratch.path().join("run");
    train(
        &config(case, &reference["recipe"], &model, &output),
        &device(),
    )
    .unwrap();

    // The loss of each step's batches, before its update: it depends on every earlier update.
    let history = read_history(&output.join("metrics.jsonl")).unwrap();
    let train_lines = &history["train"];
    let steps: Vec<f64> = train_lines.values().map(|line| line["step"]).collect();
    assert_eq!(
        steps,
        [1.0, 2.0, 3.0, 4.0, 5.0],
        "{name}: one evaluation per step"
    );
    let losses: Vec<f64> = (1..=5).map(|e| train_lines[&e]["loss"]).collect();
    let expected = floats(&case["loss"]);
    for (step, (got, want)) in losses.iter().zip(&expected).enumerate() {
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{name} grad_accum {grad_accum}: step {} loss {got} vs transformers {want}\nburnbert {losses:?}\ntransformers {expected:?}",
            step + 1
        );
    }

    // The global gradient norm of each step (before clipping), as Trainer logs it.
    let norms: Vec<f64> = (1..=5).map(|e| train_lines[&e]["grad_norm"]).collect();
    let expected_norms = floats(&case["grad_norm"]);
    for (step, (got, want)) in norms.iter().zip(&expected_norms).enumerate() {
        assert!(
            (got - want).abs() <= 1e-4 * want.abs(),
            "{name} grad_accum {grad_accum}: step {} grad_norm {got} vs transformers {want}\nburnbert {norms:?}\ntransformers {expected_norms:?}",
            step + 1
        );
    }

    // The weights after the fifth step (its update included), against transformers'.
    let params = checkpoint_params(&model, &output, 5);
    let after = &case["params"][4];
    let initial = &case["initial"];
    let lr = reference["recipe"]["lr"].as_f64().unwrap();
    let mut worst = 0.0f64;
    for (key, want) in after.as_object().unwrap() {
        let want = floats(want);
        let start = floats(&initial[key]);
        let got = &params
            .get(key)
            .unwrap_or_else(|| panic!("{name}: no {key} in the checkpoint"))[..want.len()];
        let moved = start.iter().zip(&want).any(|(a, b)| a != b);
        assert!(
            moved || key.contains("word_embeddings"),
            "{name}: {key} did not move in transformers"
        );
        for (i, ((&g, &w), &s)) in got.iter().zip(&want).zip(&start).enumerate() {
            worst = worst.max((g as f64 - w).abs() / lr);
            // Five updates of up to ~lr each; they agree to 0.2% of one update (measured: at
            // most 3e-4 lr, the f32 rounding of the weights).
            assert!(
                (g as f64 - w).abs() <= 0.002 * lr + 1e-6 * w.abs(),
                "{name} grad_accum {grad_accum}: {key}[{i}] = {g} after 5 steps, transformers {w} (initial {s})"
            );
        }
    }
    let norm_gap = norms
        .iter()
        .zip(&expected_norms)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max);
    let loss_gap = losses
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!(
        "{name} grad_accum {grad_accum}: max loss gap {loss_gap:.2e}, grad_norm gap {norm_gap:.2e} (relative), weight gap {worst:.2e} lr"
    );
}

#[test]
fn roberta_steps_equal_transformers() {
    run_case("roberta", 1);
}

#[test]
fn roberta_accumulated_steps_equal_transformers() {
    run_case("roberta", 2);
}

#[test]
fn distilbert_steps_equal_transformers() {
    run_case("distilbert", 1);
}

#[test]
fn distilbert_accumulated_steps_equal_transformers() {
    run_case("distilbert", 2);
}

#[test]
fn minilm_steps_equal_transformers() {
    run_case("minilm", 1);
}

#[test]
fn minilm_accumulated_steps_equal_transformers() {
    run_case("minilm", 2);
}
