//! One optimisation step: forward, the task's loss, backward, global-norm gradient clipping
//! (on the host folded into AdamW's pass: `adamw::with_grad_factor`).

use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use burn::train::metric::{Adaptor, ItemLazy, LossInput};
use burn::train::{InferenceStep, TrainOutput, TrainStep};

use super::adamw::with_grad_factor;
use super::grads::{clip_factor, global_norm, scale_grads};
use super::halves;
use super::profile::{Phase, StepProfile};
use super::scaler::LossScaler;
use crate::data::{TargetBatch, TrainBatch};
use crate::model::SequenceClassifier;

/// The classifier plus what training needs to know about the loss.
#[derive(Module, Debug)]
pub struct Trainee {
    /// The classifier being trained.
    pub model: SequenceClassifier,
    /// Global L2 norm the gradients are clipped to (`0` disables clipping).
    #[module(skip)]
    pub max_grad_norm: f64,
    /// Per-class loss weights for single-label tasks.
    #[module(skip)]
    pub class_weights: Option<Vec<f32>>,
    /// The global gradient norm of the last optimizer step (before clipping).
    #[module(skip)]
    pub grad_norm: GradNorm,
    /// Dynamic loss scaling (f16 mixed precision).
    #[module(skip)]
    pub scaler: Option<LossScaler>,
    /// Times the phases of some steps when asked (`profile_steps`).
    #[module(skip)]
    pub profile: StepProfile,
    /// Whether AdamW steps every parameter at once ([`crate::backend::batched_torch_adamw`]):
    /// by default where that pays, tch on a GPU.
    #[module(skip)]
    pub batched_adamw: bool,
}

/// The global L2 norm of the last optimizer step's gradients, before clipping (Trainer's
/// `grad_norm`), kept on the device until it is read.
#[derive(Clone, Debug, Default)]
pub struct GradNorm(Arc<Mutex<Option<Tensor<1>>>>);

impl GradNorm {
    fn set(&self, norm: Tensor<1>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(norm);
        }
    }

    /// The last step's norm, if a step was taken.
    pub fn get(&self) -> Option<f64> {
        let norm = self.0.lock().ok()?.clone()?;
        norm.try_into_scalar::<f32>().ok().map(f64::from)
    }
}

/// What a step produces for the metrics: the unscaled loss, the logits and the targets.
pub struct StepOutput {
    /// `[1]`
    pub loss: Tensor<1>,
    /// `[batch, num_labels]`
    pub logits: Tensor<2>,
    /// The batch's targets.
    pub targets: TargetBatch,
}

impl Trainee {
    /// `model` with no clipping and no class weights (what evaluation needs).
    pub fn new(model: SequenceClassifier) -> Self {
        let device = model.devices().into_iter().next().unwrap_or_default();
        Self {
            batched_adamw: crate::backend::batches_torch_adamw(&device),
            model,
            max_grad_norm: 0.0,
            class_weights: None,
            grad_norm: GradNorm::default(),
            scaler: None,
            profile: StepProfile::default(),
        }
    }

    /// Forward pass and loss (unscaled) for one batch.
    pub fn forward(&self, batch: TrainBatch) -> StepOutput {
        let inputs = batch.inputs;
        let logits = self.model.logits(
            inputs.input_ids,
            inputs.token_type_ids,
            inputs.attention_mask,
        );
        let device = logits.device();
        let loss = match &batch.targets {
            TargetBatch::Class(targets) => {
                let mut config = CrossEntropyLossConfig::new();
                config.weights = self.class_weights.clone();
                config
                    .init(&device)
                    .forward(logits.clone(), targets.clone())
            }
            TargetBatch::Multi(targets) => BinaryCrossEntropyLossConfig::new()
                .with_logits(true)
                .init(&device)
                .forward(logits.clone(), targets.clone().int()),
            TargetBatch::Value(targets) => {
                let [batch] = targets.dims();
                MseLoss::new().forward(
                    logits.clone().reshape([batch]),
                    targets.clone(),
                    Reduction::Mean,
                )
            }
        };
        StepOutput {
            loss,
            logits,
            targets: batch.targets,
        }
    }
}

impl TrainStep for Trainee {
    type Input = TrainBatch;
    type Output = StepOutput;

    /// Burn sums the gradients of accumulated batches; each batch's loss carries the scale of
    /// its group, so a step follows the mean loss of the batches it holds.
    fn step(&self, batch: TrainBatch) -> TrainOutput<StepOutput> {
        let scale = batch.loss_scale * self.scaler.as_ref().map_or(1.0, LossScaler::scale);
        let (profile, device) = (&self.profile, batch.inputs.input_ids.device());
        if let Some(halves) = batch.halves {
            return profile.time(Phase::Halves, &device, || {
                halves::step(self, *halves, batch.targets, scale)
            });
        }
        let output = profile.time(Phase::Forward, &device, || self.forward(batch));
        let loss = output.loss.clone() * scale;
        let grads = profile.time(Phase::Backward, &device, || loss.backward());
        TrainOutput::new(self, grads, output)
    }

    fn optimize(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: GradientsParams,
    ) -> Self {
        if !self.profile.is_on() {
            return self.update(optim, lr, grads);
        }
        let profile = self.profile.clone();
        let device = self.model.devices().into_iter().next().unwrap_or_default();
        let trainee = profile.time(Phase::Optimizer, &device, || self.update(optim, lr, grads));
        profile.end_step();
        trainee
    }
}

impl Trainee {
    /// The optimizer step of [`TrainStep::optimize`]: gradient norm, unscaling and clipping,
    /// the optimizer's update.
    fn update(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        mut grads: GradientsParams,
    ) -> Self {
        let Some(norm) = global_norm(&self, &mut grads) else {
            return self.apply(optim, lr, grads, None);
        };
        // Under loss scaling the gradients are `scale` times too large: unscale, and skip the
        // step when they overflowed.
        let unscale = match &self.scaler {
            Some(scaler) => {
                let unscale = 1.0 / scaler.scale();
                let finite = norm
                    .clone()
                    .try_into_scalar::<f32>()
                    .is_ok_and(|n| n.is_finite());
                if !scaler.update(finite) {
                    return self;
                }
                unscale
            }
            None => 1.0,
        };
        let norm = norm.mul_scalar(unscale);
        self.grad_norm.set(norm.clone());
        let factor = if self.max_grad_norm > 0.0 {
            Some(clip_factor(norm, self.max_grad_norm).mul_scalar(unscale))
        } else if unscale != 1.0 {
            Some(norm.ones_like().mul_scalar(unscale))
        } else {
            None
        };
        self.apply(optim, lr, grads, factor)
    }

    /// The optimizer's update with every gradient times `factor` (`[1]`): as one batched step
    /// where `batched_adamw` says, folded into AdamW's pass where the factor can be read on the host for
    /// free, by scaling the gradients first elsewhere.
    fn apply(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: GradientsParams,
        factor: Option<Tensor<1>>,
    ) -> Self {
        if self.batched_adamw && factor.as_ref().is_none_or(crate::backend::on_tch_f32) {
            return crate::backend::batched_torch_adamw(factor, || optim.step(lr, self, grads));
        }
        let Some(factor) = factor else {
            return optim.step(lr, self, grads);
        };
        if crate::backend::cheap_host_access(&factor.device()) {
            // Read on the host for free: AdamW scales each gradient as it reads it.
            let factor = factor.into_scalar::<f32>();
            return with_grad_factor(factor, || optim.step(lr, self, grads));
        }
        let grads = scale_grads(&self, grads, factor);
        optim.step(lr, self, grads)
    }
}

impl InferenceStep for Trainee {
    type Input = TrainBatch;
    type Output = StepOutput;

    fn step(&self, batch: TrainBatch) -> StepOutput {
        self.forward(batch)
    }
}

impl ItemLazy for StepOutput {
    fn sync(self) -> Result<Self, burn::tensor::ExecutionError> {
        self.loss.device().flush()?;
        Ok(Self {
            loss: self.loss.without_autodiff(),
            logits: self.logits.without_autodiff(),
            targets: match self.targets {
                TargetBatch::Class(t) => TargetBatch::Class(t.without_autodiff()),
                TargetBatch::Multi(t) => TargetBatch::Multi(t.without_autodiff()),
                TargetBatch::Value(t) => TargetBatch::Value(t.without_autodiff()),
            },
        })
    }
}

impl Adaptor<LossInput> for StepOutput {
    /// The batch mean repeated once per example: Burn's loss metric weights each batch by the
    /// length of this tensor, so the epoch value is the mean over examples (as `eval` reports).
    fn adapt(&self) -> LossInput {
        let [batch, _] = self.logits.dims();
        LossInput::new(self.loss.clone().expand([batch]))
    }
}
