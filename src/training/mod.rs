//! Fine-tuning through Burn's `SupervisedTraining`/`Learner` with the Hugging Face recipe, in
//! named steps: [`TrainPlan::new`] checks the options, prepares the data and loads the model
//! (nothing written); [`TrainPlan::run`] opens the run directory, trains through Burn
//! (`launch`) and finishes: restores the best evaluation, evaluates it and writes the
//! artifacts (`finish`). Nothing here prints: the caller gets notices, progress lines (through
//! [`Display`]) and a [`RunSummary`].

mod adamw;
mod best;
mod checkpoints;
mod evaluate;
mod finish;
mod grads;
mod halves;
mod launch;
mod logger;
mod lora;
mod metric;
mod optim;
mod plan;
mod profile;
mod renderer;
mod run_dir;
mod scaler;
mod schedule;
mod step;

pub use best::*;
pub use checkpoints::*;
pub use evaluate::*;
pub use grads::{clip_global_norm, global_norm};
pub use logger::*;
pub use lora::*;
pub use metric::*;
pub use optim::*;
pub use plan::*;
pub use profile::{StepProfile, StepTimes, WARM_UP_STEPS};
pub use renderer::*;
pub use scaler::*;
pub use schedule::*;
pub use step::*;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::Device;
use burn::train::Interrupter;

use crate::config::TrainConfig;
use crate::data::{StreamState, TrainStream};
use crate::error::Result;
use crate::metrics::MetricValues;
use crate::model::{ModelConfig, SequenceClassifier};

/// Receives readable progress lines (the CLI prints them).
pub type Lines = Arc<dyn Fn(&str) + Send + Sync>;

/// How a run shows its progress.
pub enum Display {
    /// Burn's terminal dashboard.
    Tui,
    /// A line every `every` batches and one per split and evaluation, handed to `lines`.
    Lines {
        /// Batches between progress lines.
        every: usize,
        /// Receives each line.
        lines: Lines,
    },
    /// Nothing.
    Quiet,
}

/// A run checked and prepared by [`TrainPlan::new`], ready to [`TrainPlan::run`].
pub struct TrainPlan {
    config: TrainConfig,
    /// The main device: the model, validation and the optimizer live here.
    device: Device,
    /// Every training device, the main one first (data parallel when there are several).
    devices: Vec<Device>,
    output: PathBuf,
    /// The evaluation whose checkpoint a `--resume` continues from.
    resume_from: Option<usize>,
    model_dir: PathBuf,
    data: PreparedData,
    /// On the autodiff device; taken by the run.
    model: Option<SequenceClassifier>,
    model_config: ModelConfig,
    class_weights: Option<Vec<f32>>,
    /// Dynamic loss scaling (f16 mixed precision).
    scaler: Option<LossScaler>,
    /// What LoRA adapts and leaves trainable, when it is on.
    lora: Option<LoraSummary>,
    /// The validation metric that picks the best evaluation (lower case).
    key: String,
    stream: TrainStream,
    stopper: Stopper,
    notices: Vec<String>,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunSummary {
    /// The run directory.
    pub output: PathBuf,
    /// The evaluation (1, 2, …; each epoch end and each `eval_steps`) whose model was saved.
    pub best_evaluation: usize,
    /// Validation metrics of the saved model (`eval_results.json`).
    pub eval: MetricValues,
    /// Test metrics of the saved model (`test_results.json`), when there is test data.
    pub test: Option<MetricValues>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Training examples per second inside training steps (evaluations and checkpoint writes
    /// excluded, as in Trainer's `train_samples_per_second`).
    pub samples_per_second: f64,
    /// Why training ended before its last step, if it did.
    pub stopped: Option<Stopped>,
    /// Where a step's time went, when `profile_steps` asked and a step was timed.
    pub step_times: Option<StepTimes>,
}

/// How a run was stopped early through its [`Stopper`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// At the optimizer step `step`, after an evaluation and a checkpoint there.
    AfterCheckpoint {
        /// Optimizer steps taken when the run stopped.
        step: usize,
    },
    /// At once: the last checkpoint is the place to resume from.
    AtOnce,
}

/// Stops a run from another thread (Ctrl-C): the first [`Stopper::stop`] ends training at the
/// next optimizer step, after an evaluation and a checkpoint there; a second one at once.
#[derive(Clone)]
pub struct Stopper {
    interrupter: Interrupter,
    progress: Arc<StreamState>,
}

impl Stopper {
    fn new(progress: Arc<StreamState>) -> Self {
        Self {
            interrupter: Interrupter::new(),
            progress,
        }
    }

    /// Asks the run to stop; returns whether this was the first (graceful) request.
    pub fn stop(&self) -> bool {
        if self.progress.stop_requested() {
            self.interrupter.stop(Some("Ctrl-C"));
            false
        } else {
            self.progress.request_stop();
            true
        }
    }
}

/// Fine-tunes `config.model` on `config.train` and writes the artifacts, showing nothing.
pub fn train(config: &TrainConfig, device: &Device) -> Result<RunSummary> {
    TrainPlan::new(config, device)?.run(Display::Quiet)
}

impl TrainPlan {
    /// Opens the run directory (locked while the run lasts), trains and finishes.
    pub fn run(mut self, display: Display) -> Result<RunSummary> {
        let started = Instant::now();
        let _lock = run_dir::open_run_dir(&self.output, self.resume_from, &self.config)?;
        let model = self.model.take().expect("a plan runs once");
        let trained = launch::launch(&self, model, display)?;
        finish::finish(&self, trained, started)
    }
}
