//! Training building blocks against numbers from transformers and torch
//! (scripts/make_train_fixtures.py): LR schedules, global-norm clipping, weight-decay groups;
//! and transformers' rules for the best evaluation and early stopping.

mod common;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::optim::lr_scheduler::LrScheduler;
use burn::tensor::{Tensor, TensorData};
use burnbert::config::ScheduleKind;
use burnbert::model::{ModelConfig, SequenceClassifier};
use burnbert::training::{WarmupDecay, best_of, clip_global_norm, decays, patience_exhausted};
use common::{device, fixtures};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join("train").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn schedules_equal_transformers_step_for_step() {
    for case in fixture("schedules.json").as_array().unwrap() {
        let (lr, warmup, total) = (
            case["lr"].as_f64().unwrap(),
            case["warmup"].as_u64().unwrap() as usize,
            case["total"].as_u64().unwrap() as usize,
        );
        for (kind, key) in [
            (ScheduleKind::Cosine, "cosine"),
            (ScheduleKind::Linear, "linear"),
        ] {
            let mut schedule = WarmupDecay::new(kind, lr, warmup, total);
            for (step, expected) in floats(&case[key]).into_iter().enumerate() {
                let got = schedule.step();
                assert!(
                    (got - expected).abs() <= 1e-12 * lr.max(1.0),
                    "{key} warmup {warmup} total {total} step {step}: {got} vs {expected}"
                );
            }
        }
    }
}

#[test]
fn schedule_state_survives_a_checkpoint() {
    let mut a = WarmupDecay::new(ScheduleKind::Cosine, 1e-3, 2, 10);
    for _ in 0..4 {
        a.step();
    }
    let mut b = WarmupDecay::new(ScheduleKind::Cosine, 1e-3, 2, 10);
    b.load_record(a.to_record());
    assert_eq!(a.step(), b.step());
}

/// A module with one parameter per fixture tensor.
#[derive(Module, Debug)]
struct Params {
    p: Vec<Param<Tensor<1>>>,
}

#[test]
fn clipping_equals_torch_clip_grad_norm() {
    let device = device();
    for case in fixture("clip.json").as_array().unwrap() {
        let max_norm = case["max_norm"].as_f64().unwrap();
        let grads_in: Vec<Vec<f64>> = case["grads"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let expected: Vec<Vec<f64>> = case["clipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let module = Params {
            p: grads_in
                .iter()
                .map(|g| Param::from_tensor(Tensor::<1>::zeros([g.len()], &device)))
                .collect(),
        };
        let mut grads = GradientsParams::new();
        let ids: Vec<ParamId> = module.p.iter().map(|p| p.id).collect();
        for (id, g) in ids.iter().zip(&grads_in) {
            let values: Vec<f32> = g.iter().map(|&x| x as f32).collect();
            grads.register::<1>(
                *id,
                Tensor::from_data(TensorData::new(values, [g.len()]), &device),
            );
        }
        let clipped = clip_global_norm(&module, grads, max_norm);
        for (id, want) in ids.iter().zip(&expected) {
            let got: Vec<f32> = clipped
                .get::<1>(*id)
                .unwrap()
                .into_data()
                .try_to_vec()
                .unwrap();
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (*g as f64 - w).abs() < 1e-6,
                    "max_norm {max_norm}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn weight_decay_skips_biases_and_layer_norms_only() {
    struct Paths(Vec<String>, Vec<String>);
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.0.push(self.1.join("."));
        }
    }
    let model = |name: &str| {
        let config = ModelConfig::from_file(&fixtures().join(name).join("config.json")).unwrap();
        let mut paths = Paths(Vec::new(), Vec::new());
        SequenceClassifier::new(&config, &device()).visit(&mut paths);
        paths.0
    };
    assert!(!decays("encoder.layer.0.attention.self_attn.query.bias"));
    assert!(!decays("embeddings.layer_norm.gamma"));
    assert!(!decays("encoder.layer.1.output.layer_norm.beta"));
    assert!(!decays("model.layers.1.attn_norm.gamma"));
    assert!(!decays("model.final_norm.gamma"));
    assert!(decays("encoder.layer.0.attention.self_attn.query.weight"));
    assert!(decays("embeddings.word_embeddings.weight"));
    assert!(decays("head.classifier.weight"));
    for (name, norm_params) in [("roberta", 10), ("modernbert", 8), ("deberta-v3", 12)] {
        let paths = model(name);
        let no_decay: Vec<&String> = paths.iter().filter(|p| !decays(p)).collect();
        // Every bias and every LayerNorm parameter, nothing else.
        let biases = paths.iter().filter(|p| p.ends_with(".bias")).count();
        let norms: Vec<&String> = paths.iter().filter(|p| p.contains("norm.")).collect();
        assert_eq!(norms.len(), norm_params, "{name}: {norms:?}");
        assert_eq!(no_decay.len(), biases + norms.len(), "{name}: {no_decay:?}");
        assert!(
            no_decay
                .iter()
                .all(|p| p.ends_with(".bias") || norms.contains(p)),
            "{name}: {no_decay:?}"
        );
    }
    // Burn's visitor sees the family variant first.
    let roberta = model("roberta");
    assert!(roberta.contains(&"Bert.encoder.layer.0.attention.self_attn.query.bias".to_string()));
}

/// transformers picks the best model by the metric alone (strictly better; ties keep the
/// earlier), whatever `early_stopping_threshold` is.
#[test]
fn the_best_evaluation_is_the_strictly_best_value() {
    let losses = [(1, 0.70), (2, 0.60), (3, 0.60), (4, f64::NAN), (5, 0.65)];
    assert_eq!(best_of(losses, false), Some((2, 0.60)));
    let accuracies = [(1, 0.5), (2, 0.8), (3, 0.8), (4, 0.79)];
    assert_eq!(best_of(accuracies, true), Some((2, 0.8)));
    assert_eq!(best_of([(1, f64::NAN), (2, f64::INFINITY)], false), None);
}

/// EarlyStoppingCallback: an improvement must beat the best before it by more than the
/// threshold; smaller gains still move the best, and do not reset the count.
#[test]
fn patience_counts_evaluations_without_a_large_enough_gain() {
    // Each evaluation gains 0.05 on the one before: with min_delta 0.1 none counts.
    let creeping = [0.50, 0.45, 0.40, 0.35];
    assert!(!patience_exhausted(&creeping[..3], false, 0.1, 3));
    assert!(patience_exhausted(&creeping, false, 0.1, 3));
    assert!(!patience_exhausted(&creeping, false, 0.0, 1));
    // 0.38 beats the first best (0.5) by more than 0.1 but the best before it (0.45) by
    // less: not an improvement.
    assert!(patience_exhausted(&[0.5, 0.45, 0.38], false, 0.1, 2));
    // Higher is better: a gain above the threshold resets the count.
    assert!(!patience_exhausted(&[0.5, 0.5, 0.7], true, 0.1, 2));
    assert!(patience_exhausted(&[0.5, 0.5, 0.55], true, 0.1, 2));
}

/// A training step on the two halves of a batch (3 and 4 rows, each padded to its own longest
/// input, side by side) gives the whole batch's loss, logits and every gradient: each half's
/// loss weighted by its share of the rows, the two gradients summed; with class weights (1 and
/// 3: halves of weight 5 and 8, not 3 and 4 rows), by its share of the weights. (Up to
/// rounding: 1e-7 absolute covers the attention key bias, whose gradient is rounding noise in
/// both.)
#[test]
fn a_step_on_half_batches_equals_the_whole_batch_step() {
    for class_weights in [None, Some(vec![1.0, 3.0])] {
        half_batches_equal_the_whole_batch(class_weights);
    }
}

fn half_batches_equal_the_whole_batch(class_weights: Option<Vec<f32>>) {
    use burn::data::dataloader::batcher::Batcher;
    use burn::train::TrainStep;
    use burnbert::data::{Encoded, Target, TrainBatcher, TrainItem};
    use burnbert::training::Trainee;

    let device = device().autodiff();
    let dir = fixtures().join("steps/roberta");
    let pad = ModelConfig::from_file(&dir.join("config.json"))
        .unwrap()
        .pad_token_id as u32;
    let loaded =
        burnbert::checkpoint::load_classifier(&dir, Some(vec!["0".into(), "1".into()]), &device)
            .unwrap();
    let trainee = Trainee {
        class_weights,
        ..Trainee::new(loaded.model)
    };
    let lengths = [11, 9, 4, 12, 3, 7, 5];
    let items: Vec<TrainItem> = lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| TrainItem {
            encoded: Encoded {
                input_ids: (0..len)
                    .map(|j| (5 + 13 * i + 7 * j) as u32 % 200 + 3)
                    .collect(),
                token_type_ids: vec![0; len],
            },
            target: Target::Class(i % 2),
        })
        .collect();
    let batcher = |halves| TrainBatcher {
        padding: pad.into(),
        num_labels: 2,
        halves,
    };
    let split = batcher(true).batch(vec![items.clone()], &device);
    let halves = split.halves.as_ref().expect("two halves");
    assert_eq!(
        halves
            .iter()
            .map(|h| h.inputs.input_ids.dims())
            .collect::<Vec<_>>(),
        [[3, 11], [4, 12]],
        "each half padded to its own longest input"
    );
    let whole = trainee.step(batcher(false).batch(vec![items], &device));
    let halved = trainee.step(split);
    let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    close(
        whole.item.loss.into_data().try_to_vec::<f32>().unwrap(),
        halved.item.loss.into_data().try_to_vec::<f32>().unwrap(),
        "loss",
    );
    close(
        values(whole.item.logits),
        values(halved.item.logits),
        "logits",
    );

    struct Compare<'a>(&'a GradientsParams, &'a GradientsParams, usize);
    impl ModuleVisitor for Compare<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let (Some(a), Some(b)) = (self.0.get::<D>(param.id), self.1.get::<D>(param.id)) else {
                panic!("a gradient missing for {:?}", param.id);
            };
            let (a, b) = (
                a.into_data().try_to_vec::<f32>(),
                b.into_data().try_to_vec::<f32>(),
            );
            let what = format!("gradient {:?} {:?}", param.id, param.dims());
            close(a.unwrap(), b.unwrap(), &what);
            self.2 += 1;
        }
    }
    let mut compare = Compare(&whole.grads, &halved.grads, 0);
    trainee.visit(&mut compare);
    assert!(compare.2 > 10, "{} gradients compared", compare.2);
}

/// `a` and `b` agree to 2e-5 of `a`'s largest magnitude, plus 1e-7 (rounding of near-zero values).
fn close(a: Vec<f32>, b: Vec<f32>, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        diff <= 2e-5 * scale + 1e-7,
        "{what}: max difference {diff} of {scale}"
    );
}
