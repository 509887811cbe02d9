//! The counter service: the article's Redis INCR, counting each increment exactly once.
//! An increment names itself with an id, so a caller that retries after a lost answer
//! cannot count twice, and concurrent increments never lose one.

use std::collections::HashSet;
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

#[derive(Default)]
struct Ledger {
    ids: HashSet<String>,
    duplicates: u64,
}

impl Ledger {
    fn count(&self) -> Count {
        Count {
            count: self.ids.len() as u64,
            duplicates: self.duplicates,
        }
    }
}

type Shared = Arc<Mutex<Ledger>>;

/// `POST /increments/{id}` (201 when new, 200 when already counted), `GET /count`,
/// `POST /reset`, `GET /healthz`.
pub fn router() -> Router {
    Router::new()
        .route("/increments/{id}", post(increment))
        .route("/count", get(count))
        .route("/reset", post(reset))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Shared::default())
}

fn ledger(shared: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    // Nothing panics while holding the lock, and the ledger stays consistent if it did.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn increment(State(shared): State<Shared>, Path(id): Path<String>) -> (StatusCode, Count) {
    let mut ledger = ledger(&shared);
    let status = if ledger.ids.insert(id) {
        StatusCode::CREATED
    } else {
        ledger.duplicates += 1;
        StatusCode::OK
    };
    (status, ledger.count())
}

async fn count(State(shared): State<Shared>) -> Count {
    ledger(&shared).count()
}

async fn reset(State(shared): State<Shared>) -> Count {
    let mut ledger = ledger(&shared);
    *ledger = Ledger::default();
    ledger.count()
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
        // Fail on a bad address now rather than on every request.
        let url: Uri = base
            .parse()
            .with_context(|| format!("counter url {base:?}"))?;
        client::authority(&url)?;
        Ok(Self { base, timeout })
    }

    pub async fn increment(&self, id: &str) -> anyhow::Result<Count> {
        self.call(Method::POST, &format!("/increments/{id}")).await
    }

    pub async fn read(&self) -> anyhow::Result<Count> {
        self.call(Method::GET, "/count").await
    }

    pub async fn reset(&self) -> anyhow::Result<Count> {
        self.call(Method::POST, "/reset").await
    }

    async fn call(&self, method: Method, path: &str) -> anyhow::Result<Count> {
        let url: Uri = format!("{}{path}", self.base)
            .parse()
            .with_context(|| format!("counter path {path:?}"))?;
        let response = client::send(method, &url, self.timeout).await?;
        if !response.status.is_success() {
            bail!("counter answered {} to {url}", response.status);
        }
        serde_json::from_slice(&response.body).with_context(|| format!("counter's answer to {url}"))
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
