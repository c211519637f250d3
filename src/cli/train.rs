//! `burnbert train`.

use std::path::{Path, PathBuf};

use clap::{ArgMatches, Args};

use super::DeviceArgs;
use crate::config::TrainConfig;
use crate::error::Result;
use crate::training::train;

/// The configuration a bare `burnbert train` uses.
pub const DEFAULT_CONFIG: &str = "config/default.toml";

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// TOML configuration; flags override its keys (default: config/default.toml when no
    /// --train is given).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub train: TrainConfig,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: TrainArgs, matches: &ArgMatches) -> Result<()> {
    let file = match &args.config {
        Some(path) => Some(path.clone()),
        None if args.train.train.is_none() && Path::new(DEFAULT_CONFIG).is_file() => {
            println!("burnbert: using {DEFAULT_CONFIG}");
            Some(PathBuf::from(DEFAULT_CONFIG))
        }
        None => None,
    };
    let mut config = TrainConfig::resolve(&args.train, matches, file.as_deref())?;
    config.pad_to_multiple_of = Some(args.device.pad_multiple(config.pad_to_multiple_of)?);
    let device = args.device.device()?;
    train(&config, &device)?;
    Ok(())
}
