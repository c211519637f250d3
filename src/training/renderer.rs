//! Readable progress lines for logs (CI, `nohup`, pipes, `--no-tui`): Burn's CLI renderer
//! prints nothing, this one prints a line every N steps with loss, learning rate, speed and ETA.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};

use super::logger::{format_value, metric_key};

/// Prints `epoch E/N step S/T loss … lr … samples/s … eta …` every `every` steps.
pub struct PlainRenderer {
    every: usize,
    batch_size: usize,
    names: HashMap<MetricId, String>,
    latest: BTreeMap<String, f64>,
    epoch: usize,
    epochs: usize,
    split: String,
    total: usize,
    done: usize,
    started: Option<Instant>,
}

impl PlainRenderer {
    /// `batch_size` converts steps to samples for the speed column.
    pub fn new(every: usize, batch_size: usize) -> Self {
        Self {
            every: every.max(1),
            batch_size,
            names: HashMap::new(),
            latest: BTreeMap::new(),
            epoch: 0,
            epochs: 0,
            split: String::new(),
            total: 0,
            done: 0,
            started: None,
        }
    }

    fn line(&self) -> String {
        let elapsed = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let rate = if elapsed > 0.0 {
            self.done as f64 / elapsed
        } else {
            0.0
        };
        let eta = if rate > 0.0 {
            (self.total.saturating_sub(self.done)) as f64 / rate
        } else {
            0.0
        };
        let mut parts = vec![format!(
            "epoch {}/{} step {}/{}",
            self.epoch, self.epochs, self.done, self.total
        )];
        for key in ["loss", "accuracy", "learning_rate"] {
            if let Some(v) = self.latest.get(key) {
                let label = if key == "learning_rate" { "lr" } else { key };
                parts.push(format!("{label} {}", format_value(*v)));
            }
        }
        parts.push(format!("samples/s {:.1}", rate * self.batch_size as f64));
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
        total_epochs: usize,
        starting_epoch: usize,
        _total_items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.epochs = total_epochs;
        self.epoch = starting_epoch;
    }

    fn update_epoch(&mut self, epoch: usize) {
        self.epoch = epoch;
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        self.split = split.to_string();
        self.total = total_items;
        self.done = 0;
        self.started = Some(Instant::now());
    }

    fn update_split(&mut self, items_processed: usize) {
        self.done = items_processed;
        let train = self.split.to_lowercase().contains("train");
        if train && (items_processed % self.every == 0 || items_processed == self.total) {
            println!("{}", self.line());
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
