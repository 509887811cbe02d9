//! The counter service: the article's Redis INCR, counting each increment exactly once.
//! An increment names itself with an id, so a caller that retries after a lost answer
//! cannot count twice, and concurrent increments never lose one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::{Method, Uri};
use serde::{Deserialize, Serialize};

use crate::client;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Distinct increments since the last reset.
    pub count: u64,
    /// Increments that repeated an id already counted (a caller's retries).
    pub duplicates: u64,
}

/// JSON by hand: axum's `json` feature would change axum's build for graceful too.
impl IntoResponse for Count {
    fn into_response(self) -> Response {
        match serde_json::to_string(&self) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

/// What one run's ids (`RUN-N`) have recorded.
#[derive(Default)]
struct Run {
    ids: HashSet<String>,
    duplicates: u64,
    /// The last request each pod received for this run (Unix milliseconds), as the pod
    /// reported it with the increment.
    last_request: BTreeMap<String, u64>,
}

/// Runs by name: a load's ids carry its run's name, so loads at once count apart.
#[derive(Default)]
struct Ledger {
    runs: HashMap<String, Run>,
}

impl Ledger {
    fn count(&self, run: Option<&str>) -> Count {
        let mut total = Count {
            count: 0,
            duplicates: 0,
        };
        for (_, r) in self
            .runs
            .iter()
            .filter(|(name, _)| run.is_none_or(|n| n == *name))
        {
            total.count += r.ids.len() as u64;
            total.duplicates += r.duplicates;
        }
        total
    }
}

/// The run an id belongs to: what comes before its last `-` (`ingress-keep-alive-17` is
/// run `ingress-keep-alive`).
pub fn run_of(id: &str) -> &str {
    id.rsplit_once('-').map_or("", |(run, _)| run)
}

/// `key=value&...` without escapes: the counter's callers send names and numbers only.
fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

type Shared = Arc<Mutex<Ledger>>;

/// `POST /increments/{id}[?pod=NAME&at=UNIX_MS]` (201 when new, 200 when already
/// counted), `GET /count[?run=RUN]`, `POST /reset[?run=RUN]`, `GET /tails?run=RUN` (each
/// pod's last request of that run), `GET /healthz`.
pub fn router() -> Router {
    Router::new()
        .route("/increments/{id}", post(increment))
        .route("/count", get(count))
        .route("/reset", post(reset))
        .route("/tails", get(tails))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Shared::default())
}

fn ledger(shared: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    // Nothing panics while holding the lock, and the ledger stays consistent if it did.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn increment(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    uri: Uri,
) -> (StatusCode, Count) {
    let pod = query_value(uri.query(), "pod");
    let at = query_value(uri.query(), "at").and_then(|at| at.parse::<u64>().ok());
    let mut ledger = ledger(&shared);
    let run = ledger.runs.entry(run_of(&id).to_owned()).or_default();
    if let (Some(pod), Some(at)) = (pod, at) {
        let last = run.last_request.entry(pod.to_owned()).or_default();
        *last = (*last).max(at);
    }
    let status = if run.ids.insert(id) {
        StatusCode::CREATED
    } else {
        run.duplicates += 1;
        StatusCode::OK
    };
    (status, ledger.count(None))
}

async fn count(State(shared): State<Shared>, uri: Uri) -> Count {
    ledger(&shared).count(query_value(uri.query(), "run"))
}

async fn reset(State(shared): State<Shared>, uri: Uri) -> Count {
    let mut ledger = ledger(&shared);
    match query_value(uri.query(), "run") {
        Some(run) => {
            ledger.runs.remove(run);
        }
        None => *ledger = Ledger::default(),
    }
    ledger.count(None)
}

async fn tails(State(shared): State<Shared>, uri: Uri) -> Response {
    let ledger = ledger(&shared);
    let last = query_value(uri.query(), "run")
        .and_then(|run| ledger.runs.get(run))
        .map(|run| run.last_request.clone())
        .unwrap_or_default();
    match serde_json::to_string(&last) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The counter as its callers see it, at `base` (`http://host:port`).
#[derive(Debug, Clone)]
pub struct CounterClient {
    base: String,
    timeout: Duration,
}

impl CounterClient {
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        let url: Uri = base
            .parse()
            .with_context(|| format!("counter url {base:?}"))?;
        client::authority(&url)?;
        Ok(Self { base, timeout })
    }

    pub async fn increment(&self, id: &str) -> anyhow::Result<Count> {
        self.call(Method::POST, &format!("/increments/{id}")).await
    }

    /// An increment that also tells which pod received the request, and when (Unix ms).
    pub async fn increment_from(&self, id: &str, pod: &str, at_ms: u64) -> anyhow::Result<Count> {
        self.call(
            Method::POST,
            &format!("/increments/{id}?pod={pod}&at={at_ms}"),
        )
        .await
    }

    pub async fn read(&self) -> anyhow::Result<Count> {
        self.call(Method::GET, "/count").await
    }

    pub async fn read_run(&self, run: &str) -> anyhow::Result<Count> {
        self.call(Method::GET, &format!("/count?run={run}")).await
    }

    pub async fn reset(&self) -> anyhow::Result<Count> {
        self.call(Method::POST, "/reset").await
    }

    pub async fn reset_run(&self, run: &str) -> anyhow::Result<Count> {
        self.call(Method::POST, &format!("/reset?run={run}")).await
    }

    /// Each pod's last request of `run`, Unix milliseconds.
    pub async fn last_requests(&self, run: &str) -> anyhow::Result<BTreeMap<String, u64>> {
        let body = self.body(Method::GET, &format!("/tails?run={run}")).await?;
        serde_json::from_slice(&body).context("the counter's tails")
    }

    async fn call(&self, method: Method, path: &str) -> anyhow::Result<Count> {
        let body = self.body(method, path).await?;
        serde_json::from_slice(&body).with_context(|| format!("counter's answer to {path}"))
    }

    async fn body(&self, method: Method, path: &str) -> anyhow::Result<bytes::Bytes> {
        let url: Uri = format!("{}{path}", self.base)
            .parse()
            .with_context(|| format!("counter path {path:?}"))?;
        let response = client::send(method, &url, self.timeout).await?;
        if !response.status.is_success() {
            bail!("counter answered {} to {url}", response.status);
        }
        Ok(response.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start() -> CounterClient {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router()).await });
        CounterClient::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap()
    }

    #[tokio::test]
    async fn concurrent_increments_are_each_counted_once() {
        let counter = start().await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let counter = counter.clone();
                // Every id is sent twice, concurrently: a caller retrying after a lost answer.
                tokio::spawn(async move {
                    let id = format!("req-{}", i / 2);
                    counter.increment(&id).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(
            counter.read().await.unwrap(),
            Count {
                count: 100,
                duplicates: 100
            }
        );
    }

    #[tokio::test]
    async fn increment_answers_created_once_then_ok() {
        let counter = start().await;
        let url: Uri = format!("{}/increments/a", counter.base).parse().unwrap();
        let first = client::send(Method::POST, &url, Duration::from_secs(5))
            .await
            .unwrap();
        let again = client::send(Method::POST, &url, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            (first.status, again.status),
            (StatusCode::CREATED, StatusCode::OK)
        );
    }

    #[tokio::test]
    async fn reset_forgets_ids_and_duplicates() {
        let counter = start().await;
        counter.increment("a").await.unwrap();
        counter.increment("a").await.unwrap();
        assert_eq!(
            counter.reset().await.unwrap(),
            Count {
                count: 0,
                duplicates: 0
            }
        );
        // After a reset an id counts again: a new run may reuse a pod's ids.
        assert_eq!(counter.increment("a").await.unwrap().count, 1);
    }

    #[tokio::test]
    async fn runs_count_apart_and_keep_each_pods_last_request() {
        let counter = start().await;
        counter.increment_from("a-1", "pod-x", 1000).await.unwrap();
        counter.increment_from("a-2", "pod-x", 900).await.unwrap();
        counter.increment_from("a-3", "pod-y", 1200).await.unwrap();
        counter.increment_from("b-1", "pod-x", 5000).await.unwrap();
        assert_eq!(counter.read_run("a").await.unwrap().count, 3);
        assert_eq!(counter.read().await.unwrap().count, 4);
        assert_eq!(
            counter.last_requests("a").await.unwrap(),
            BTreeMap::from([("pod-x".to_owned(), 1000), ("pod-y".to_owned(), 1200)])
        );
        counter.reset_run("a").await.unwrap();
        assert_eq!(counter.read_run("a").await.unwrap().count, 0);
        assert_eq!(counter.read_run("b").await.unwrap().count, 1);
        assert!(counter.last_requests("a").await.unwrap().is_empty());
    }

    #[test]
    fn an_id_names_its_run_before_its_last_dash() {
        assert_eq!(run_of("ingress-keep-alive-17"), "ingress-keep-alive");
        assert_eq!(run_of("17"), "");
    }

    #[test]
    fn a_counter_url_is_http_with_a_host() {
        for bad in ["counter:8080", "https://counter:8080", "/count", "http://"] {
            assert!(
                CounterClient::new(bad, Duration::from_secs(1)).is_err(),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_counter_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let counter =
            CounterClient::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
        let error = counter.read().await.unwrap_err();
        assert_eq!(error.to_string(), "connect: connection refused");
    }
}
