//! `burnbert eval`: every metric of the task, a per-class table and the confusion matrix.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde_json::{Value, json};

use super::{BatchArgs, DeviceArgs, InputColumns, print_notices};
use crate::data::{FileIndex, LabelSpace, LazyExamples};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::inference::problem_type;
use crate::metrics::{confusion, per_class};
use crate::model::ProblemType;
use crate::training::{Trainee, evaluate, format_value};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model directory or Hugging Face hub id.
    #[arg(long)]
    pub model: String,
    /// Labelled data (CSV, TSV or JSONL).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub columns: InputColumns,
    /// Column with the label.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Separator of multi-label cells written as text.
    #[arg(long, default_value = ",")]
    pub label_delimiter: String,
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Multi-label decision threshold.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.device()?;
    let (predictor, notices) = args.batch.load(&args.model, &args.device)?;
    print_notices(&notices);
    let space = LabelSpace {
        task: problem_type(&predictor.config),
        names: predictor.config.id2label.clone(),
        delimiter: args.label_delimiter.clone(),
    };
    let columns = args
        .columns
        .columns(&args.data, Some(args.label_column.clone()));
    let index = FileIndex::open(&args.data, args.columns.format, &columns, &|_, _| {})?;
    index.check_rows(false)?;
    space.check(&index.stats, &args.data).map_err(|e| {
        Error::Input(
            e.to_string()
                .replace("the training labels", "the model's labels"),
        )
    })?;
    let rows = index.rows;
    let padding = predictor.tokenizer.padding();
    let examples = LazyExamples::new(rows.clone(), predictor.tokenizer.clone(), space.clone());
    let trainee = Trainee::new(predictor.model);
    let (metrics, predictions) = evaluate(
        &trainee,
        Arc::new(examples),
        &space,
        args.batch.batch_size,
        padding,
        args.threshold,
        &device,
    )?;

    println!("{} examples from {}\n", rows.len(), args.data.display());
    println!("{:<12}{:>10}", "metric", "value");
    for (key, value) in &metrics {
        println!("{key:<12}{:>10}", format_value(*value));
    }
    let mut report = json!({ "examples": rows.len(), "metrics": metrics });
    if space.task == ProblemType::SingleLabel {
        let n = space.names.len();
        let matrix = confusion(&predictions.classes.0, &predictions.classes.1, n);
        let width = space
            .names
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(5)
            .max(5)
            + 2;
        println!(
            "\n{:<width$}{:>10}{:>10}{:>10}{:>10}",
            "label", "precision", "recall", "f1", "support"
        );
        let mut classes = serde_json::Map::new();
        for (name, (p, r, f, support)) in space.names.iter().zip(per_class(&matrix)) {
            println!(
                "{name:<width$}{:>10.4}{:>10.4}{:>10.4}{support:>10}",
                p, r, f
            );
            classes.insert(
                name.clone(),
                json!({"precision": p, "recall": r, "f1": f, "support": support}),
            );
        }
        println!("\nconfusion matrix (rows: true label, columns: predicted)");
        print!("{:<width$}", "");
        for name in &space.names {
            print!("{name:>width$}");
        }
        println!();
        for (name, row) in space.names.iter().zip(&matrix) {
            print!("{name:<width$}");
            for count in row {
                print!("{count:>width$}");
            }
            println!();
        }
        report["per_class"] = Value::Object(classes);
        report["confusion_matrix"] = json!({"labels": space.names, "matrix": matrix});
    }
    if let Some(path) = &args.output {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        write_atomic(path, text.as_bytes())?;
    }
    Ok(())
}
