//! The victim: what a naive but well-meaning app does. Each request does some work, has
//! the counter record it, and only then answers 2xx; on SIGTERM the server stops accepting
//! and finishes what it has (see `serve`). It knows nothing of Kubernetes: no preStop, no
//! readiness trick.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::counter::CounterClient;

/// A counter call that failed is tried again this many times in all; the id makes that safe.
const ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// The client's name for a request; sent again with a retry, it is counted once.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub struct App {
    counter: CounterClient,
    work: Duration,
    /// This pod's name (downward API), told to the counter with each request.
    pod: String,
    /// Unique per process, so ids never repeat across pods or container restarts.
    instance: String,
    requests: AtomicU64,
}

impl App {
    pub fn new(counter: CounterClient, work: Duration, pod: String) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Self {
            counter,
            work,
            pod,
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

/// A request's id: the client's idempotency key when it sent one (made of letters,
/// digits, `-` and `.`, so that it fits in a path), else one unique to this process.
fn request_id(app: &App, headers: &HeaderMap) -> String {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
        .filter(|key| {
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        });
    match key {
        Some(key) => key.to_owned(),
        None => format!(
            "{}-{}",
            app.instance,
            app.requests.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

fn unix_millis() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

async fn incr(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let received = unix_millis();
    let id = request_id(&app, &headers);
    tokio::time::sleep(app.work).await;
    let mut attempt = 1;
    loop {
        match app.counter.increment_from(&id, &app.pod, received).await {
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
