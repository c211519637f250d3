//! Every backend this build has (ndarray by default; also wgpu, flex or tch with their
//! features): predictions on the real all-MiniLM-L6-v2 fixture agree with transformers within
//! 1e-3, and a few training steps lower the loss.

mod common;

use burn::module::Module;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsParams, LearningRate};
use burnbert::backend::{BackendKind, select_device};
use burnbert::config::TrainConfig;
use burnbert::data::{Encoded, TargetBatch, TrainBatch, collate};
use burnbert::inference::Predictor;
use burnbert::training::{Trainee, adamw};
use common::{Reference, fixtures, inputs, max_abs_diff, values};

#[test]
fn every_backend_matches_transformers_on_minilm() {
    let dir = common::minilm_classifier_dir();
    let reference = Reference::open(&fixtures().join("minilm/reference.safetensors"));
    for kind in BackendKind::compiled() {
        let device = select_device(Some(kind), "auto").unwrap();
        let (predictor, _) =
            Predictor::load(dir.path().to_str().unwrap(), Some(128), device).unwrap();
        // The four shortest inputs, in one padded batch (software GPUs are slow).
        let rows = inputs();
        let encoded = predictor.encode(&rows).unwrap();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| encoded[i].input_ids.len());
        order.truncate(4);
        let batch: Vec<&Encoded> = order.iter().map(|&i| &encoded[i]).collect();
        let inputs = collate(&batch, predictor.tokenizer.pad_id(), &predictor.device);
        let out = predictor.model.forward(
            inputs.input_ids,
            inputs.token_type_ids,
            inputs.attention_mask,
        );
        let logits = values(out.logits);
        for (row, &i) in order.iter().enumerate() {
            let (expected, _) = reference.f32(&format!("{i}.logits"));
            let diff = max_abs_diff(&logits[row * 3..row * 3 + 3], &expected);
            assert!(diff <= 1e-3, "{kind:?} input {i}: max abs diff {diff}");
        }
    }
}

#[test]
fn every_backend_lowers_the_loss_in_a_few_steps() {
    let model = fixtures().join("roberta");
    for kind in BackendKind::compiled() {
        let plain = select_device(Some(kind), "auto").unwrap();
        let device = plain.clone().autodiff();
        device.seed(0);
        let (predictor, _) =
            Predictor::load(model.to_str().unwrap(), Some(24), device.clone()).unwrap();
        let texts = [
            "a fine film",
            "a dull mess",
            "great acting",
            "boring and long",
        ];
        let encoded: Vec<Encoded> = texts
            .iter()
            .map(|t| predictor.tokenizer.encode(t, None).unwrap())
            .collect();
        let refs: Vec<&Encoded> = encoded.iter().collect();
        let batch = |device: &burn::tensor::Device| TrainBatch {
            inputs: collate(&refs, predictor.tokenizer.pad_id(), device),
            targets: TargetBatch::Class(burn::tensor::Tensor::from_data(
                burn::tensor::TensorData::new(vec![0i64, 1, 0, 1], [4]),
                device,
            )),
        };
        let mut trainee = Trainee {
            model: predictor.model,
            loss_scale: 1.0,
            max_grad_norm: 1.0,
            class_weights: None,
        };
        // The loss without dropout, before and after five AdamW steps on the batch.
        let eval_loss = |t: &Trainee| values(t.valid().forward(batch(&plain)).loss)[0];
        let before = eval_loss(&trainee);
        let mut optim = adamw(&TrainConfig::defaults());
        for _ in 0..5 {
            let output = trainee.forward(batch(&device));
            let grads = GradientsParams::from_grads(output.loss.backward(), &trainee);
            let lr: ModuleLearningRate = LearningRate::from(1e-3).into();
            trainee = burn::train::TrainStep::optimize(trainee, &mut optim, lr, grads);
        }
        let after = eval_loss(&trainee);
        eprintln!("{kind:?}: loss {before} -> {after}");
        assert!(after < before - 0.05, "{kind:?}: loss {before} -> {after}");
    }
}
