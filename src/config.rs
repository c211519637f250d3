//! The training configuration: TOML files under `config/`, each key overridable on the
//! command line (`--epochs 1` wins over `epochs = 3`). Defaults follow Hugging Face Trainer
//! and the GLUE recipe.

use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::{Deserialize, Serialize};

use crate::checkpoint::DEFAULT_MODEL;
use crate::data::{Format, Sampling};
use crate::error::{Error, Result};

/// The decay of the learning rate after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Half a cosine cycle from the peak rate down to 0.
    Cosine,
    /// A straight line from the peak rate down to 0.
    Linear,
}

/// Mixed-precision training (Trainer's `bf16=True` / `fp16=True`): matmuls in bf16 or f16,
/// parameters, optimizer state and everything else in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MixedPrecision {
    /// f32 throughout.
    No,
    /// bfloat16 matmuls.
    Bf16,
    /// f16 matmuls with dynamic loss scaling.
    F16,
}

/// Every `train` option. Keys in TOML are the field names; flags are the same with dashes.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Pretrained model: a directory or a Hugging Face hub id.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Training data (CSV, TSV or JSONL).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Validation data; without it a stratified `valid_ratio` of the training data is held out.
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Test data, evaluated with the saved model at the end (test_results.json).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// File format (auto: by extension).
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Column with the text (a name, or a 0-based index with --no-header).
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Column with the second text of a pair.
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// Column with the label.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// The files have no header row.
    #[arg(long)]
    pub no_header: bool,
    /// single_label, multi_label, regression, or auto (inferred from the labels).
    #[arg(long, default_value = "auto")]
    pub task: String,
    /// The label set, in output order (default: sorted unique training labels).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Separator of multi-label cells written as text.
    #[arg(long, default_value = ",")]
    pub label_delimiter: String,
    /// Fraction held out for validation when there is no validation file.
    #[arg(long, default_value_t = 0.1)]
    pub valid_ratio: f64,
    /// Skip (and count) bad rows instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// Use only the first N training rows.
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    /// Use only the first N validation rows.
    #[arg(long)]
    pub max_eval_samples: Option<usize>,
    /// Passes over the training data.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Train this many optimizer steps instead of `epochs` (as Trainer's `max_steps`: the
    /// schedule spans them; the data is passed over as often as they need).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Examples per batch (per optimizer step: batch_size × grad_accum).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    /// AdamW weight decay (not applied to biases and LayerNorm).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// AdamW's beta1: decay rate of the gradient's running mean.
    #[arg(long, default_value_t = 0.9)]
    pub adam_beta1: f64,
    /// AdamW's beta2: decay rate of the squared gradient's running mean.
    #[arg(long, default_value_t = 0.999)]
    pub adam_beta2: f64,
    /// AdamW's epsilon, added to the denominator for numerical stability.
    #[arg(long, default_value_t = 1e-8)]
    pub adam_epsilon: f64,
    /// Fraction of optimizer steps of linear warmup.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// Decay after warmup.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Cosine)]
    pub scheduler: ScheduleKind,
    /// Order of the training batches, as Trainer's `train_sampling_strategy`: `group-by-length`
    /// (shuffled batches of similar length), `random` (shuffled) or `sequential` (file order).
    #[arg(long, value_enum, default_value_t = Sampling::GroupByLength)]
    pub sampling: Sampling,
    /// Mixed precision: `bf16` or `f16` matmuls with f32 master weights (`f16` with dynamic
    /// loss scaling), or `no`.
    #[arg(long, value_enum, default_value_t = MixedPrecision::No)]
    pub mixed_precision: MixedPrecision,
    /// LoRA: train rank-R adapters on the weights `lora_targets` names, and the classification
    /// head; every other parameter stays frozen. The saved model has the adapters merged in.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA scaling numerator: adapters add (alpha / rank)·A·B (default 2 × rank).
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Regex on transformers' module names of the weights LoRA adapts (default: PEFT's, the
    /// attention's query and value projections).
    #[arg(long)]
    pub lora_targets: Option<String>,
    /// Clip gradients to this global L2 norm (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Batches whose gradients are accumulated per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Truncate inputs to this many tokens.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Pad each batch to a multiple of this many tokens (at most max_len); 1 pads to the longest
    /// input only. Default: 32 on wgpu (it compiles and tunes kernels per shape), 1 elsewhere.
    #[arg(long)]
    pub pad_to_multiple_of: Option<usize>,
    /// Seed of the validation split, the batch order, the head's initialisation and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also evaluate (and checkpoint) every N optimizer steps, not only at each epoch end.
    #[arg(long)]
    pub eval_steps: Option<usize>,
    /// Validation metric that picks the best evaluation and drives early stopping
    /// (loss, accuracy, f1, precision, recall, mcc, mse, pearson, spearman, micro_f1, hamming).
    #[arg(long, default_value = "loss")]
    pub early_stopping_metric: String,
    /// Stop after this many evaluations without improvement (default: never stop early).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Smallest change that counts as an improvement.
    #[arg(long, default_value_t = 0.0)]
    pub min_delta: f64,
    /// Loss weights per class for imbalanced single-label data: `balanced`
    /// (n / (classes × count), as scikit-learn) or one number per label, in label order.
    #[arg(long)]
    pub class_weights: Option<String>,
    /// Multi-label decision threshold on the sigmoid.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Output directory (default: runs/NAME-TIMESTAMP).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Run name used in the default output directory.
    #[arg(long, default_value = "run")]
    pub name: String,
    /// Continue from the last checkpoint in --output.
    #[arg(long)]
    pub resume: bool,
    /// Plain log lines instead of the terminal dashboard.
    #[arg(long)]
    pub no_tui: bool,
    /// Steps between plain log lines.
    #[arg(long, default_value_t = 20)]
    pub log_every: usize,
    /// Time the forward pass, backward pass and optimizer step of this many optimizer steps
    /// (after the first 5), each ended by a device sync, and report where a step's time goes;
    /// 0 times nothing. The syncs slow a GPU's steps.
    #[arg(long, default_value_t = 0)]
    pub profile_steps: usize,
}

impl TrainConfig {
    /// Merges a TOML file (if any) under the flags given on the command line: a flag the user
    /// typed wins, a key in the file wins over a built-in default. Unknown keys are errors.
    pub fn resolve(cli: &Self, matches: &ArgMatches, file: Option<&Path>) -> Result<Self> {
        let source = file.map_or_else(|| PathBuf::from("<command line>"), Path::to_path_buf);
        let parse_err = |message: String| Error::Parse {
            path: source.clone(),
            message,
        };
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| parse_err(e.message().to_string()))?
            }
            None => toml::Table::new(),
        };
        // Every key of the file must have the right type, even one that a flag overrides.
        let defaults =
            toml::Table::try_from(Self::defaults()).map_err(|e| parse_err(e.to_string()))?;
        for (key, value) in &table {
            let mut probe = defaults.clone();
            probe.insert(key.clone(), value.clone());
            probe
                .try_into::<Self>()
                .map_err(|e| {
                    parse_err(if e.message().starts_with("unknown field") {
                        format!(
                            "unknown key `{key}` (the keys are the flags of `burnbert train --help`, with `_` for `-`)"
                        )
                    } else {
                        format!("key `{key}`: {}", e.message())
                    })
                })?;
        }
        let flags = toml::Table::try_from(cli).map_err(|e| parse_err(e.to_string()))?;
        for (key, value) in flags {
            let typed = matches.value_source(&key) == Some(ValueSource::CommandLine);
            if typed || !table.contains_key(&key) {
                table.insert(key, value);
            }
        }
        let config: Self = table
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The built-in defaults (what `burnbert train` uses for keys set nowhere else).
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: TrainConfig,
        }
        <Defaults as clap::Parser>::parse_from(["burnbert"]).config
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Input(m.to_string()));
        if self.train.is_none() {
            return bad("no training data: give --train FILE or a --config that sets `train`");
        }
        if self.epochs == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            return bad("epochs, batch_size and grad_accum must be at least 1");
        }
        if self.eval_steps == Some(0) {
            return bad("eval_steps must be at least 1");
        }
        if self.max_steps == Some(0) {
            return bad("max_steps must be at least 1");
        }
        if self.pad_to_multiple_of == Some(0) {
            return bad("pad_to_multiple_of must be at least 1 (1 pads to the longest input)");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.valid_ratio) {
            return bad("valid_ratio must be in [0, 1)");
        }
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return bad("lr must be in (0, 1]");
        }
        if !(0.0 < self.threshold && self.threshold < 1.0) {
            return bad("threshold must be in (0, 1)");
        }
        Ok(())
    }

    /// The configuration as TOML, as saved with the artifacts.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: TrainConfig,
    }

    fn resolve(args: &[&str], file: &str) -> Result<TrainConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).unwrap();
        let matches =
            Cli::command().get_matches_from(std::iter::once("x").chain(args.iter().copied()));
        let cli = Cli::from_arg_matches(&matches).unwrap();
        TrainConfig::resolve(&cli.config, &matches, Some(&path))
    }

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let c = resolve(
            &["--epochs", "1"],
            "train = \"t.tsv\"\nepochs = 5\nlr = 2e-5\n",
        )
        .unwrap();
        assert_eq!(c.epochs, 1);
        assert_eq!(c.lr, 2e-5);
        assert_eq!(c.batch_size, 32);
        assert_eq!(c.train.as_deref(), Some(Path::new("t.tsv")));
        // Defaults typed explicitly still win over the file.
        let c = resolve(&["--batch-size", "32"], "train = \"t\"\nbatch_size = 8\n").unwrap();
        assert_eq!(c.batch_size, 32);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let err = resolve(&[], "train = \"t\"\nepoch = 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.toml") && err.contains("epoch"), "{err}");
        // A value of the wrong type is named with its file even when a flag overrides it.
        let err = resolve(&["--epochs", "1"], "train = \"t\"\nepochs = \"five\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.toml") && err.contains("`epochs`"), "{err}");
        let err = resolve(&[], "epochs = 2\n").unwrap_err().to_string();
        assert!(err.contains("no training data"), "{err}");
        let err = resolve(&["--warmup-ratio", "1.5"], "train = \"t\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("warmup_ratio"), "{err}");
        let err = resolve(&[], "train = \"t\"\npad_to_multiple_of = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pad_to_multiple_of must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn saved_config_reads_back() {
        let c = resolve(&["--labels", "a,b"], "train = \"t\"").unwrap();
        let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }
}
