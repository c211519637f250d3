//! `burnbert serve`.

use clap::Args;

use super::{BatchArgs, DeviceArgs, print_notices};
use crate::backend::resolve_backend;
use crate::error::Result;
use crate::serve::{ServeOptions, serve};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model directory or Hugging Face hub id.
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Most padded tokens (inputs × longest input) in one model batch.
    #[arg(long, default_value_t = 16384)]
    pub max_batch_tokens: usize,
    /// Most inputs in one model batch (requests are sorted by length and cut into batches).
    #[arg(long, default_value_t = 32)]
    pub max_batch_size: usize,
    /// Requests that may wait for the model; more are answered 429.
    #[arg(long, default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Longest input in tokens (default: the model's limit); longer ones are refused unless a
    /// request says `"truncate": true`.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Pad each batch to a multiple of this many tokens (default: 32 on wgpu, 1 elsewhere).
    #[arg(long)]
    pub pad_to_multiple_of: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let batch = BatchArgs {
        max_len: args.max_len,
        batch_size: 1,
        pad_to_multiple_of: args.pad_to_multiple_of,
    };
    let (predictor, notices) = batch.load(&args.model, &args.device)?;
    print_notices(&notices);
    let backend = resolve_backend(args.device.backend)?.name();
    let options = ServeOptions {
        host: args.host,
        port: args.port,
        max_batch_tokens: args.max_batch_tokens,
        max_batch_size: args.max_batch_size,
        max_concurrent_requests: args.max_concurrent_requests,
    };
    serve(predictor, &args.model, backend, &options, |address| {
        println!("burnbert: serving {} on http://{address}", args.model);
    })?;
    println!("burnbert: stopped");
    Ok(())
}
