//! The victim: what a naive but well-meaning app does. Each request does some work, has
//! the counter record it, and only then answers 2xx; on SIGTERM the server stops accepting
//! and finishes what it has (see `serve`). It knows nothing of Kubernetes: no preStop, no
//! readiness trick.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::counter::CounterClient;

/// A counter call that failed is tried again this many times in all; the id makes that safe.
const ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(100);

pub struct App {
    counter: CounterClient,
    work: Duration,
    /// Unique per process, so ids never repeat across pods or container restarts.
    instance: String,
    requests: AtomicU64,
}

impl App {
    pub fn new(counter: CounterClient, work: Duration) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Self {
            counter,
            work,
            instance: format!("{started:x}-{}", std::process::id()),
            requests: AtomicU64::new(0),
        }
    }
}

/// `POST /incr` (the work), `GET /healthz` (the readiness probe).
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/incr", post(incr))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(app)
}

async fn incr(State(app): State<Arc<App>>) -> Response {
    let id = format!(
        "{}-{}",
        app.instance,
        app.requests.fetch_add(1, Ordering::Relaxed)
    );
    tokio::time::sleep(app.work).await;
    let mut attempt = 1;
    loop {
        match app.counter.increment(&id).await {
            Ok(count) => return count.into_response(),
            Err(e) if attempt >= ATTEMPTS => {
                eprintln!("request {id}: counter failed {ATTEMPTS} times, last: {e:#}");
                return (StatusCode::SERVICE_UNAVAILABLE, format!("counter: {e:#}\n"))
                    .into_response();
            }
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
}
