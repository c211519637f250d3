//! Learning-rate schedules equal to transformers' `get_cosine_schedule_with_warmup` and
//! `get_linear_schedule_with_warmup`, step for step.

use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::{LearningRate, RecordState, StateSink, StateSource};
use burn::store::burn_pack::Scalar;
use burn::tensor::Device;

use crate::config::ScheduleKind;

/// Linear warmup from 0 over `warmup_steps`, then cosine (half a cycle) or linear decay to 0
/// at `total_steps`. Steps count optimizer steps; `step()` returns the rate of the next one.
#[derive(Clone, Debug)]
pub struct WarmupDecay {
    /// Cosine or linear decay after warmup.
    pub kind: ScheduleKind,
    /// The rate at the end of warmup.
    pub peak_lr: f64,
    /// Optimizer steps of linear warmup from 0.
    pub warmup_steps: usize,
    /// Optimizer steps of the whole run; the rate reaches 0 there.
    pub total_steps: usize,
    current: usize,
}

/// The resumable part of [`WarmupDecay`]: how many steps were taken.
#[derive(Clone, Debug)]
struct WarmupDecayState {
    current: usize,
}

impl RecordState for WarmupDecayState {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_scalar(prefix, "current", Scalar::from(self.current));
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, _device: &Device) -> Option<Self> {
        let current = usize::try_from(src.take_scalar(prefix, "current")?).ok()?;
        Some(Self { current })
    }
}

impl WarmupDecay {
    /// A schedule that has taken no step yet.
    pub fn new(kind: ScheduleKind, peak_lr: f64, warmup_steps: usize, total_steps: usize) -> Self {
        Self {
            kind,
            peak_lr,
            warmup_steps,
            total_steps,
            current: 0,
        }
    }

    /// The learning rate at optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let (step, warmup, total) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        let factor = if step < warmup {
            step / warmup.max(1.0)
        } else {
            match self.kind {
                ScheduleKind::Cosine => {
                    let progress = (step - warmup) / (total - warmup).max(1.0);
                    (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
                }
                ScheduleKind::Linear => ((total - step) / (total - warmup).max(1.0)).max(0.0),
            }
        };
        self.peak_lr * factor
    }
}

impl LrScheduler for WarmupDecay {
    fn step(&mut self) -> LearningRate {
        let lr = self.lr_at(self.current);
        self.current += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::from_state(&WarmupDecayState {
            current: self.current,
        })
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(state) = record.into_state::<WarmupDecayState>() {
            self.current = state.current;
        }
    }
}
