//! The validated plan of a run: options checked, data read and tokenized, model loaded, the
//! training stream laid out. Nothing is written until the plan runs.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::{Device, FloatDType};

use super::metric::task_metric_keys;
use super::run_dir::{resolve_run, stream_position};
use super::{LoraSummary, LossScaler, Stopper, TrainPlan, apply_lora, default_lora_targets};
use crate::checkpoint::{LoadedClassifier, load_classifier, resolve_model};
use crate::config::{MixedPrecision, TrainConfig};
use crate::data::{
    Columns, Examples, FileIndex, IndexProgress, LabelSpace, LazyExamples, RowSet, StreamLayout,
    TextTokenizer, TrainBatcher, TrainStream, infer_task, parse_task,
};
use crate::error::{Error, Result};
use crate::model::{Compute, ModelConfig, ProblemType};

/// The splits and the label space of a run. Examples are read and tokenized when a batch
/// needs them (an on-disk row index of each file keeps memory bounded).
pub struct PreparedData {
    /// The task and label names.
    pub space: LabelSpace,
    /// The model's tokenizer, truncating to `max_len`.
    pub tokenizer: TextTokenizer,
    /// Training examples.
    pub train: Arc<dyn Examples>,
    /// Training examples per class (single-label; one count otherwise), counted when class
    /// weights ask for them (empty otherwise).
    pub train_counts: Vec<usize>,
    /// Validation examples (the validation file, or held out of the training data).
    pub valid: Arc<dyn Examples>,
    /// Test examples, when there is a test file.
    pub test: Option<Arc<dyn Examples>>,
    /// Bad rows skipped with `--skip-bad-rows`, over all files.
    pub skipped: usize,
    /// Files indexed by this run, and files whose cached index was reused.
    pub indexed: (usize, usize),
}

/// Indexes, labels and splits the data of `config`; `progress` follows each indexing pass.
pub fn prepare_data(
    config: &TrainConfig,
    model_dir: &Path,
    pad_id: u32,
    progress: IndexProgress,
) -> Result<PreparedData> {
    let columns = Columns {
        text: config.text_column.clone(),
        text_pair: config.text_pair_column.clone(),
        label: Some(config.label_column.clone()),
        no_header: config.no_header,
    };
    let (mut skipped, mut indexed) = (0, (0, 0));
    let mut open = |path: &Path| -> Result<FileIndex> {
        let index = FileIndex::open(path, config.format, &columns, progress)?;
        index.check_rows(config.skip_bad_rows)?;
        skipped += index.bad_rows;
        if index.reused {
            indexed.1 += 1;
        } else {
            indexed.0 += 1;
        }
        Ok(index)
    };
    let train_path = config.train.clone().unwrap_or_default();
    let train = open(&train_path)?;
    let task = parse_task(&config.task)?.unwrap_or_else(|| infer_task(&train.stats));
    let space = LabelSpace::from_training(
        &train.stats,
        task,
        config.labels.clone(),
        &config.label_delimiter,
    )?;
    space.check(&train.stats, &train_path)?;
    let (train_rows, valid_rows) = match &config.valid {
        Some(path) => {
            let valid = open(path)?;
            space.check(&valid.stats, path)?;
            (train.rows.clone(), valid.rows)
        }
        None => {
            let (train_rows, valid_rows) = (train.rows).stratified_split(
                &space,
                &train.stats,
                config.valid_ratio,
                config.seed,
            )?;
            if valid_rows.is_empty() {
                return Err(Error::Input(
                    "no validation data: give --valid or a valid_ratio above 0".into(),
                ));
            }
            (train_rows, valid_rows)
        }
    };
    let train_rows = train_rows.truncated(config.max_train_samples);
    let valid_rows = valid_rows.truncated(config.max_eval_samples);
    let test = match &config.test {
        Some(path) => {
            let test = open(path)?;
            space.check(&test.stats, path)?;
            Some(test.rows)
        }
        None => None,
    };
    let tokenizer = TextTokenizer::from_dir(model_dir, config.max_len, pad_id)?
        .with_pad_multiple(config.pad_to_multiple_of.unwrap_or(1))?;
    let examples = |rows: RowSet| -> Arc<dyn Examples> {
        Arc::new(LazyExamples::new(rows, tokenizer.clone(), space.clone()))
    };
    Ok(PreparedData {
        train_counts: match config.class_weights {
            Some(_) => train_rows.class_counts(&space, &train.stats)?,
            None => Vec::new(),
        },
        train: examples(train_rows),
        valid: examples(valid_rows),
        test: test.map(examples),
        skipped,
        indexed,
        space,
        tokenizer,
    })
}

/// Parses `class_weights` against the training examples per class: `balanced` or a comma list.
pub fn class_weights(spec: &str, counts: &[usize], space: &LabelSpace) -> Result<Vec<f32>> {
    if space.task != ProblemType::SingleLabel {
        return Err(Error::Input(
            "class_weights apply to single-label classification only".into(),
        ));
    }
    let n = space.names.len();
    if spec.trim() == "balanced" {
        let total = counts.iter().sum::<usize>() as f32;
        return Ok(counts
            .iter()
            .map(|&c| total / (n as f32 * c.max(1) as f32))
            .collect());
    }
    let weights = spec
        .split(',')
        .map(|w| w.trim().parse::<f32>().ok().filter(|w| *w >= 0.0))
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| {
            Error::Input(format!(
                "class_weights '{spec}' is neither 'balanced' nor a list of non-negative numbers"
            ))
        })?;
    if weights.len() != n {
        return Err(Error::Input(format!(
            "class_weights has {} numbers, the labels are {} ({})",
            weights.len(),
            n,
            space.names.join(", ")
        )));
    }
    Ok(weights)
}

/// The validation metric keys a task can stop on.
fn available_metrics(task: ProblemType) -> Vec<&'static str> {
    let mut keys = vec!["loss"];
    keys.extend(task_metric_keys(task));
    keys
}

impl TrainPlan {
    /// Checks every option, reads and tokenizes the data and loads the model: everything that
    /// can fail on bad input fails here, before the run directory is touched.
    pub fn new(config: &TrainConfig, device: &Device) -> Result<Self> {
        Self::on_devices(config, std::slice::from_ref(device), &|_, _| {})
    }

    /// [`Self::new`] training data parallel on `devices` (the first holds the model, runs
    /// validation and the optimizer; each step takes `grad_accum` batches per device), calling
    /// `progress` with (bytes read, file size) while a data file is indexed.
    pub fn on_devices(
        config: &TrainConfig,
        devices: &[Device],
        progress: IndexProgress,
    ) -> Result<Self> {
        let Some(device) = devices.first() else {
            return Err(Error::Input("no training device".into()));
        };
        let (compute, scaler) = mixed_precision(config.mixed_precision, device)?;
        let mut notices = Vec::new();
        let (output, resume_from) = resolve_run(config)?;
        let model_dir = resolve_model(&config.model)?;
        let base_config = ModelConfig::from_file(&model_dir.join("config.json"))?;
        let limit = crate::inference::model_max_len(&base_config);
        if config.max_len > limit {
            return Err(Error::Input(format!(
                "max_len {} exceeds what the model supports ({limit})",
                config.max_len
            )));
        }
        let data = prepare_data(
            config,
            &model_dir,
            base_config.pad_token_id as u32,
            progress,
        )?;
        if data.indexed.1 > 0 {
            let cache = crate::data::cache_dir().unwrap_or_default().join("index");
            notices.push(format!(
                "row index: {} data files indexed, {} unchanged ones reused from {}",
                data.indexed.0,
                data.indexed.1,
                cache.display()
            ));
        }
        if data.skipped > 0 {
            notices.push(format!("skipped {} bad rows", data.skipped));
        }
        let key = config.early_stopping_metric.to_lowercase();
        let available = available_metrics(data.space.task);
        if !available.contains(&key.as_str()) {
            return Err(Error::Input(format!(
                "--early-stopping-metric '{key}' is not reported for this task (choose from {})",
                available.join(", ")
            )));
        }
        let class_weights = config
            .class_weights
            .as_deref()
            .map(|spec| class_weights(spec, &data.train_counts, &data.space))
            .transpose()?;

        let train_device = device.clone().autodiff();
        // Seeds the fresh head's initialisation (and dropout until the stream reseeds it).
        train_device.seed(config.seed);
        let LoadedClassifier {
            model,
            config: mut model_config,
            notices: loaded,
        } = load_classifier(&model_dir, Some(data.space.names.clone()), &train_device)?;
        notices.extend(loaded);
        let model = model.with_compute(compute);
        let (model, lora) = match config.lora_rank {
            Some(rank) => {
                let arch = model_config.architecture;
                let targets = config
                    .lora_targets
                    .clone()
                    .unwrap_or_else(|| default_lora_targets(arch).to_string());
                let alpha = config.lora_alpha.unwrap_or(2.0 * rank as f64);
                let (model, summary) = apply_lora(model, arch, rank, alpha, &targets)?;
                (model, Some(summary))
            }
            None => (model, None),
        };
        model_config.problem_type = Some(data.space.task);

        let batcher = TrainBatcher {
            padding: data.tokenizer.padding(),
            num_labels: data.space.names.len(),
            // Half batches side by side on the CPU's cores (`halves`).
            halves: devices.len() == 1
                && crate::backend::cheap_host_access(device)
                && rayon::current_num_threads() >= 2,
        };
        let layout = StreamLayout {
            batch_size: config.batch_size,
            epochs: config.epochs,
            sampling: config.sampling,
            seed: config.seed,
            eval_steps: config.eval_steps,
            accum: config.grad_accum,
            max_steps: config.max_steps,
            devices: devices.len(),
        };
        let stream = TrainStream::new(data.train.clone(), layout, batcher, train_device);
        if let Some(evaluation) = resume_from {
            stream.resume_at(stream_position(&output, evaluation, &stream.state())?);
        }
        Ok(Self {
            config: config.clone(),
            device: device.clone(),
            devices: devices.to_vec(),
            output,
            resume_from,
            model_dir,
            data,
            model: Some(model),
            model_config,
            class_weights,
            scaler,
            lora,
            key,
            stopper: Stopper::new(stream.state()),
            stream,
            notices,
        })
    }

    /// What the run will do, a line each: its configuration, its size and where it writes.
    pub fn describe(&self) -> Vec<String> {
        let progress = self.stream.state();
        let mut lines = vec![format!("training configuration\n{}", self.config.to_toml())];
        if let Some(lora) = &self.lora {
            lora_line(&mut lines, lora, self.config.lora_rank.unwrap_or(0));
        }
        if let Some(weights) = &self.class_weights {
            lines.push(format!("class weights {weights:?}"));
        }
        if self.devices.len() > 1 {
            lines.push(format!(
                "data parallel on {} devices: {} examples per optimizer step",
                self.devices.len(),
                self.devices.len() * self.config.batch_size * self.config.grad_accum
            ));
        }
        lines.push(format!(
            "{} train / {} valid examples, task {}, {} labels, {} optimizer steps ({} warmup), evaluations: {}, output {}",
            self.data.train.len(),
            self.data.valid.len(),
            self.data.space.task.as_str(),
            self.data.space.names.len(),
            progress.total_steps,
            self.warmup_steps(),
            self.evaluations(),
            self.output.display()
        ));
        if let Some(evaluation) = self.resume_from {
            lines.push(format!(
                "resuming after evaluation {evaluation} (step {}, epoch {:.2})",
                progress.steps(),
                progress.epochs()
            ));
        }
        lines
    }

    /// Where the run writes its artifacts.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// Notices about the model and the data (a re-initialised head, skipped rows, …).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Stops the run from another thread (Ctrl-C).
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Evaluations of the whole run, those before a resume included.
    pub(super) fn evaluations(&self) -> usize {
        self.resume_from.unwrap_or(0) + self.stream.windows_left()
    }

    /// Optimizer steps of linear warmup.
    pub(super) fn warmup_steps(&self) -> usize {
        (self.stream.state().total_steps as f64 * self.config.warmup_ratio).ceil() as usize
    }
}

/// "LoRA rank r on N weights (…): trainable X of Y parameters (Z%)".
fn lora_line(lines: &mut Vec<String>, lora: &LoraSummary, rank: usize) {
    let mut kinds: Vec<&str> = lora
        .targets
        .iter()
        .filter_map(|t| t.rsplit('.').next())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    lines.push(format!(
        "LoRA rank {rank} on {} weights ({}) and the head: trainable {} of {} parameters ({:.2}%)",
        lora.targets.len(),
        kinds.join(", "),
        lora.trainable,
        lora.total,
        100.0 * lora.trainable as f64 / lora.total.max(1) as f64
    ));
}

/// The compute type of the matmuls and the loss scaler for `mixed` on `device`. Parameters
/// stay f32: a device whose own float type is f16 or bf16 (`--precision`) is refused.
fn mixed_precision(
    mixed: MixedPrecision,
    device: &Device,
) -> Result<(Compute, Option<LossScaler>)> {
    let own = device.settings().float_dtype;
    if own != FloatDType::F32 {
        // Measured on an H200 (README): bf16 weights reached dev accuracy 0.51, f32 0.74.
        return Err(Error::Input(format!(
            "training keeps f32 weights: use --mixed-precision {} (f32 master weights, low-precision matmuls) instead of --precision {}",
            if own == FloatDType::F16 {
                "f16"
            } else {
                "bf16"
            },
            if own == FloatDType::F16 {
                "f16"
            } else {
                "bf16"
            },
        )));
    }
    let (dtype, name) = match mixed {
        MixedPrecision::No => return Ok((Compute::default(), None)),
        MixedPrecision::Bf16 => (FloatDType::BF16, "bf16"),
        MixedPrecision::F16 => (FloatDType::F16, "f16"),
    };
    if !device.supports_dtype(burn::tensor::DType::from(dtype)) {
        return Err(Error::Input(format!(
            "--mixed-precision {name}: this backend cannot compute in {name} on this device; use --mixed-precision no"
        )));
    }
    let scaler = (mixed == MixedPrecision::F16).then(LossScaler::default);
    Ok((Compute(Some(dtype)), scaler))
}
