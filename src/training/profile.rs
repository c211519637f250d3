//! Where a training step's time goes (`profile_steps`): the forward pass, the backward pass
//! and the optimizer step of a window of optimizer steps, each phase ended by a device sync so
//! that a GPU's queued work is billed to the phase that queued it; the rest of each step (data,
//! metrics, logging) is the step's wall time less its phases. The syncs slow a GPU's steps,
//! so a profiled run's samples/s is not the plain run's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::tensor::Device;

/// Optimizer steps left out at the start of a run before the window opens (allocations,
/// kernel compilation and tuning).
pub const WARM_UP_STEPS: usize = 5;

/// What a phase of a step is.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// The forward pass and the loss.
    Forward,
    /// The backward pass.
    Backward,
    /// Forward and backward of two half batches at once (`training::halves`).
    Halves,
    /// Gradient norm, clipping and the optimizer's update.
    Optimizer,
}

/// The step timer a [`super::Trainee`] carries; off unless made with [`StepProfile::new`].
/// Clones share one window.
#[derive(Clone, Debug, Default)]
pub struct StepProfile(Option<Arc<Mutex<Window>>>);

#[derive(Debug)]
struct Window {
    /// Optimizer steps still to leave out before timing.
    skip: usize,
    /// Optimizer steps still to time.
    left: usize,
    /// Time in each [`Phase`], in its order, over the timed steps.
    phases: [Duration; 4],
    /// Timed optimizer steps, and their whole wall time.
    steps: usize,
    total: Duration,
    /// Where the last optimizer step ended.
    last_end: Option<Instant>,
}

/// Mean milliseconds per optimizer step over the timed window.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTimes {
    /// Optimizer steps timed.
    pub steps: usize,
    /// The first of them (1-based, counted in this process).
    pub first_step: usize,
    /// The forward pass and the loss.
    pub forward: f64,
    /// The backward pass.
    pub backward: f64,
    /// Forward and backward of both half batches, run side by side (not split into the two).
    pub halves: f64,
    /// Gradient norm, clipping and the optimizer's update.
    pub optimizer: f64,
    /// The step's wall time less its phases: loading the batch, metrics, logging.
    pub rest: f64,
    /// Wall time of a whole step.
    pub total: f64,
}

impl StepProfile {
    /// Times `steps` optimizer steps after the first [`WARM_UP_STEPS`].
    pub fn new(steps: usize) -> Self {
        Self((steps > 0).then(|| {
            Arc::new(Mutex::new(Window {
                skip: WARM_UP_STEPS,
                left: steps,
                phases: [Duration::ZERO; 4],
                steps: 0,
                total: Duration::ZERO,
                last_end: None,
            }))
        }))
    }

    /// Whether steps are timed at all.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Runs `work`; inside the window, adds its time to `phase`, from a sync of `device`
    /// before it to one after it.
    pub fn time<R>(&self, phase: Phase, device: &Device, work: impl FnOnce() -> R) -> R {
        if !self.timing() {
            return work();
        }
        // A failed sync only makes the figure less exact; the step itself goes on.
        let _ = device.sync();
        let start = Instant::now();
        let result = work();
        let _ = device.sync();
        let elapsed = start.elapsed();
        if let Some(mut window) = self.window() {
            window.phases[phase as usize] += elapsed;
        }
        result
    }

    /// Marks the end of an optimizer step (after its [`Phase::Optimizer`]).
    pub fn end_step(&self) {
        let Some(mut window) = self.window() else {
            return;
        };
        let now = Instant::now();
        if window.skip > 0 {
            window.skip -= 1;
        } else if window.left > 0 {
            window.left -= 1;
            window.steps += 1;
            if let Some(last) = window.last_end {
                window.total += now - last;
            }
        }
        window.last_end = Some(now);
    }

    /// The timed window's means, once a step was timed.
    pub fn times(&self) -> Option<StepTimes> {
        let window = self.window()?;
        (window.steps > 0).then(|| {
            let ms = |d: Duration| d.as_secs_f64() * 1e3 / window.steps as f64;
            let [forward, backward, halves, optimizer] = window.phases.map(ms);
            let total = ms(window.total);
            StepTimes {
                steps: window.steps,
                first_step: WARM_UP_STEPS + 1,
                forward,
                backward,
                halves,
                optimizer,
                rest: (total - forward - backward - halves - optimizer).max(0.0),
                total,
            }
        })
    }

    /// Whether the phase now running falls in the window: the warm-up is over and steps are
    /// left to time.
    fn timing(&self) -> bool {
        self.window().is_some_and(|w| w.skip == 0 && w.left > 0)
    }

    fn window(&self) -> Option<std::sync::MutexGuard<'_, Window>> {
        self.0.as_ref()?.lock().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warm-up steps are left out, then exactly the asked number timed; the phases of a
    /// step land in their own field and the rest is what they leave of the step.
    #[test]
    fn times_the_window_after_the_warm_up_only() {
        let device = Device::default();
        let profile = StepProfile::new(2);
        let sleep = |ms| std::thread::sleep(Duration::from_millis(ms));
        for step in 0..WARM_UP_STEPS + 4 {
            // Warm-up steps are slow: timing one of them would add 60 ms or more to each
            // field's mean, past the slack allowed below for a loaded machine's late wake-ups.
            let slow = if step < WARM_UP_STEPS { 120 } else { 0 };
            profile.time(Phase::Forward, &device, || sleep(5 + slow));
            profile.time(Phase::Backward, &device, || sleep(10 + slow));
            profile.time(Phase::Optimizer, &device, || sleep(2 + slow));
            sleep(3 + slow);
            profile.end_step();
        }
        let times = profile.times().expect("two steps timed");
        assert_eq!((times.steps, times.first_step), (2, WARM_UP_STEPS + 1));
        let near = |got: f64, want: f64| got >= want && got < want + 50.0;
        assert!(near(times.forward, 5.0), "{times:?}");
        assert!(near(times.backward, 10.0), "{times:?}");
        assert!(near(times.optimizer, 2.0), "{times:?}");
        assert_eq!(times.halves, 0.0);
        assert!(near(times.total, 20.0), "{times:?}");
        assert!(near(times.rest, 3.0), "{times:?}");
        let phases = times.forward + times.backward + times.optimizer;
        assert!(
            (times.total - phases - times.rest).abs() < 1e-9,
            "{times:?}"
        );
        assert!(StepProfile::default().times().is_none());
        assert!(StepProfile::new(0).times().is_none());
    }
}
