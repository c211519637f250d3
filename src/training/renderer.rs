//! Readable progress lines for logs (CI, `nohup`, pipes, `--no-tui`): Burn's CLI renderer
//! shows nothing, this one hands the caller a line every N batches with the optimizer step,
//! epoch, loss, learning rate, speed and ETA.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};

use super::Lines;
use super::logger::{format_value, metric_key};
use crate::data::StreamState;

/// Hands `step S/T epoch E loss … lr … samples/s … eta …` to `lines` every `every` batches.
pub struct PlainRenderer {
    every: usize,
    lines: Lines,
    progress: Arc<StreamState>,
    names: HashMap<MetricId, String>,
    latest: BTreeMap<String, f64>,
    split: String,
    /// Training windows started, and batches done in the current one.
    windows: usize,
    done: usize,
    /// When training started in this process, with the steps and examples done then.
    started: Option<(Instant, usize, usize)>,
}

impl PlainRenderer {
    /// `progress` is the training stream's: steps, epochs and examples served.
    pub fn new(every: usize, lines: Lines, progress: Arc<StreamState>) -> Self {
        Self {
            every: every.max(1),
            lines,
            progress,
            names: HashMap::new(),
            latest: BTreeMap::new(),
            split: String::new(),
            windows: 0,
            done: 0,
            started: None,
        }
    }

    fn line(&self) -> String {
        let p = &self.progress;
        // Burn renders asynchronously: the stream may already be a batch ahead.
        let (position, steps) = p
            .within_window(self.windows.saturating_sub(1), self.done)
            .unwrap_or((p.position(), p.steps()));
        let examples = p.examples();
        let (elapsed, steps_done, examples_done) = self.started.map_or((0.0, 0, 0), |(t, s, e)| {
            (t.elapsed().as_secs_f64(), steps - s, examples - e)
        });
        let per_second = |n: usize| {
            if elapsed > 0.0 {
                n as f64 / elapsed
            } else {
                0.0
            }
        };
        let step_rate = per_second(steps_done);
        let eta = if step_rate > 0.0 {
            p.total_steps.saturating_sub(steps) as f64 / step_rate
        } else {
            0.0
        };
        let mut parts = vec![format!(
            "step {steps}/{} epoch {:.2}",
            p.total_steps,
            position as f64 / p.per_epoch.max(1) as f64
        )];
        for key in ["loss", "accuracy", "learning_rate"] {
            if let Some(v) = self.latest.get(key) {
                let label = if key == "learning_rate" { "lr" } else { key };
                parts.push(format!("{label} {}", format_value(*v)));
            }
        }
        parts.push(format!("samples/s {:.1}", per_second(examples_done)));
        parts.push(format!("eta {}", clock(eta)));
        parts.join("  ")
    }
}

/// `h:mm:ss`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

impl MetricsRendererTraining for PlainRenderer {
    fn update_train(&mut self, state: MetricState) {
        if let MetricState::Numeric(entry, Some(numeric)) = state
            && let Some(name) = self.names.get(&entry.metric_id)
        {
            self.latest.insert(metric_key(name), numeric.current());
        }
    }

    fn update_valid(&mut self, _state: MetricState) {}

    fn on_train_end(
        &mut self,
        _summary: Option<burn::train::LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for PlainRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}

    fn on_test_end(
        &mut self,
        _summary: Option<burn::train::LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl TrainingProgressLogger for PlainRenderer {
    fn start(
        &mut self,
        _total_epochs: usize,
        _starting_epoch: usize,
        _total_items: Option<usize>,
        _label: Option<&str>,
    ) {
    }

    fn update_epoch(&mut self, _epoch: usize) {}

    fn start_split(&mut self, split: &str, _total_items: usize) {
        self.split = split.to_string();
        self.done = 0;
        if split.to_lowercase().contains("train") {
            self.windows += 1;
        }
        let p = &self.progress;
        self.started
            .get_or_insert_with(|| (Instant::now(), p.steps(), p.examples()));
    }

    fn update_split(&mut self, items_processed: usize) {
        // With several devices every batch of a round reports the round's progress: one line.
        let repeated = items_processed == self.done;
        self.done = items_processed;
        let train = self.split.to_lowercase().contains("train") && !repeated;
        let window = self.windows.saturating_sub(1);
        if train
            && (items_processed.is_multiple_of(self.every)
                || self.progress.window_complete(window, items_processed))
        {
            (self.lines)(&self.line());
        }
    }

    fn end_split(&mut self) {}

    fn end(&mut self) {}

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for PlainRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, _name: &str, _total_items: usize) {}
    fn update_test_progress(&mut self, _items_processed: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for PlainRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id.clone(), definition.name.to_string());
    }
}
