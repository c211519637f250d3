//! One training step and one inference batch of all-MiniLM-L6-v2 at batch 32 × sequence 32 and
//! 128, on the backend this bench is built with (`cargo bench --bench minilm`, add
//! `--features wgpu` or `tch` for another backend).

use burn::module::Module;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsParams, LearningRate};
use burn::tensor::{Device, Tensor, TensorData};
use burn::train::TrainStep;
use burnbert::backend::select_device;
use burnbert::checkpoint::{DEFAULT_MODEL, load_classifier, resolve_model};
use burnbert::config::TrainConfig;
use burnbert::data::{Encoded, TargetBatch, TrainBatch, collate};
use burnbert::training::{Trainee, adamw};
use criterion::{Criterion, criterion_group, criterion_main};

const BATCH: usize = 32;

/// A batch of `BATCH` sequences of `seq` tokens (fixed pseudo-random ids, alternating labels).
fn batch(seq: usize, device: &Device) -> TrainBatch {
    let examples: Vec<Encoded> = (0..BATCH)
        .map(|b| Encoded {
            input_ids: (0..seq)
                .map(|t| match t {
                    0 => 101,
                    t if t == seq - 1 => 102,
                    t => 1000 + ((b * 7919 + t * 104_729) % 20_000) as u32,
                })
                .collect(),
            token_type_ids: vec![0; seq],
        })
        .collect();
    let refs: Vec<&Encoded> = examples.iter().collect();
    TrainBatch {
        inputs: collate(&refs, 0, device),
        targets: TargetBatch::Class(Tensor::from_data(
            TensorData::new(
                (0..BATCH as i64).map(|i| i % 2).collect::<Vec<_>>(),
                [BATCH],
            ),
            device,
        )),
        loss_scale: 1.0,
    }
}

fn bench(c: &mut Criterion) {
    let dir = resolve_model(DEFAULT_MODEL).expect("all-MiniLM-L6-v2");
    let device = select_device(None, "auto", burnbert::backend::Precision::F32).expect("a backend");
    let train_device = device.clone().autodiff();
    let labels = vec!["0".to_string(), "1".to_string()];
    let model = load_classifier(&dir, Some(labels), &train_device)
        .unwrap()
        .model;
    let mut trainee = Trainee {
        max_grad_norm: 1.0,
        ..Trainee::new(model)
    };
    let mut optim = adamw(&TrainConfig::defaults());
    let mut group = c.benchmark_group("minilm");
    group.sample_size(10);
    for seq in [32, 128] {
        let eval = trainee.valid();
        let inputs = batch(seq, &device);
        group.bench_function(format!("inference b{BATCH} s{seq}"), |b| {
            b.iter(|| {
                let out = eval.forward(inputs.clone());
                out.logits.into_data()
            })
        });
        let inputs = batch(seq, &train_device);
        group.bench_function(format!("train step b{BATCH} s{seq}"), |b| {
            b.iter(|| {
                let output = trainee.forward(inputs.clone());
                let grads = GradientsParams::from_grads(output.loss.backward(), &trainee);
                let lr: ModuleLearningRate = LearningRate::from(1e-5).into();
                trainee = trainee.clone().optimize(&mut optim, lr, grads);
                trainee.model.classifier().weight.val().into_data()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
