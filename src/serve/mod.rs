//! `burnbert serve`: the classifier behind HTTP, with text-embeddings-inference's routes and
//! shapes (`POST /predict`, `GET /health`, `GET /info`, `GET /metrics`) and dynamic batching
//! (see the `queue` module). SIGTERM or Ctrl-C stops accepting, answers what is queued, and returns.

mod api;
mod queue;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use self::api::{ApiError, parse_predict};
use self::queue::{BatchLimits, Job, spawn_worker};
use self::stats::Stats;
use crate::data::TextTokenizer;
use crate::error::{Error, Result};
use crate::inference::Predictor;

/// How the server listens and batches.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to bind.
    pub host: String,
    /// 0 picks a free port (the address is handed to `listening`).
    pub port: u16,
    /// Most padded tokens (inputs × longest input) in one model batch, and the most the
    /// worker takes from the queue at once.
    pub max_batch_tokens: usize,
    /// Most inputs in one model batch.
    pub max_batch_size: usize,
    /// Requests that may wait for the model; more are answered 429.
    pub max_concurrent_requests: usize,
}

/// What `GET /info` says about the model.
#[derive(Clone, Debug, Serialize)]
pub struct Info {
    /// The model as given on the command line (directory or hub id).
    pub model_id: String,
    /// Label names in output order.
    pub labels: Vec<String>,
    /// transformers' `problem_type` string (`single_label_classification`, ...).
    pub problem_type: String,
    /// Longest input in tokens; longer ones are truncated or refused.
    pub max_input_length: usize,
    /// The backend the model runs on.
    pub backend: String,
    /// See [`ServeOptions::max_batch_tokens`].
    pub max_batch_tokens: usize,
    /// See [`ServeOptions::max_batch_size`].
    pub max_batch_size: usize,
    /// See [`ServeOptions::max_concurrent_requests`].
    pub max_concurrent_requests: usize,
    /// burnbert's version.
    pub version: String,
}

struct App {
    queue: mpsc::Sender<Job>,
    tokenizer: TextTokenizer,
    info: Info,
    stats: Arc<Stats>,
}

/// Serves `predictor` until SIGTERM or Ctrl-C; `listening` receives the bound address first.
pub fn serve(
    predictor: Predictor,
    model_id: &str,
    backend: &str,
    options: &ServeOptions,
    listening: impl FnOnce(SocketAddr),
) -> Result<()> {
    if options.max_batch_tokens == 0
        || options.max_batch_size == 0
        || options.max_concurrent_requests == 0
    {
        return Err(Error::Input(
            "--max-batch-tokens, --max-batch-size and --max-concurrent-requests must be at least 1"
                .into(),
        ));
    }
    let info = Info {
        model_id: model_id.to_string(),
        labels: predictor.config.id2label.clone(),
        problem_type: predictor.problem().as_str().to_string(),
        max_input_length: predictor.tokenizer.max_len(),
        backend: backend.to_string(),
        max_batch_tokens: options.max_batch_tokens,
        max_batch_size: options.max_batch_size,
        max_concurrent_requests: options.max_concurrent_requests,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // One thread parses HTTP and tokenizes (light work); the cores go to the model worker
    // and its backend's kernels (measured: 290 rather than 276 texts/s at 64 clients on 2 cores).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Input(format!("cannot start the server's runtime: {e}")))?;
    let address = format!("{}:{}", options.host, options.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&address))
        .map_err(|e| Error::Input(format!("cannot listen on {address}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Input(format!("{address}: {e}")))?;

    let stats = Arc::new(Stats::new());
    let (sender, receiver) = mpsc::channel(options.max_concurrent_requests);
    let tokenizer = predictor.tokenizer.clone();
    let limits = BatchLimits {
        max_batch_tokens: options.max_batch_tokens,
        max_batch_size: options.max_batch_size,
    };
    let worker = spawn_worker(predictor, receiver, limits, stats.clone());
    let app = Arc::new(App {
        queue: sender,
        tokenizer,
        info,
        stats,
    });
    let router = Router::new()
        .route("/predict", post(predict))
        .route("/health", get(|| async { "ok" }))
        .route("/info", get(info_route))
        .route("/metrics", get(metrics))
        .with_state(app);
    listening(bound);
    let served = runtime.block_on(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });
    // The router (and with it the queue's sender) is gone: the worker answers what is queued
    // and ends.
    let _ = worker.join();
    served.map_err(|e| Error::Input(format!("server on {bound}: {e}")))
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

async fn predict(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let started = Instant::now();
    let response = match answer(&app, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    app.stats
        .answered(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// Validates and tokenizes a request, queues it and waits for the model's answer.
async fn answer(app: &App, body: &[u8]) -> std::result::Result<Response, ApiError> {
    let request = parse_predict(body)?;
    let max = app.tokenizer.max_len();
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        let (encoded, truncated) = app
            .tokenizer
            .encode_checked(&input.text, input.text_pair.as_deref())
            .map_err(|e| ApiError::validation(e.to_string()))?;
        if truncated && !request.truncate {
            return Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                kind: "Validation",
                message: format!(
                    "input {i} is longer than the model's {max} tokens; send \"truncate\": true to cut it"
                ),
            });
        }
        inputs.push(encoded);
    }
    let (reply, answer) = oneshot::channel();
    let job = Job {
        inputs,
        raw_scores: request.raw_scores,
        reply,
    };
    app.queue.try_send(job).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "Overloaded",
            message: format!(
                "the model is busy: {} requests are waiting (--max-concurrent-requests)",
                app.info.max_concurrent_requests
            ),
        },
        mpsc::error::TrySendError::Closed(_) => unavailable("the server is shutting down".into()),
    })?;
    let mut scores = answer
        .await
        .map_err(|_| unavailable("the model worker stopped".into()))?
        .map_err(unavailable)?;
    Ok(if request.single {
        Json(scores.swap_remove(0)).into_response()
    } else {
        Json(scores).into_response()
    })
}

fn unavailable(message: String) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "Unhealthy",
        message,
    }
}

async fn info_route(State(app): State<Arc<App>>) -> Json<Info> {
    Json(app.info.clone())
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.stats.render(),
    )
}
