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
    Columns, LabelSpace, RawRow, StreamLayout, TextTokenizer, TrainBatcher, TrainItem, TrainStream,
    infer_task, parse_task, read_checked, stratified_split, train_items,
};
use crate::error::{Error, Result};
use crate::model::{Compute, ModelConfig, ProblemType};

/// Tokenized splits and the label space of a run.
pub struct PreparedData {
    /// The task and label names.
    pub space: LabelSpace,
    /// The model's tokenizer, truncating to `max_len`.
    pub tokenizer: TextTokenizer,
    /// Training examples.
    pub train: Arc<Vec<TrainItem>>,
    /// Validation examples (the validation file, or held out of the training data).
    pub valid: Arc<Vec<TrainItem>>,
    /// Test examples, when there is a test file.
    pub test: Option<Arc<Vec<TrainItem>>>,
    /// Bad rows skipped with `--skip-bad-rows`, over all files.
    pub skipped: usize,
}

/// Reads, labels, splits and tokenizes the data of `config`.
pub fn prepare_data(config: &TrainConfig, model_dir: &Path, pad_id: u32) -> Result<PreparedData> {
    let columns = Columns {
        text: config.text_column.clone(),
        text_pair: config.text_pair_column.clone(),
        label: Some(config.label_column.clone()),
        no_header: config.no_header,
    };
    let train_path = config.train.clone().unwrap_or_default();
    let read = |path: &Path| read_checked(path, config.format, &columns, config.skip_bad_rows);
    let (train_rows, mut skipped) = read(&train_path)?;
    let task = parse_task(&config.task)?.unwrap_or_else(|| infer_task(&train_rows));
    let space = LabelSpace::from_training(
        &train_rows,
        task,
        config.labels.clone(),
        &config.label_delimiter,
    )?;
    let train_targets = space.targets(&train_rows, &train_path)?;
    let tokenizer = TextTokenizer::from_dir(model_dir, config.max_len, pad_id)?
        .with_pad_multiple(config.pad_to_multiple_of.unwrap_or(1))?;
    let items = |rows: &[RawRow], targets| train_items(&tokenizer, rows, targets);
    // Rows are picked (split, max_*_samples) before tokenizing, so a sample of a large file
    // tokenizes only what it uses.
    let pick = |idx: &[usize]| -> (Vec<RawRow>, Vec<crate::data::Target>) {
        idx.iter()
            .map(|&i| (train_rows[i].clone(), train_targets[i].clone()))
            .unzip()
    };
    let limit = |mut idx: Vec<usize>, max: Option<usize>| {
        if let Some(n) = max {
            idx.truncate(n);
        }
        idx
    };
    let (train, valid) = match &config.valid {
        Some(path) => {
            let (mut rows, bad) = read(path)?;
            skipped += bad;
            if let Some(n) = config.max_eval_samples {
                rows.truncate(n);
            }
            let targets = space.targets(&rows, path)?;
            let train_idx = limit((0..train_rows.len()).collect(), config.max_train_samples);
            let (train_rows, train_targets) = pick(&train_idx);
            (items(&train_rows, train_targets)?, items(&rows, targets)?)
        }
        None => {
            let (train_idx, valid_idx) =
                stratified_split(&train_targets, config.valid_ratio, config.seed);
            if valid_idx.is_empty() {
                return Err(Error::Input(
                    "no validation data: give --valid or a valid_ratio above 0".into(),
                ));
            }
            let (train_rows, train_targets) = pick(&limit(train_idx, config.max_train_samples));
            let (valid_rows, valid_targets) = pick(&limit(valid_idx, config.max_eval_samples));
            (
                items(&train_rows, train_targets)?,
                items(&valid_rows, valid_targets)?,
            )
        }
    };
    let test = match &config.test {
        Some(path) => {
            let (rows, bad) = read(path)?;
            skipped += bad;
            let targets = space.targets(&rows, path)?;
            Some(Arc::new(items(&rows, targets)?))
        }
        None => None,
    };
    Ok(PreparedData {
        space,
        tokenizer,
        train: Arc::new(train),
        valid: Arc::new(valid),
        test,
        skipped,
    })
}

/// Parses `class_weights` against the training targets: `balanced` or a comma list.
pub fn class_weights(spec: &str, train: &[TrainItem], space: &LabelSpace) -> Result<Vec<f32>> {
    if space.task != ProblemType::SingleLabel {
        return Err(Error::Input(
            "class_weights apply to single-label classification only".into(),
        ));
    }
    let n = space.names.len();
    if spec.trim() == "balanced" {
        let mut counts = vec![0usize; n];
        for item in train {
            if let crate::data::Target::Class(c) = item.target {
                counts[c] += 1;
            }
        }
        let total = train.len() as f32;
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
        let data = prepare_data(config, &model_dir, base_config.pad_token_id as u32)?;
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
            .map(|spec| class_weights(spec, &data.train, &data.space))
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
        };
        let layout = StreamLayout {
            batch_size: config.batch_size,
            epochs: config.epochs,
            sampling: config.sampling,
            seed: config.seed,
            eval_steps: config.eval_steps,
            accum: config.grad_accum,
        };
        let stream = TrainStream::new(data.train.clone(), layout, batcher, train_device);
        if let Some(evaluation) = resume_from {
            stream.resume_at(stream_position(
                &output,
                evaluation,
                stream.state().per_epoch,
            )?);
        }
        Ok(Self {
            config: config.clone(),
            device: device.clone(),
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
