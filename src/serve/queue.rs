//! Dynamic batching: requests wait in a bounded queue; one worker thread, the only user of the
//! model (so the backend never runs on two threads at once), takes as many requests as fit in
//! `max_batch_tokens` (inputs × longest input), sorts their inputs by length, runs them through
//! the model in batches of that size and answers each request.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::api::LabelScore;
use super::stats::Stats;
use crate::data::Encoded;
use crate::inference::{Prediction, Predictor};
use crate::model::ProblemType;

/// The answer of one request: per input, its labels and scores, most probable first.
pub type Answer = Result<Vec<Vec<LabelScore>>, String>;

/// One request's inputs, tokenized, and where its answer goes.
pub struct Job {
    /// The request's inputs, tokenized (unpadded).
    pub inputs: Vec<Encoded>,
    /// Answer logits instead of probabilities.
    pub raw_scores: bool,
    /// Where the worker sends the answer.
    pub reply: oneshot::Sender<Answer>,
}

impl Job {
    fn longest(&self) -> usize {
        self.inputs
            .iter()
            .map(|e| e.input_ids.len())
            .max()
            .unwrap_or(0)
    }
}

/// Starts the worker; it ends once every sender is dropped and the queue is empty.
pub fn spawn_worker(
    predictor: Predictor,
    mut queue: mpsc::Receiver<Job>,
    limits: BatchLimits,
    stats: Arc<Stats>,
) -> JoinHandle<()> {
    let max_batch_tokens = limits.max_batch_tokens;
    std::thread::spawn(move || {
        let mut waiting: Option<Job> = None;
        loop {
            let Some(first) = waiting.take().or_else(|| queue.blocking_recv()) else {
                break;
            };
            let (mut longest, mut count) = (first.longest(), first.inputs.len());
            let mut jobs = vec![first];
            while let Ok(job) = queue.try_recv() {
                let (l, c) = (longest.max(job.longest()), count + job.inputs.len());
                if l * c > max_batch_tokens {
                    waiting = Some(job);
                    break;
                }
                (longest, count) = (l, c);
                jobs.push(job);
            }
            stats.queue_depth.set(queue.len() as i64);
            run(&predictor, jobs, limits, &stats);
        }
    })
}

/// How much one model batch may hold.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Padded tokens (inputs × longest input), also the most the worker takes from the queue
    /// at once.
    pub max_batch_tokens: usize,
    /// Inputs: the queue's requests are sorted by length and cut into batches of at most this
    /// many, so that short inputs are not padded to the longest of a large batch.
    pub max_batch_size: usize,
}

/// Runs the inputs of `jobs` sorted by length in batches within `limits`, and answers every job.
fn run(predictor: &Predictor, jobs: Vec<Job>, limits: BatchLimits, stats: &Stats) {
    let mut order: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| (0..job.inputs.len()).map(move |i| (j, i)))
        .collect();
    order.sort_by_key(|&(j, i)| jobs[j].inputs[i].input_ids.len());
    let mut logits: Vec<Vec<Vec<f32>>> = jobs
        .iter()
        .map(|j| vec![Vec::new(); j.inputs.len()])
        .collect();
    let mut start = 0;
    while start < order.len() {
        // Sorted by length: the last input of a batch is its longest.
        let mut end = start + 1;
        while end < order.len() && end - start < limits.max_batch_size {
            let (j, i) = order[end];
            if (end + 1 - start) * jobs[j].inputs[i].input_ids.len() > limits.max_batch_tokens {
                break;
            }
            end += 1;
        }
        let batch: Vec<&Encoded> = order[start..end]
            .iter()
            .map(|&(j, i)| &jobs[j].inputs[i])
            .collect();
        stats.batch_size.observe(batch.len() as f64);
        match predictor.forward_rows(&batch) {
            Ok(rows) => {
                for (&(j, i), row) in order[start..end].iter().zip(rows) {
                    logits[j][i] = row;
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.to_string()));
                }
                return;
            }
        }
        start = end;
    }
    let problem = predictor.problem();
    for (job, rows) in jobs.into_iter().zip(logits) {
        let answer = rows
            .iter()
            .map(|row| label_scores(predictor, problem, row, job.raw_scores))
            .collect();
        let _ = job.reply.send(Ok(answer));
    }
}

/// Every label with its probability (or logit with `raw`), most probable first; a regression
/// model's one output under its label.
fn label_scores(
    predictor: &Predictor,
    problem: ProblemType,
    logits: &[f32],
    raw: bool,
) -> Vec<LabelScore> {
    let labels = &predictor.config.id2label;
    let scores: Vec<(String, f32)> = match (raw, predictor.to_prediction(problem, logits)) {
        (true, _) | (_, Prediction::Regression { .. }) => {
            labels.iter().cloned().zip(logits.iter().copied()).collect()
        }
        (false, Prediction::SingleLabel { scores, .. } | Prediction::MultiLabel { scores, .. }) => {
            scores
        }
    };
    let mut scores: Vec<LabelScore> = scores
        .into_iter()
        .map(|(label, score)| LabelScore { label, score })
        .collect();
    scores.sort_by(|a, b| b.score.total_cmp(&a.score));
    scores
}
