//! `burnbert predict`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use super::{DeviceArgs, print_notices};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::inference::{Predictor, TextInput};

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
    /// JSONL file of {"text": …, "text_pair": …} rows.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Write JSONL here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Truncate inputs to this many tokens (default: the model's limit).
    #[arg(long)]
    pub max_len: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let inputs = match (&args.text, &args.input) {
        (Some(text), _) => vec![TextInput {
            text: text.clone(),
            text_pair: args.text_pair.clone(),
        }],
        (None, Some(path)) => read_jsonl(path)?,
        (None, None) => return Err(Error::Input("give --text or --input".into())),
    };
    if args.batch_size == 0 {
        return Err(Error::Input("--batch-size must be at least 1".into()));
    }
    let (predictor, notices) = Predictor::load(&args.model, args.max_len, args.device.device()?)?;
    print_notices(&notices);
    let predictions = predictor.predict(&inputs, args.batch_size)?;
    let mut out = Vec::new();
    for prediction in &predictions {
        serde_json::to_writer(&mut out, prediction).map_err(|e| Error::Input(e.to_string()))?;
        out.push(b'\n');
    }
    match &args.output {
        Some(path) => write_atomic(path, &out),
        None => std::io::stdout()
            .write_all(&out)
            .map_err(|e| Error::io("<stdout>", e)),
    }
}

/// Reads `{"text": …, "text_pair": …}` rows; blank lines are skipped.
pub fn read_jsonl(path: &Path) -> Result<Vec<TextInput>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: TextInput = serde_json::from_str(&line)
            .map_err(|e| Error::Input(format!("{}:{}: {e}", path.display(), index + 1)))?;
        rows.push(row);
    }
    Ok(rows)
}
