//! Fine-tunes from code: the tiny test fixture on 256 SST-2 rows for one epoch, then labels a
//! sentence with the saved model. Nothing is printed by the library; this program prints.
//!
//!     cargo run --release --example train

fn main() -> burnbert::Result<()> {
    let output = std::env::temp_dir().join("burnbert-example-run");
    let _ = std::fs::remove_dir_all(&output);
    let mut config = burnbert::TrainConfig::defaults();
    config.model = "tests/fixtures/roberta".into();
    config.train = Some("data/glue/sst2/train.tsv".into());
    config.valid = Some("data/glue/sst2/dev.tsv".into());
    config.text_column = "sentence".into();
    config.max_train_samples = Some(256);
    config.max_eval_samples = Some(128);
    config.epochs = 1;
    config.batch_size = 16;
    config.max_len = 32;
    config.lr = 1e-3;
    config.output = Some(output.clone());

    let device = burnbert::default_device()?;
    let summary = burnbert::train(&config, &device)?;
    println!(
        "saved {} (evaluation {}): dev accuracy {:.4}, {:.1} train samples/s",
        summary.output.display(),
        summary.best_evaluation,
        summary.eval["accuracy"],
        summary.samples_per_second
    );
    let clf = burnbert::Classifier::from_pretrained(&output.to_string_lossy(), &device)?;
    println!(
        "{:?}",
        clf.predict(&["a gripping, beautifully acted film"])?
    );
    Ok(())
}
