//! The Burn wiring: `SupervisedTraining` with burnbert's stream, metrics, logger, checkpoints,
//! best-model rule, early stopping and schedule, launched on the plan's model.

use std::sync::{Arc, Mutex};

use burn::data::dataloader::DataLoaderBuilder;
use burn::train::checkpoint::{ComposedCheckpointingStrategy, KeepLastNCheckpoints};
use burn::train::metric::{IterationSpeedMetric, LearningRateMetric, LossMetric};
use burn::train::{ExecutionStrategy, Learner, MultiDeviceOptim, SupervisedTraining};

use super::best::{KeepBest, Patience};
use super::{
    AtomicCheckpointer, Display, History, JsonlLogger, PlainRenderer, SplitMetric, StepProfile,
    Stopped, TrainPlan, Trainee, WarmupDecay, adamw, display_name, task_metric_keys,
};
use crate::data::{EvalBatches, TrainBatcher};
use crate::error::{Error, Result};
use crate::metrics::higher_is_better;
use crate::model::{ProblemType, SequenceClassifier};

/// The model after the last training step, and why training ended early if it did.
pub(super) struct Trained {
    pub trainee: Trainee,
    pub stopped: Option<Stopped>,
}

/// Trains `model` as `plan` says; the run directory is open.
pub(super) fn launch(
    plan: &TrainPlan,
    model: SequenceClassifier,
    display: Display,
) -> Result<Trained> {
    let config = &plan.config;
    let progress = plan.stream.state();
    let trainee = Trainee {
        max_grad_norm: config.max_grad_norm,
        class_weights: plan.class_weights.clone(),
        scaler: plan.scaler.clone(),
        profile: StepProfile::new(config.profile_steps),
        ..Trainee::new(model)
    };
    let train_device = plan.device.clone().autodiff();
    let batcher = TrainBatcher {
        padding: plan.data.tokenizer.padding(),
        num_labels: plan.data.space.names.len(),
        halves: false,
    };
    let loader_valid = DataLoaderBuilder::new(batcher)
        .batch_size(1)
        .num_workers(1)
        .set_device(train_device)
        .build(EvalBatches::new(plan.data.valid.clone(), config.batch_size));
    let schedule = WarmupDecay::new(
        config.scheduler,
        config.lr,
        plan.warmup_steps(),
        progress.total_steps,
    );

    let higher = higher_is_better(&plan.key);
    let best_name = display_name(&plan.key);
    let keep = ComposedCheckpointingStrategy::builder()
        .add(KeepLastNCheckpoints::new(1))
        .add(KeepBest {
            name: best_name.clone(),
            higher,
            kept: None,
        })
        .build();
    let [model_part, optim_part, scheduler_part] =
        AtomicCheckpointer::set(&plan.output.join("checkpoint"));
    let lines = match &display {
        Display::Lines { lines, .. } => Some(lines.clone()),
        _ => None,
    };
    let mut training =
        SupervisedTraining::new(&plan.output, Arc::new(plan.stream.clone()), loader_valid)
            .metric_train_numeric(LossMetric::new())
            .metric_valid_numeric(LossMetric::new())
            .metric_train_numeric(LearningRateMetric::new())
            .metric_train(IterationSpeedMetric::new())
            .with_metric_logger(JsonlLogger::new(
                &plan.output,
                lines,
                Arc::new(Mutex::new(History::new())),
                progress.clone(),
                (trainee.grad_norm.clone(), trainee.scaler.clone()),
            ))
            .with_custom_checkpointers(model_part, optim_part, scheduler_part)
            .with_checkpointing_strategy(keep)
            .early_stopping(Patience {
                name: best_name,
                higher,
                patience: config.patience,
                min_delta: config.min_delta,
                progress: progress.clone(),
            })
            .with_interrupter(plan.stopper.interrupter.clone())
            .num_epochs(plan.evaluations())
            .summary();
    training = with_task_metrics(training, plan);
    if config.grad_accum > 1 {
        training = training.grads_accumulation(config.grad_accum);
    }
    training = match display {
        Display::Tui => training,
        Display::Lines { every, lines } => {
            training.renderer(Box::new(PlainRenderer::new(every, lines, progress.clone())))
        }
        Display::Quiet => training.renderer(Box::new(PlainRenderer::new(
            usize::MAX,
            Arc::new(|_: &str| {}),
            progress.clone(),
        ))),
    };
    if let Some(evaluation) = plan.resume_from {
        training = training.checkpoint(evaluation);
    }
    if plan.devices.len() > 1 {
        // Burn's data parallelism: one model copy per device, each on its shard of the
        // stream; the gradients are summed on the main device, which takes the step. (Burn's
        // `ddp` needs collective operations, which only its CUDA backend has.)
        let devices = plan.devices.iter().map(|d| d.clone().autodiff()).collect();
        let strategy = ExecutionStrategy::multi(devices, MultiDeviceOptim::OptimMainDevice);
        training = training.with_training_strategy(strategy.into());
    }

    let learner = Learner::new(trainee, adamw(config), schedule);
    let result = training.launch(learner);
    if let Some(error) = result.error {
        return Err(Error::Input(format!("training failed: {error}")));
    }
    if let Some(failure) = progress.failure() {
        return Err(Error::Input(failure));
    }
    let stopped = if result.interrupted.is_some() {
        Some(Stopped::AtOnce)
    } else if progress.stop_requested() {
        Some(Stopped::AfterCheckpoint {
            step: progress.steps(),
        })
    } else {
        None
    };
    Ok(Trained {
        trainee: result.model,
        stopped,
    })
}

/// The task's split-level metrics: accuracy on both splits for single-label tasks, the others
/// on validation.
fn with_task_metrics(
    mut training: SupervisedTraining<Trainee>,
    plan: &TrainPlan,
) -> SupervisedTraining<Trainee> {
    let (task, labels) = (plan.data.space.task, plan.data.space.names.len());
    let metric = |key| SplitMetric::new(key, task, labels, plan.config.threshold);
    if task == ProblemType::SingleLabel {
        // Split-level accuracy as a fraction (Burn's AccuracyMetric reports per-batch percent).
        training = training
            .metric_train_numeric(metric("accuracy"))
            .metric_valid_numeric(metric("accuracy"));
    }
    for key in task_metric_keys(task).iter().filter(|k| **k != "accuracy") {
        training = training.metric_valid_numeric(metric(key));
    }
    training
}
