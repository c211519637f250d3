//! Fine-tuning through Burn's `SupervisedTraining`/`Learner` with the Hugging Face recipe,
//! and the artifacts a run leaves behind.

mod checkpoints;
mod evaluate;
mod logger;
mod metric;
mod optim;
mod renderer;
mod schedule;
mod step;

pub use checkpoints::*;
pub use evaluate::*;
pub use logger::*;
pub use metric::*;
pub use optim::*;
pub use renderer::*;
pub use schedule::*;
pub use step::*;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::module::Module;
use burn::tensor::Device;
use burn::train::checkpoint::{
    Checkpointer, CheckpointingAction, CheckpointingStrategy, ComposedCheckpointingStrategy,
    KeepLastNCheckpoints,
};
use burn::train::metric::store::{Aggregate, EventStoreClient, Split};
use burn::train::metric::{IterationSpeedMetric, LearningRateMetric, LossMetric};
use burn::train::{EarlyStoppingStrategy, Learner, SupervisedTraining};

use crate::checkpoint::{LoadedClassifier, load_classifier, resolve_model, save_pretrained};
use crate::config::TrainConfig;
use crate::data::{
    BatchedDataset, Columns, LabelSpace, RawRow, StreamLayout, StreamState, TextTokenizer,
    TrainBatcher, TrainItem, TrainStream, infer_task, parse_task, read_checked, sorted_batches,
    stratified_split, train_items,
};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::metrics::{MetricValues, higher_is_better};
use crate::model::ProblemType;

/// Tokenized splits and the label space of a run.
pub struct PreparedData {
    pub space: LabelSpace,
    pub tokenizer: TextTokenizer,
    pub train: Arc<Vec<TrainItem>>,
    pub valid: Arc<Vec<TrainItem>>,
    pub test: Option<Arc<Vec<TrainItem>>>,
    /// Bad rows skipped with `--skip-bad-rows`, over all files.
    pub skipped: usize,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunSummary {
    pub output: PathBuf,
    /// The evaluation (1, 2, …; each epoch end and each `eval_steps`) whose model was saved.
    pub best_evaluation: usize,
    pub eval: MetricValues,
    pub test: Option<MetricValues>,
    pub seconds: f64,
    /// Training examples per second inside training steps (evaluations and checkpoint writes
    /// excluded, as in Trainer's `train_samples_per_second`).
    pub samples_per_second: f64,
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

/// Whether `value` is a better evaluation than `best` (transformers' rule for the best model):
/// strictly higher (or lower) than the best so far, so ties keep the earlier evaluation; NaN
/// and infinities never are.
pub fn improves(value: f64, best: Option<f64>, higher: bool) -> bool {
    value.is_finite()
        && match best {
            None => true,
            Some(best) if higher => value > best,
            Some(best) => value < best,
        }
}

/// The best evaluation of `values` (evaluation, value) by [`improves`]: the rule that picks the
/// saved model, the checkpoint Burn keeps and the reference of patience.
pub fn best_of(
    values: impl IntoIterator<Item = (usize, f64)>,
    higher: bool,
) -> Option<(usize, f64)> {
    values.into_iter().fold(None, |best, (evaluation, value)| {
        if improves(value, best.map(|(_, b)| b), higher) {
            Some((evaluation, value))
        } else {
            best
        }
    })
}

/// Whether training should stop after the evaluations `values` (in order), as transformers'
/// `EarlyStoppingCallback`: an evaluation counts as an improvement when it beats the best
/// before it ([`improves`]) by more than `min_delta`; `patience` evaluations in a row without
/// one stop the run. `min_delta` never changes which evaluation is the best.
pub fn patience_exhausted(values: &[f64], higher: bool, min_delta: f64, patience: usize) -> bool {
    let mut best = None;
    let mut waited = 0;
    for &value in values {
        let beats = improves(value, best, higher);
        let by_enough = best.is_none_or(|b: f64| (value - b).abs() > min_delta);
        if beats && by_enough {
            waited = 0;
        } else {
            waited += 1;
        }
        if beats {
            best = Some(value);
        }
    }
    waited >= patience
}

/// Early stopping on the validation metric `name` (see [`patience_exhausted`]), and the end of
/// a run stopped with Ctrl-C.
#[derive(Clone)]
struct Patience {
    name: String,
    higher: bool,
    patience: Option<usize>,
    min_delta: f64,
    /// A Ctrl-C stop ends training after the evaluation and checkpoint in progress.
    progress: Arc<StreamState>,
}

impl EarlyStoppingStrategy for Patience {
    fn should_stop(&mut self, epoch: usize, store: &EventStoreClient) -> bool {
        if self.progress.stop_requested() {
            return true;
        }
        let Some(patience) = self.patience else {
            return false;
        };
        let values: Vec<f64> = validation_values(store, &self.name, epoch)
            .map(|(_, v)| v)
            .collect();
        patience_exhausted(&values, self.higher, self.min_delta, patience)
    }
}

/// The validation values of metric `name` for evaluations `1..=epoch`, those before a resume
/// included (Burn reads them back from its logs).
fn validation_values<'a>(
    store: &'a EventStoreClient,
    name: &'a str,
    epoch: usize,
) -> impl Iterator<Item = (usize, f64)> + 'a {
    (1..=epoch).filter_map(move |e| {
        Some((
            e,
            store.find_metric(name, e, Aggregate::Mean, &Split::Valid)?,
        ))
    })
}

/// Keeps the checkpoint of the best evaluation by [`best_of`] (the same rule as the saved model
/// and patience) and deletes the one it replaces.
struct KeepBest {
    name: String,
    higher: bool,
    kept: Option<usize>,
}

impl CheckpointingStrategy for KeepBest {
    fn checkpointing(
        &mut self,
        epoch: usize,
        store: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        let best =
            best_of(validation_values(store, &self.name, epoch), self.higher).map(|(e, _)| e);
        let mut actions = Vec::new();
        if let Some(kept) = self.kept
            && Some(kept) != best
        {
            actions.push(CheckpointingAction::Delete(kept));
        }
        if best == Some(epoch) {
            actions.push(CheckpointingAction::Save);
        }
        self.kept = best;
        actions
    }
}

/// The best evaluation in the validation history by [`best_of`].
pub fn best_epoch(history: &History, key: &str) -> Option<(usize, f64)> {
    let values = history
        .get("valid")?
        .iter()
        .filter_map(|(&evaluation, values)| Some((evaluation, *values.get(key)?)));
    best_of(values, higher_is_better(key))
}

/// Reads `metrics.jsonl` back into a [`History`]; a file that does not exist (no evaluation
/// yet) is an empty history, one that cannot be read is an error naming it.
pub fn read_history(path: &Path) -> Result<History> {
    let mut history = History::new();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    for line in text.lines() {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str(line) else {
            continue;
        };
        let (Some(evaluation), Some(split)) = (
            map.get("evaluation").and_then(|v| v.as_u64()),
            map.get("split").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let values = map
            .iter()
            .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
            .filter(|(k, _)| k != "evaluation")
            .collect();
        history
            .entry(split.to_string())
            .or_default()
            .insert(evaluation as usize, values);
    }
    Ok(history)
}

/// Where the stream stood at `evaluation` of the run in `output`: (batches, optimizer steps).
fn stream_position(output: &Path, evaluation: usize, per_epoch: usize) -> Result<(usize, usize)> {
    let history = read_history(&output.join("metrics.jsonl"))?;
    let line = history.get("train").and_then(|h| h.get(&evaluation));
    match line.and_then(|v| Some((v.get("epoch")?, v.get("step")?))) {
        Some((&epoch, &step)) => Ok(((epoch * per_epoch as f64).round() as usize, step as usize)),
        None => Err(Error::Input(format!(
            "--resume: {} has no training line for evaluation {evaluation}",
            output.join("metrics.jsonl").display()
        ))),
    }
}

/// The last evaluation with a complete checkpoint (every part) in `dir/checkpoint`.
fn last_checkpoint(dir: &Path) -> Option<usize> {
    complete_checkpoints(&dir.join("checkpoint"))
        .last()
        .copied()
}

/// Holds `output/.lock` for as long as the returned file lives, so that a second `train` on the
/// same output is refused instead of mixing two runs' files. The operating system releases the
/// lock when the process ends, killed or not.
fn lock_run_dir(output: &Path) -> Result<std::fs::File> {
    let path = output.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Input(format!(
            "another burnbert train is writing to {} (it holds {}); wait for it or choose another --output",
            output.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Forgets what a killed run logged after the checkpoint it resumes from (`evaluation`; 0 for
/// a run that never completed one): the `metrics.jsonl` lines and Burn's metric logs of later
/// evaluations, which would otherwise mix with the new ones, and incomplete checkpoints.
fn forget_after(output: &Path, evaluation: usize) -> Result<()> {
    let metrics = output.join("metrics.jsonl");
    if let Ok(text) = std::fs::read_to_string(&metrics) {
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("evaluation")?.as_u64())
                    .is_some_and(|e| e as usize <= evaluation)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        if kept.len() != text.len() {
            write_atomic(&metrics, kept.as_bytes())?;
        }
    }
    let later = |name: &str, prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.split(['.', '-']).next()?.parse::<usize>().ok())
            .is_some_and(|n| n > evaluation)
    };
    for (dir, prefixes) in [
        ("train", &["epoch-"][..]),
        ("valid", &["epoch-"][..]),
        ("checkpoint", &["model-", "optim-", "scheduler-"][..]),
    ] {
        let dir = output.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| later(&name, p)) {
                let path = entry.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|e| Error::io(&path, e))?;
            }
        }
    }
    Ok(())
}

fn default_output(config: &TrainConfig) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("runs").join(format!("{}-{stamp}", config.name))
}

/// Fine-tunes `config.model` on `config.train` and writes the artifacts. Returns the summary.
pub fn train(config: &TrainConfig, device: &Device) -> Result<RunSummary> {
    let started = Instant::now();
    if device.settings().float_dtype == burn::tensor::FloatDType::F16 {
        // AdamW's epsilon (1e-8) is 0 in f16 and small gradients underflow: pure f16 training
        // diverges at once without loss scaling and f32 master weights, which Burn lacks.
        return Err(Error::Input(
            "training in f16 is not supported (no loss scaling or f32 master weights in Burn); use --precision bf16 or f32 (f16 works for eval and predict)".into(),
        ));
    }
    if device.settings().float_dtype == burn::tensor::FloatDType::BF16 {
        // Measured on an H200 (README): the SST-2 job reached dev accuracy 0.51 in bf16, 0.74 in f32.
        eprintln!(
            "burnbert: bf16 training keeps the weights themselves in bf16 (no f32 master copy): an update under about 1/256 of a weight is rounded away, so at learning rates like 5e-5 the model barely learns; train in f32 and use bf16 for eval and predict"
        );
    }
    let output = config
        .output
        .clone()
        .unwrap_or_else(|| default_output(config));
    let resume_from = if config.resume {
        Some(last_checkpoint(&output).ok_or_else(|| {
            Error::Input(format!(
                "--resume: no complete checkpoint (model, optimizer and scheduler of one evaluation) in {}; start the run again without --resume",
                output.join("checkpoint").display()
            ))
        })?)
    } else {
        // A run killed before its first complete checkpoint left nothing to resume: its
        // directory is reused (and cleared below, once it is locked).
        if last_checkpoint(&output).is_some() {
            return Err(Error::Input(format!(
                "{} already holds a run; use --resume to continue it or another --output",
                output.display()
            )));
        }
        None
    };
    let model_dir = resolve_model(&config.model)?;
    let base_config = crate::model::ModelConfig::from_file(&model_dir.join("config.json"))?;
    let limit = crate::inference::model_max_len(&base_config);
    if config.max_len > limit {
        return Err(Error::Input(format!(
            "max_len {} exceeds what the model supports ({limit})",
            config.max_len
        )));
    }
    let data = prepare_data(config, &model_dir, base_config.pad_token_id as u32)?;
    if data.skipped > 0 {
        eprintln!("burnbert: skipped {} bad rows", data.skipped);
    }
    let key = config.early_stopping_metric.to_lowercase();
    let available = available_metrics(data.space.task);
    if !available.contains(&key.as_str()) {
        return Err(Error::Input(format!(
            "--early-stopping-metric '{key}' is not reported for this task (choose from {})",
            available.join(", ")
        )));
    }

    let weights = config
        .class_weights
        .as_deref()
        .map(|spec| class_weights(spec, &data.train, &data.space))
        .transpose()?;

    let train_device = device.clone().autodiff();
    // Seeds the fresh head's initialisation and dropout.
    train_device.seed(config.seed);
    let LoadedClassifier {
        model,
        config: mut model_config,
        notices,
    } = load_classifier(&model_dir, Some(data.space.names.clone()), &train_device)?;
    crate::cli::print_notices(&notices);
    model_config.problem_type = Some(data.space.task);
    if let Some(weights) = &weights {
        println!("burnbert: class weights {weights:?}");
    }
    let trainee = Trainee {
        model,
        max_grad_norm: config.max_grad_norm,
        class_weights: weights,
    };

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
    let stream = TrainStream::new(
        data.train.clone(),
        layout,
        batcher.clone(),
        train_device.clone(),
    );
    let progress = stream.state();
    if let Some(evaluation) = resume_from {
        let (position, steps) = stream_position(&output, evaluation, progress.per_epoch)?;
        stream.resume_at(position, steps);
    }
    let evaluations = resume_from.unwrap_or(0) + stream.windows_left();
    let valid_lengths: Vec<usize> = data
        .valid
        .iter()
        .map(|i| i.encoded.input_ids.len())
        .collect();
    let loader_valid = DataLoaderBuilder::new(batcher)
        .batch_size(1)
        .num_workers(1)
        .set_device(train_device.clone())
        .build(BatchedDataset::new(
            data.valid.clone(),
            sorted_batches(&valid_lengths, config.batch_size),
        ));

    let total_steps = progress.total_steps;
    let warmup = (total_steps as f64 * config.warmup_ratio).ceil() as usize;
    let schedule = WarmupDecay::new(config.scheduler, config.lr, warmup, total_steps);

    // Everything is checked: only now does the run directory appear.
    std::fs::create_dir_all(&output).map_err(|e| Error::io(&output, e))?;
    let _lock = lock_run_dir(&output)?;
    forget_after(&output, resume_from.unwrap_or(0))?;
    write_atomic(
        &output.join("train_config.toml"),
        config.to_toml().as_bytes(),
    )?;
    println!("burnbert: training configuration\n{}", config.to_toml());
    println!(
        "burnbert: {} train / {} valid examples, task {}, {} labels, {} optimizer steps ({} warmup), evaluations: {}, output {}",
        data.train.len(),
        data.valid.len(),
        data.space.task.as_str(),
        data.space.names.len(),
        total_steps,
        warmup,
        evaluations,
        output.display()
    );

    let tui = !config.no_tui && std::io::stdout().is_terminal();
    let history = Arc::new(Mutex::new(History::new()));
    let higher = higher_is_better(&key);
    let best_name = display_name(&key);
    let keep = ComposedCheckpointingStrategy::builder()
        .add(KeepLastNCheckpoints::new(1))
        .add(KeepBest {
            name: best_name.clone(),
            higher,
            kept: None,
        })
        .build();

    let checkpoint_dir = output.join("checkpoint");
    let [model_part, optim_part, scheduler_part] = AtomicCheckpointer::set(&checkpoint_dir);
    let mut training = SupervisedTraining::new(&output, Arc::new(stream), loader_valid)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .metric_train_numeric(LearningRateMetric::new())
        .metric_train(IterationSpeedMetric::new())
        .with_metric_logger(JsonlLogger::new(
            &output,
            !tui,
            history.clone(),
            progress.clone(),
        ))
        .with_custom_checkpointers(model_part, optim_part, scheduler_part)
        .with_checkpointing_strategy(keep)
        .early_stopping(Patience {
            name: best_name.clone(),
            higher,
            patience: config.patience,
            min_delta: config.min_delta,
            progress: progress.clone(),
        })
        .num_epochs(evaluations)
        .summary();
    if data.space.task == ProblemType::SingleLabel {
        // Split-level accuracy as a fraction (Burn's AccuracyMetric reports per-batch percent).
        let accuracy = SplitMetric::new(
            "accuracy",
            data.space.task,
            data.space.names.len(),
            config.threshold,
        );
        training = training
            .metric_train_numeric(accuracy.clone())
            .metric_valid_numeric(accuracy);
    }
    for key in task_metric_keys(data.space.task)
        .iter()
        .filter(|k| **k != "accuracy")
    {
        training = training.metric_valid_numeric(SplitMetric::new(
            key,
            data.space.task,
            data.space.names.len(),
            config.threshold,
        ));
    }
    if config.grad_accum > 1 {
        training = training.grads_accumulation(config.grad_accum);
    }
    if !tui {
        training = training.renderer(Box::new(PlainRenderer::new(
            config.log_every,
            progress.clone(),
        )));
    }
    if let Some(evaluation) = resume_from {
        println!(
            "burnbert: resuming after evaluation {evaluation} (step {}, epoch {:.2})",
            progress.steps(),
            progress.epochs()
        );
        training = training.checkpoint(evaluation);
    }
    let learner = Learner::new(trainee, adamw(config), schedule);
    stop_on_ctrl_c(training.interrupter(), progress.clone());
    let result = training.launch(learner);
    if let Some(error) = result.error {
        return Err(Error::Input(format!("training failed: {error}")));
    }
    if result.interrupted.is_some() {
        println!(
            "burnbert: interrupted at once; saving the best evaluated model (continue from the last checkpoint with --resume --output {})",
            output.display()
        );
    } else if progress.stop_requested() {
        println!(
            "burnbert: stopped at step {} after a checkpoint; saving the best evaluated model (continue with --resume --output {})",
            progress.steps(),
            output.display()
        );
    }

    if let Some(failure) = progress.failure() {
        return Err(Error::Input(failure));
    }
    // The best epoch, not the last, becomes the saved model.
    let history = read_history(&output.join("metrics.jsonl"))?;
    let Some((best, _)) = best_epoch(&history, &key) else {
        let evaluated = history.get("valid").is_some_and(|h| !h.is_empty());
        return Err(Error::Input(if evaluated {
            format!(
                "validation {key} was never a number (training diverged to NaN/inf); nothing saved in {}",
                output.display()
            )
        } else {
            format!(
                "training stopped before the first evaluation; nothing saved in {}",
                output.display()
            )
        }));
    };
    // The model in memory is the last step's; the saved one is the best epoch's checkpoint.
    let checkpointer = AtomicCheckpointer::new(&checkpoint_dir, "model");
    let record =
        Checkpointer::<burn::store::ModuleRecord>::restore(&checkpointer, best).map_err(|e| {
            Error::Checkpoint {
                path: output.join("checkpoint"),
                message: format!(
                    "the best epoch's ({best}) model checkpoint cannot be read: {e:?}"
                ),
            }
        })?;
    let trainee = result.model.load_record(record);
    let trainee = trainee.valid();
    let evaluate_on = |items: Arc<Vec<TrainItem>>| {
        evaluate(
            &trainee,
            items,
            &data.space,
            config.batch_size,
            data.tokenizer.padding(),
            config.threshold,
            device,
        )
        .map(|(metrics, _)| metrics)
    };
    let mut eval = evaluate_on(data.valid.clone())?;
    // Where the saved model was taken: epochs (fractional with --eval-steps) and step.
    for key in ["epoch", "step"] {
        if let Some(&value) = history.get("valid").and_then(|h| h.get(&best)?.get(key)) {
            eval.insert(key.into(), value);
        }
    }
    let test = data.test.clone().map(evaluate_on).transpose()?;

    save_pretrained(&trainee.model, &model_config, &model_dir, &output)?;
    write_json(&output.join("eval_results.json"), &eval)?;
    crate::plot::plot_runs(std::slice::from_ref(&output), None)?;
    if let Some(test) = &test {
        write_json(&output.join("test_results.json"), test)?;
    }
    let samples = progress.examples();
    let summary = RunSummary {
        output,
        best_evaluation: best,
        eval,
        test,
        seconds: started.elapsed().as_secs_f64(),
        samples_per_second: samples as f64 / progress.train_seconds().max(1e-9),
    };
    print_summary(&summary);
    Ok(summary)
}

/// The first Ctrl-C ends the run at the next optimizer step, after an evaluation and a
/// checkpoint there; a second one stops at once (the last checkpoint stays).
fn stop_on_ctrl_c(interrupter: burn::train::Interrupter, progress: Arc<StreamState>) {
    type Run = (burn::train::Interrupter, Arc<StreamState>);
    static CURRENT: Mutex<Option<Run>> = Mutex::new(None);
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    if let Ok(mut current) = CURRENT.lock() {
        *current = Some((interrupter, progress));
    }
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            let Ok(current) = CURRENT.lock() else {
                return;
            };
            let Some((interrupter, progress)) = current.as_ref() else {
                return;
            };
            if progress.stop_requested() {
                interrupter.stop(Some("Ctrl-C"));
            } else {
                eprintln!(
                    "burnbert: stopping after this step's evaluation and checkpoint (Ctrl-C again to stop now)"
                );
                progress.request_stop();
            }
        });
    });
}

fn write_json(path: &Path, values: &MetricValues) -> Result<()> {
    let text = serde_json::to_string_pretty(values)
        .map_err(|e| Error::Input(format!("{}: cannot serialise: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

/// The closing table: best evaluation, its validation (and test) metrics, time and speed.
pub fn print_summary(summary: &RunSummary) {
    println!("\n{:<22}{}", "output", summary.output.display());
    let at = |key: &str| summary.eval.get(key).copied().unwrap_or(0.0);
    println!(
        "{:<22}{} (step {}, epoch {:.2})",
        "best evaluation",
        summary.best_evaluation,
        at("step"),
        at("epoch")
    );
    for (key, value) in &summary.eval {
        if key != "epoch" && key != "step" {
            println!("{:<22}{}", format!("eval {key}"), format_value(*value));
        }
    }
    if let Some(test) = &summary.test {
        for (key, value) in test {
            println!("{:<22}{}", format!("test {key}"), format_value(*value));
        }
    }
    println!("{:<22}{}", "wall time", clock(summary.seconds));
    println!("{:<22}{:.1}", "train samples/s", summary.samples_per_second);
}
