//! Labels a few texts with a classifier directory (default: the tiny test fixture).
//!
//!     cargo run --release --example classify -- runs/sst2 "a gripping film" "a dull mess"

fn main() -> burnbert::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .unwrap_or_else(|| "tests/fixtures/roberta".to_string());
    let mut texts: Vec<String> = args.collect();
    if texts.is_empty() {
        texts = vec![
            "a gripping, beautifully acted film".into(),
            "a dull mess".into(),
        ];
    }
    let device = burnbert::default_device()?;
    let clf = burnbert::Classifier::from_pretrained(&model, &device)?;
    for (text, prediction) in texts.iter().zip(clf.predict(&texts)?) {
        match prediction {
            burnbert::Prediction::SingleLabel { label, scores } => {
                let p = scores
                    .iter()
                    .find(|(l, _)| *l == label)
                    .map_or(0.0, |s| s.1);
                println!("{label} ({p:.3})  {text}");
            }
            burnbert::Prediction::MultiLabel { labels, .. } => println!("{labels:?}  {text}"),
            burnbert::Prediction::Regression { score } => println!("{score:.3}  {text}"),
        }
    }
    Ok(())
}
