//! LoRA fine-tuning: a CI-sized run learns, every frozen weight is bit-identical after training
//! (before merging), the adapters moved, the saved model is the merge, and resume works.

mod common;

use std::collections::HashMap;
use std::path::Path;

use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::train::checkpoint::Checkpointer;
use burnbert::checkpoint::load_classifier;
use burnbert::config::TrainConfig;
use burnbert::model::{Architecture, SequenceClassifier};
use burnbert::training::{
    AtomicCheckpointer, Trainee, apply_lora, default_lora_targets, read_history, train,
};
use common::{device, fixtures, minilm_dir};

/// Every tensor of `model` by Burn path (adapters included), as f32 values.
fn tensors(model: &SequenceClassifier) -> HashMap<String, Vec<f32>> {
    model
        .collect(None, None, true) // names without the family variant
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            let bytes = t.into_bytes().unwrap();
            let values = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, values)
        })
        .collect()
}

fn sst2(output: &Path) -> TrainConfig {
    let mut c = common::sst2_job(output);
    c.lora_rank = Some(8);
    c.lr = 2e-3;
    c
}

#[test]
fn lora_learns_freezes_the_base_and_saves_the_merge() {
    let _one = common::serial();
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let config = sst2(&run);
    let summary = train(&config, &device()).unwrap();
    // The untrained model (a fresh head) is at chance, 0.51 on this dev set.
    let accuracy = summary.eval["accuracy"];
    eprintln!("LoRA dev accuracy {accuracy}");
    assert!(accuracy > 0.7, "{accuracy}");

    // The checkpoint, read back into the same LoRA model: every base weight is the pretrained
    // one bit for bit, the adapters' B factors (zero at first) moved, the head moved.
    let labels = vec!["0".to_string(), "1".to_string()];
    let base = load_classifier(&minilm_dir(), Some(labels.clone()), &device().autodiff())
        .unwrap()
        .model;
    let pretrained = tensors(&base);
    let (lora, lora_summary) = apply_lora(
        base,
        Architecture::Bert,
        8,
        16.0,
        default_lora_targets(Architecture::Bert),
    )
    .unwrap();
    assert_eq!(lora_summary.targets.len(), 12);
    let checkpointer = AtomicCheckpointer::new(&run.join("checkpoint"), "model");
    let trainee = Trainee::new(lora).load_record(
        Checkpointer::<burn::store::ModuleRecord>::restore(&checkpointer, summary.best_evaluation)
            .unwrap(),
    );
    let trained = tensors(&trainee.model);
    let (mut frozen, mut adapters) = (0, 0);
    for (name, values) in &trained {
        if name.starts_with("head.") {
            assert_ne!(values, &pretrained[name], "{name}: the head did not train");
        } else if let Some(before) = pretrained.get(name) {
            assert_eq!(values, before, "{name}: a frozen weight changed");
            frozen += 1;
        } else {
            adapters += 1;
            if name.ends_with(".b") {
                assert!(
                    values.iter().any(|v| *v != 0.0),
                    "{name}: the adapter did not train"
                );
            }
        }
    }
    assert!(
        frozen > 90 && adapters == 24,
        "{frozen} frozen, {adapters} adapter factors"
    );

    // The saved model is the merge: adapted weights moved, the others are the pretrained ones.
    let saved = load_classifier(&run, None, &device()).unwrap().model;
    let saved = tensors(&saved);
    let query = "encoder.layer.0.attention.self_attn.query.weight";
    let key = "encoder.layer.0.attention.self_attn.key.weight";
    assert_ne!(saved[query], pretrained[query]);
    assert_eq!(saved[key], pretrained[key]);
    let merged = tensors(&trainee.model.clone().materialize());
    let diff = common::max_abs_diff(&saved[query], &merged[query]);
    assert!(diff == 0.0, "{diff}");

    // The PEFT adapter (adapter/): its config, and factors in torch's layout whose product is
    // what the merge added: W_saved = W_pretrained + (alpha / r) · B · A.
    let adapter_config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(adapter_config["task_type"], "SEQ_CLS");
    assert_eq!(adapter_config["r"], 8);
    assert_eq!(
        adapter_config["modules_to_save"],
        serde_json::json!(["classifier"])
    );
    assert_eq!(
        adapter_config["target_modules"].as_array().unwrap().len(),
        12
    );
    let read = |path: &Path, name: &str| common::Reference::open(path).f32(name);
    let module = "bert.encoder.layer.0.attention.self.query";
    let adapter = run.join("adapter/adapter_model.safetensors");
    let (a, a_shape) = read(
        &adapter,
        &format!("base_model.model.{module}.lora_A.weight"),
    );
    let (b, b_shape) = read(
        &adapter,
        &format!("base_model.model.{module}.lora_B.weight"),
    );
    assert_eq!((a_shape, b_shape.clone()), (vec![8, 384], vec![384, 8]));
    let (before, _) = read(
        &minilm_dir().join("model.safetensors"),
        "encoder.layer.0.attention.self.query.weight",
    );
    let (after, _) = read(&run.join("model.safetensors"), &format!("{module}.weight"));
    let scale = 16.0 / 8.0;
    let mut worst = 0.0f32;
    for o in 0..384 {
        for i in 0..384 {
            let delta: f32 = (0..8).map(|k| b[o * 8 + k] * a[k * 384 + i]).sum();
            worst = worst.max((before[o * 384 + i] + scale * delta - after[o * 384 + i]).abs());
        }
    }
    assert!(worst < 1e-5, "merge differs from the adapter by {worst}");
    let (head, _) = read(&adapter, "base_model.model.classifier.weight");
    let (saved_head, _) = read(&run.join("model.safetensors"), "classifier.weight");
    assert_eq!(head, saved_head);
}

#[test]
fn a_lora_run_resumes() {
    let _one = common::serial();
    let out = tempfile::tempdir().unwrap();
    let mut c = common::sst2_config(&out.path().join("run"));
    c.model = fixtures().join("roberta").to_string_lossy().into_owned();
    c.max_train_samples = Some(64);
    c.max_eval_samples = Some(32);
    c.batch_size = 8;
    c.max_len = 24;
    c.epochs = 1;
    c.lora_rank = Some(4);
    train(&c, &device()).unwrap();
    c.epochs = 2;
    c.resume = true;
    let summary = train(&c, &device()).unwrap();
    let history = read_history(&out.path().join("run/metrics.jsonl")).unwrap();
    assert_eq!(history["valid"].len(), 2);
    assert_eq!(
        history["train"][&2]["step"], 16.0,
        "the second epoch's 8 steps ran"
    );
    assert!(summary.eval["accuracy"].is_finite());
    // A target pattern that matches nothing is one clear error.
    c.resume = false;
    c.output = Some(out.path().join("other"));
    c.lora_targets = Some("nothing_like_this".into());
    let err = train(&c, &device()).unwrap_err().to_string();
    assert!(
        err.contains("--lora-targets 'nothing_like_this' matches no weight"),
        "{err}"
    );
}
