//! The command line: argument definitions and one function per subcommand.

mod eval;
mod predict;
mod serve;
mod train;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::backend::{BackendKind, Precision, all_devices, resolve_backend, select_device};
use crate::checkpoint::resolve_model;
use crate::data::{Columns, Format};
use crate::error::{Error, Result};
use crate::inference::Predictor;
use burn::tensor::Device;

/// Fine-tune and run BERT-family text classifiers with Burn.
#[derive(Parser, Debug)]
#[command(name = "burnbert", version, about)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `burnbert`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fine-tune a pretrained model on labelled text.
    Train(train::TrainArgs),
    /// Evaluate a classifier on labelled data: metrics, per-class table, confusion matrix.
    Eval(eval::EvalArgs),
    /// Label texts with a classifier (a directory or a Hugging Face hub id).
    Predict(predict::PredictArgs),
    /// Serve a classifier over HTTP (text-embeddings-inference's /predict) with dynamic batching.
    Serve(serve::ServeArgs),
    /// Draw the training curves of one or more runs (overlaid) as SVG.
    Plot {
        /// Run directories (with metrics.jsonl).
        #[arg(required = true)]
        runs: Vec<std::path::PathBuf>,
        /// Output file (default: RUN/curves.svg for one run, ./curves.svg for several).
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Put a hub model into the local Hugging Face cache and print its directory.
    FetchModel {
        /// Hub id, e.g. sentence-transformers/all-MiniLM-L6-v2
        model: String,
    },
}

/// Where the texts are in an input file (`predict --input`, `eval --data`).
#[derive(Args, Debug, Clone)]
pub struct InputColumns {
    /// Input format (auto: by extension).
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Column with the text (a name, or a 0-based index with --no-header).
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Column with the second text of a pair (JSONL: `text_pair` when present).
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// The file has no header row.
    #[arg(long)]
    pub no_header: bool,
}

impl InputColumns {
    /// The columns to read from `path`, with `label` when the data is labelled.
    pub fn columns(&self, path: &std::path::Path, label: Option<String>) -> Columns {
        let jsonl = self.format == Format::Jsonl
            || (self.format == Format::Auto
                && path
                    .extension()
                    .is_some_and(|e| e == "jsonl" || e == "json" || e == "ndjson"));
        Columns {
            text: self.text_column.clone(),
            text_pair: self
                .text_pair_column
                .clone()
                .or_else(|| jsonl.then(|| "text_pair".to_string())),
            label,
            no_header: self.no_header,
        }
    }
}

/// How `eval` and `predict` cut inputs into batches.
#[derive(Args, Debug, Clone)]
pub struct BatchArgs {
    /// Truncate inputs to this many tokens (default: the model's limit).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Pad each batch to a multiple of this many tokens (1: to the longest input; default: 32 on
    /// wgpu, 1 elsewhere).
    #[arg(long)]
    pub pad_to_multiple_of: Option<usize>,
}

impl BatchArgs {
    /// Loads `model` on the device `on` selects, with this truncation and padding.
    pub fn load(&self, model: &str, on: &DeviceArgs) -> Result<(Predictor, Vec<String>)> {
        if self.batch_size == 0 {
            return Err(Error::Input("--batch-size must be at least 1".into()));
        }
        let multiple = on.pad_multiple(self.pad_to_multiple_of)?;
        let (mut predictor, notices) = Predictor::load(model, self.max_len, on.device()?)?;
        predictor.tokenizer = predictor.tokenizer.with_pad_multiple(multiple)?;
        Ok((predictor, notices))
    }
}

/// Where the model runs.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Backend, when the build has several (ndarray, flex, wgpu, tch).
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Device: auto, cpu, gpu, gpu:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Float type of parameters and computation: f32, or f16/bf16 where the device supports it.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
}

impl DeviceArgs {
    /// The Burn device these options select.
    pub fn device(&self) -> Result<Device> {
        select_device(self.backend, &self.device, self.precision)
    }

    /// The devices `names` select (`all`: every device the backend lists).
    pub fn devices(&self, names: &[String]) -> Result<Vec<Device>> {
        let names = match names {
            [all] if all == "all" => all_devices(self.backend)?,
            names => names.to_vec(),
        };
        names
            .iter()
            .map(|name| select_device(self.backend, name, self.precision))
            .collect()
    }

    /// The batch padding multiple: `configured`, else the selected backend's default.
    pub fn pad_multiple(&self, configured: Option<usize>) -> Result<usize> {
        match configured {
            Some(multiple) => Ok(multiple),
            None => Ok(resolve_backend(self.backend)?.default_pad_multiple()),
        }
    }
}

/// Parses the process arguments and runs the command.
pub fn main() -> Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    run(cli, &matches)
}

/// Runs a parsed command line; `matches` tells flags typed by the user from defaults.
pub fn run(cli: Cli, matches: &ArgMatches) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            let sub = matches.subcommand_matches("train").unwrap_or(matches);
            train::run(args, sub)
        }
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Plot { runs, output } => {
            let path = crate::plot::plot_runs(&runs, output.as_deref())?;
            println!("{}", path.display());
            Ok(())
        }
        Command::FetchModel { model } => {
            println!("{}", resolve_model(&model)?.display());
            Ok(())
        }
    }
}

/// Prints loader notices on stderr, one line each.
pub(crate) fn print_notices(notices: &[String]) {
    for notice in notices {
        eprintln!("burnbert: {notice}");
    }
}
