//! `burnbert predict`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{BatchArgs, DeviceArgs, InputColumns, print_notices};
use crate::error::{Error, Result};
use crate::inference::{BulkOptions, TextInput, predict_file};

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model directory or Hugging Face hub id.
    #[arg(long)]
    pub model: String,
    /// A text to classify.
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    pub text: Option<String>,
    /// The second text of a pair (with --text).
    #[arg(long, requires = "text")]
    pub text_pair: Option<String>,
    /// A CSV, TSV or JSONL file to label, streamed (any size).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Write here (.csv, .tsv or .jsonl) instead of stdout; the input's columns are kept.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub columns: InputColumns,
    /// Keep only the k most probable labels in `scores`.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Multi-label: the probability at which a label counts as present.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    #[command(flatten)]
    pub batch: BatchArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: PredictArgs) -> Result<()> {
    if args.top_k == Some(0) {
        return Err(Error::Input("--top-k must be at least 1".into()));
    }
    let (mut predictor, notices) = args.batch.load(&args.model, &args.device)?;
    predictor.threshold = args.threshold;
    print_notices(&notices);
    let Some(input) = &args.input else {
        let text = TextInput {
            text: args.text.clone().unwrap_or_default(),
            text_pair: args.text_pair.clone(),
        };
        let prediction = predictor.predict(&[text], 1)?.remove(0).top_k(args.top_k);
        let line = serde_json::to_string(&prediction).map_err(|e| Error::Input(e.to_string()))?;
        return std::io::stdout()
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| Error::io("<stdout>", e));
    };
    let options = BulkOptions {
        format: args.columns.format,
        columns: args.columns.columns(input, None),
        batch_size: args.batch.batch_size,
        chunk_rows: 4096,
        top_k: args.top_k,
    };
    predict_file(&predictor, input, args.output.as_deref(), &options)?;
    Ok(())
}
