//! What `/metrics` reports, in Prometheus' text format: requests by status, their latency, the
//! size of each model batch and the queue depth.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The server's metrics.
pub struct Stats {
    registry: Registry,
    /// Answered requests by HTTP status.
    pub requests: Family<Vec<(String, String)>, Counter>,
    /// Seconds from a request's arrival to its answer.
    pub latency: Histogram,
    /// Inputs per model forward pass.
    pub batch_size: Histogram,
    /// Requests waiting when the worker took its last batch.
    pub queue_depth: Gauge,
}

impl Stats {
    /// Empty metrics, registered under the `burnbert` prefix.
    pub fn new() -> Self {
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let queue_depth = Gauge::default();
        let mut registry = Registry::with_prefix("burnbert");
        registry.register(
            "requests",
            "Answered /predict requests by status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a /predict request's arrival to its answer",
            latency.clone(),
        );
        registry.register(
            "batch_size",
            "Inputs per model forward pass",
            batch_size.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for the model",
            queue_depth.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            batch_size,
            queue_depth,
        }
    }

    /// Counts an answered request.
    pub fn answered(&self, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![("status".to_string(), status.to_string())])
            .inc();
        self.latency.observe(seconds);
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}
