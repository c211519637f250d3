//! `burnbert eval` on a fixture with known predictions, and class-weighted losses.

mod common;

use burn::tensor::activation::log_softmax;
use burnbert::data::{Encoded, LabelSpace, Target, TargetBatch, TrainBatch, TrainItem, collate};
use burnbert::inference::Predictor;
use burnbert::metrics::argmax;
use burnbert::model::ProblemType;
use burnbert::training::{Trainee, class_weights};
use common::{Reference, burnbert_err, burnbert_ok, device, fixtures, inputs, s, values};

#[test]
fn eval_reports_the_confusion_of_known_predictions() {
    let model = fixtures().join("distilbert");
    let reference = Reference::open(&model.join("reference.safetensors"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    let report = dir.path().join("report.json");
    // Every fixture input but the empty one (an empty text is a bad row in labelled data).
    let rows: Vec<(usize, burnbert::inference::TextInput)> = inputs()
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !r.text.is_empty())
        .collect();
    let mut text = String::new();
    let mut expected = [[0usize; 2]; 2];
    for (i, row) in &rows {
        let truth = i % 2;
        let (logits, _) = reference.f32(&format!("{i}.logits"));
        expected[truth][argmax(&logits)] += 1;
        let mut json = serde_json::to_value(row).unwrap();
        json["label"] = format!("LABEL_{truth}").into();
        text.push_str(&format!("{json}\n"));
    }
    std::fs::write(&data, text).unwrap();
    // JSONL rows without a text_pair are single texts.
    let stdout = burnbert_ok(&[
        "eval",
        "--model",
        s(&model),
        "--max-len",
        "24",
        "--text-pair-column",
        "text_pair",
        "--data",
        s(&data),
        "--output",
        s(&report),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let matrix: Vec<Vec<usize>> =
        serde_json::from_value(report["confusion_matrix"]["matrix"].clone()).unwrap();
    assert_eq!(
        matrix,
        expected.iter().map(|r| r.to_vec()).collect::<Vec<_>>()
    );
    let right = expected[0][0] + expected[1][1];
    let accuracy = report["metrics"]["accuracy"].as_f64().unwrap();
    assert!((accuracy - right as f64 / rows.len() as f64).abs() < 1e-12);
    let ones = rows.iter().filter(|(i, _)| i % 2 == 1).count();
    assert_eq!(report["per_class"]["LABEL_1"]["support"], ones as u64);
    assert!(stdout.contains("confusion matrix"), "{stdout}");
}

#[test]
fn eval_names_labels_the_model_does_not_know() {
    let model = fixtures().join("distilbert");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    std::fs::write(&data, "text,label\ngood,LABEL_1\nbad,positive\n").unwrap();
    let line = burnbert_err(&["eval", "--model", s(&model), "--data", s(&data)]);
    assert!(
        line.contains("label 'positive' (line 3)") && line.contains("model's labels"),
        "{line}"
    );
}

fn item(target: usize) -> TrainItem {
    TrainItem {
        encoded: Encoded {
            input_ids: vec![0, 50 + target as u32, 2],
            token_type_ids: vec![0, 0, 0],
        },
        target: Target::Class(target),
    }
}

#[test]
fn class_weights_change_the_loss_as_expected() {
    let (predictor, _) = Predictor::load(
        fixtures().join("roberta").to_str().unwrap(),
        Some(24),
        device(),
    )
    .unwrap();
    let encoded: Vec<Encoded> = (0..4).map(|i| item(i % 3).encoded).collect();
    let targets = [0usize, 1, 2, 0];
    let refs: Vec<&Encoded> = encoded.iter().collect();
    let batch = || TrainBatch {
        inputs: collate(&refs, predictor.tokenizer.pad_id(), &device()),
        targets: TargetBatch::Class(burn::tensor::Tensor::from_data(
            burn::tensor::TensorData::new(
                targets.iter().map(|&t| t as i64).collect::<Vec<_>>(),
                [4],
            ),
            &device(),
        )),
        loss_scale: 1.0,
        halves: None,
    };
    let weights = vec![1.0f32, 2.0, 0.5];
    let mut trainee = Trainee::new(predictor.model);
    let plain = trainee.forward(batch());
    let logp = values(log_softmax(plain.logits.clone(), 1));
    let nll: Vec<f32> = targets
        .iter()
        .enumerate()
        .map(|(i, &t)| -logp[i * 3 + t])
        .collect();
    let mean = nll.iter().sum::<f32>() / 4.0;
    assert!((values(plain.loss)[0] - mean).abs() < 1e-5);
    trainee.class_weights = Some(weights.clone());
    let weighted = values(trainee.forward(batch()).loss)[0];
    let w: Vec<f32> = targets.iter().map(|&t| weights[t]).collect();
    let expected = nll.iter().zip(&w).map(|(l, w)| l * w).sum::<f32>() / w.iter().sum::<f32>();
    assert!(
        (weighted - expected).abs() < 1e-5,
        "{weighted} vs {expected}"
    );
    assert!((weighted - mean).abs() > 1e-3, "weights made no difference");
}

#[test]
fn balanced_and_listed_class_weights() {
    let space = LabelSpace {
        task: ProblemType::SingleLabel,
        names: vec!["a".into(), "b".into()],
        delimiter: ",".into(),
    };
    // Three examples of class a, one of b.
    let train = [3, 1];
    let balanced = class_weights("balanced", &train, &space).unwrap();
    assert!((balanced[0] - 4.0 / 6.0).abs() < 1e-6 && (balanced[1] - 2.0).abs() < 1e-6);
    assert_eq!(class_weights("1, 3", &train, &space).unwrap(), [1.0, 3.0]);
    let err = class_weights("1,2,3", &train, &space)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 numbers") && err.contains("a, b"), "{err}");
    assert!(class_weights("heavy", &train, &space).is_err());
}
