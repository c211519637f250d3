//! The command line: argument definitions and one function per subcommand.

mod predict;

use clap::{Args, Parser, Subcommand};

use crate::backend::{BackendKind, select_device};
use crate::checkpoint::resolve_model;
use crate::error::Result;
use burn::tensor::Device;

/// Fine-tune and run BERT-family text classifiers with Burn.
#[derive(Parser, Debug)]
#[command(name = "burnbert", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Label texts with a classifier (a directory or a Hugging Face hub id).
    Predict(predict::PredictArgs),
    /// Put a hub model into the local Hugging Face cache and print its directory.
    FetchModel {
        /// Hub id, e.g. sentence-transformers/all-MiniLM-L6-v2
        model: String,
    },
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
}

impl DeviceArgs {
    /// The Burn device these options select.
    pub fn device(&self) -> Result<Device> {
        select_device(self.backend, &self.device)
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Predict(args) => predict::run(args),
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
