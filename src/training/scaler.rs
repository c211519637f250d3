//! Dynamic loss scaling for f16 mixed precision, as torch's `GradScaler`: the loss is
//! multiplied by a scale (2^16 at first) so that small f16 gradients do not underflow; the
//! gradients are divided by it again before clipping and the optimizer step. A step whose
//! gradients are not finite is skipped and halves the scale; 2,000 finite steps in a row
//! double it.

use std::sync::{Arc, Mutex};

/// The scale a run starts with (torch's `init_scale`).
pub const INITIAL_SCALE: f64 = 65536.0;
/// Finite steps in a row after which the scale doubles (torch's `growth_interval`).
pub const GROWTH_INTERVAL: usize = 2000;

/// Where the scaler stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScalerState {
    /// The factor the loss is multiplied by.
    pub scale: f64,
    /// Finite steps since the scale last changed.
    pub good_steps: usize,
    /// Steps skipped so far for non-finite gradients.
    pub skipped: usize,
}

/// A loss scaler shared by the training step and the logger.
#[derive(Clone, Debug)]
pub struct LossScaler(Arc<Mutex<ScalerState>>);

impl Default for LossScaler {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(ScalerState {
            scale: INITIAL_SCALE,
            good_steps: 0,
            skipped: 0,
        })))
    }
}

impl LossScaler {
    /// A scaler starting at `scale` instead of [`INITIAL_SCALE`].
    pub fn with_scale(scale: f64) -> Self {
        let scaler = Self::default();
        if let Ok(mut state) = scaler.0.lock() {
            state.scale = scale;
        }
        scaler
    }

    /// The current state.
    pub fn state(&self) -> ScalerState {
        match self.0.lock() {
            Ok(state) => *state,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// The factor the loss is multiplied by now.
    pub fn scale(&self) -> f64 {
        self.state().scale
    }

    /// Records an optimizer step whose (unscaled) gradients were `finite` or not, updates the
    /// scale, and returns whether the optimizer should step.
    pub fn update(&self, finite: bool) -> bool {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if finite {
            state.good_steps += 1;
            if state.good_steps == GROWTH_INTERVAL {
                state.scale *= 2.0;
                state.good_steps = 0;
            }
        } else {
            state.scale *= 0.5;
            state.good_steps = 0;
            state.skipped += 1;
        }
        finite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_and_halves_on_overflow_doubles_after_2000_finite_steps() {
        let scaler = LossScaler::default();
        assert_eq!(scaler.scale(), 65536.0);
        assert!(!scaler.update(false));
        assert!(!scaler.update(false));
        assert_eq!(scaler.state().scale, 16384.0);
        assert_eq!(scaler.state().skipped, 2);
        for _ in 0..1999 {
            assert!(scaler.update(true));
        }
        assert_eq!(scaler.scale(), 16384.0);
        assert!(scaler.update(true));
        assert_eq!(scaler.scale(), 32768.0);
        assert_eq!(scaler.state().good_steps, 0);
        // An overflow resets the count of good steps.
        for _ in 0..1500 {
            scaler.update(true);
        }
        scaler.update(false);
        for _ in 0..1999 {
            scaler.update(true);
        }
        assert_eq!(scaler.scale(), 16384.0);
        assert_eq!(scaler.state().skipped, 3);
    }
}
