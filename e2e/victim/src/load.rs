//! The load loop: open loop at a fixed rate (request i leaves at start + i/rate whatever
//! happened to the ones before), each request with a timeout, so a run always ends by
//! duration + timeout (or earlier, when told to stop: the requests sent are then awaited).
//! Each request goes on its own connection, or through a pool of kept-alive connections
//! (`pool`). It counts what came back by kind and, with a counter, compares what the app
//! recorded with what it answered, and reads each deleted pod's traffic tail (`tail`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hyper::{Method, Uri};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{self, Failure};
use crate::counter::CounterClient;
use crate::kinds::Kind;
use crate::pool::Pool;
use crate::tail;

pub struct Plan {
    pub url: Uri,
    /// Requests per second, > 0.
    pub rate: f64,
    pub duration: Duration,
    pub timeout: Duration,
    /// Reset before the run and read after it.
    pub counter: Option<CounterClient>,
    /// A pool of this many kept-alive connections; None: a new connection per request.
    pub keep_alive: Option<usize>,
    /// The run's name: its requests' idempotency keys are `RUN-N`, so that the counter
    /// counts this run apart from others at the same time.
    pub run: String,
    /// The pod watcher's deletion records (`tail`), read at the end for the tails.
    pub deletions: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub url: String,
    pub run: String,
    /// "new connections" or "keep-alive N".
    pub mode: String,
    pub rate: f64,
    pub duration_seconds: f64,
    pub timeout_seconds: f64,
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    pub non_2xx: u64,
    /// Refused, reset or closed before a whole answer.
    pub connection_errors: u64,
    pub timeouts: u64,
    /// Non-2xx answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Connection errors by kind ("connect: connection refused").
    pub errors: BTreeMap<String, u64>,
    /// Every request not answered 2xx, by kind.
    pub lost: BTreeMap<Kind, u64>,
    /// Requests sent a second time after a reused connection broke before any answer
    /// (keep-alive only), and how many of those were then answered 2xx.
    pub retries: u64,
    pub retries_ok: u64,
    /// Each pod deleted during the run: seconds from the start of its deletion to the
    /// last request of this run it received; and the largest.
    pub traffic_tails_seconds: BTreeMap<String, f64>,
    pub largest_tail_seconds: Option<f64>,
    /// Of the answered requests, in milliseconds.
    pub latency_ms: Latency,
    /// When the run started (Unix seconds), and when each request that was not answered
    /// 2xx left (seconds after the start, ascending): to line failures up with rollouts.
    pub started_unix_seconds: f64,
    pub failed_at_seconds: Vec<f64>,
    pub elapsed_seconds: f64,
    /// What the app recorded during the run (absent without a counter).
    pub counter: Option<u64>,
    /// counter - ok: above zero, work done whose answer was lost; below, answers for work
    /// never recorded.
    pub counter_minus_ok: Option<i64>,
    /// Every request answered 2xx and, with a counter, recorded exactly once.
    pub lossless: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

enum Outcome {
    Answered { status: u16, millis: f64 },
    Failed(Failure),
}

/// Rounded to the millisecond: enough to place a failure, and readable in the JSON.
fn millis_precision(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// How requests reach the URL.
enum Sender {
    Fresh(Uri),
    Pooled(Pool),
}

impl Sender {
    /// The outcome and whether the request was retried.
    async fn send(
        &self,
        key: &str,
        timeout: Duration,
    ) -> (Result<client::Response, Failure>, bool) {
        match self {
            Sender::Fresh(url) => (
                client::send_with(Method::POST, url, Some(key), timeout).await,
                false,
            ),
            Sender::Pooled(pool) => {
                let sent = pool.send(Method::POST, Some(key), timeout).await;
                (sent.result, sent.retried)
            }
        }
    }
}

/// Runs the plan; once `stop` completes no further request leaves.
pub async fn run(plan: Plan, stop: impl Future<Output = ()>) -> anyhow::Result<Summary> {
    // A bad URL is the caller's mistake, not a thousand connection errors.
    client::authority(&plan.url)?;
    if let Some(counter) = &plan.counter {
        counter
            .reset_run(&plan.run)
            .await
            .context("resetting the counter")?;
    }
    let (sender, mode) = match plan.keep_alive {
        Some(size) => (
            Sender::Pooled(Pool::new(&plan.url, size)?),
            format!("keep-alive {size}"),
        ),
        None => (
            Sender::Fresh(plan.url.clone()),
            "new connections".to_owned(),
        ),
    };
    let sender = Arc::new(sender);
    let total = (plan.rate * plan.duration.as_secs_f64()).round() as u64;
    let started_unix_seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let start = Instant::now();
    let mut requests = JoinSet::new();
    let mut sent = 0;
    tokio::pin!(stop);
    for i in 0..total {
        let offset = i as f64 / plan.rate;
        tokio::select! {
            () = tokio::time::sleep_until(start + Duration::from_secs_f64(offset)) => {}
            () = &mut stop => break,
        }
        sent += 1;
        let sender = sender.clone();
        let timeout = plan.timeout;
        let key = format!("{}-{i}", plan.run);
        requests.spawn(async move {
            let sent = Instant::now();
            let (result, retried) = sender.send(&key, timeout).await;
            let outcome = match result {
                Ok(response) => Outcome::Answered {
                    status: response.status.as_u16(),
                    millis: sent.elapsed().as_secs_f64() * 1000.0,
                },
                Err(failure) => Outcome::Failed(failure),
            };
            (offset, outcome, retried)
        });
    }
    let mut summary = Summary {
        url: plan.url.to_string(),
        run: plan.run.clone(),
        mode,
        rate: plan.rate,
        duration_seconds: plan.duration.as_secs_f64(),
        timeout_seconds: plan.timeout.as_secs_f64(),
        sent,
        ok: 0,
        non_2xx: 0,
        connection_errors: 0,
        timeouts: 0,
        statuses: BTreeMap::new(),
        errors: BTreeMap::new(),
        lost: BTreeMap::new(),
        retries: 0,
        retries_ok: 0,
        traffic_tails_seconds: BTreeMap::new(),
        largest_tail_seconds: None,
        latency_ms: Latency::default(),
        started_unix_seconds: millis_precision(started_unix_seconds),
        failed_at_seconds: Vec::new(),
        elapsed_seconds: 0.0,
        counter: None,
        counter_minus_ok: None,
        lossless: false,
    };
    let mut latencies = Vec::new();
    while let Some(joined) = requests.join_next().await {
        let (offset, outcome, retried) = joined.context("a request task failed")?;
        summary.retries += u64::from(retried);
        let kind = match outcome {
            Outcome::Answered { status, millis } => {
                latencies.push(millis);
                match Kind::of_status(status) {
                    None => {
                        summary.ok += 1;
                        summary.retries_ok += u64::from(retried);
                        continue;
                    }
                    Some(kind) => {
                        summary.non_2xx += 1;
                        *summary.statuses.entry(status).or_default() += 1;
                        kind
                    }
                }
            }
            Outcome::Failed(failure) => {
                let kind = Kind::of_failure(&failure);
                if matches!(failure, Failure::Timeout) {
                    summary.timeouts += 1;
                } else {
                    summary.connection_errors += 1;
                    *summary.errors.entry(failure.to_string()).or_default() += 1;
                }
                kind
            }
        };
        *summary.lost.entry(kind).or_default() += 1;
        summary.failed_at_seconds.push(millis_precision(offset));
    }
    summary.failed_at_seconds.sort_by(f64::total_cmp);
    summary.elapsed_seconds = start.elapsed().as_secs_f64();
    summary.latency_ms = latency(&mut latencies);
    if let Some(counter) = &plan.counter {
        let count = counter
            .read_run(&plan.run)
            .await
            .context("reading the counter")?
            .count;
        summary.counter = Some(count);
        // The count comes from another process: saturate rather than wrap.
        let difference = i128::from(count) - i128::from(summary.ok);
        summary.counter_minus_ok = Some(difference.clamp(i64::MIN.into(), i64::MAX.into()) as i64);
        if let Some(path) = &plan.deletions {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let deletions = tail::parse_deletions(&text)
                .with_context(|| format!("{} holds no deletion records", path.display()))?;
            let last = counter
                .last_requests(&plan.run)
                .await
                .context("reading the pods' last requests")?;
            summary.traffic_tails_seconds = tail::tails(&deletions, &last);
            summary.largest_tail_seconds = tail::largest(&summary.traffic_tails_seconds);
        }
    }
    summary.lossless = summary.ok == summary.sent && summary.counter_minus_ok.unwrap_or(0) == 0;
    Ok(summary)
}

/// Nearest-rank percentiles.
fn latency(millis: &mut [f64]) -> Latency {
    millis.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p * millis.len() as f64).ceil() as usize).saturating_sub(1);
        millis.get(i).copied().unwrap_or_default()
    };
    Latency {
        p50: rank(0.50),
        p99: rank(0.99),
        max: millis.last().copied().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn plan(url: String, rate: f64, duration: Duration, timeout: Duration) -> Plan {
        Plan {
            url: url.parse().unwrap(),
            rate,
            duration,
            timeout,
            counter: None,
            keep_alive: None,
            run: "test".to_owned(),
            deletions: None,
        }
    }

    fn go(plan: Plan) -> impl Future<Output = anyhow::Result<Summary>> {
        run(plan, std::future::pending())
    }

    /// A port where nothing listens.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_url_that_is_not_http_is_refused_before_sending() {
        let error = go(plan(
            "https://127.0.0.1/incr".to_owned(),
            10.0,
            Duration::from_secs(1),
            Duration::from_secs(1),
        ))
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "bad url: https://127.0.0.1/incr");
    }

    #[tokio::test]
    async fn refused_connections_are_counted_as_connection_errors() {
        let url = format!("http://127.0.0.1:{}/incr", closed_port());
        let summary = go(plan(
            url,
            50.0,
            Duration::from_millis(200),
            Duration::from_secs(2),
        ))
        .await
        .unwrap();
        assert_eq!(
            (
                summary.sent,
                summary.ok,
                summary.connection_errors,
                summary.timeouts
            ),
            (10, 0, 10, 0)
        );
        assert_eq!(
            summary.errors,
            BTreeMap::from([("connect: connection refused".to_owned(), 10)])
        );
        assert!(!summary.lossless);
    }

    /// Answers the k-th connection by k % 4: 200, 503, closes without an answer, or
    /// never answers. Returns its address and the number of connections accepted.
    async fn mixed_server() -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let seen = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let k = seen.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = [0u8; 1024];
                    let _ = socket.read(&mut head).await;
                    let answer: &[u8] = match k % 4 {
                        0 => b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                        1 => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                        2 => return, // dropped: closed before any answer
                        _ => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                    };
                    let _ = socket.write_all(answer).await;
                });
            }
        });
        (format!("http://{addr}/incr"), accepted)
    }

    #[tokio::test]
    async fn answers_errors_and_timeouts_are_told_apart() {
        let (url, _) = mixed_server().await;
        let summary = go(plan(
            url,
            40.0,
            Duration::from_millis(200),
            Duration::from_millis(500),
        ))
        .await
        .unwrap();
        assert_eq!(summary.sent, 8);
        assert_eq!(
            (
                summary.ok,
                summary.non_2xx,
                summary.connection_errors,
                summary.timeouts
            ),
            (2, 2, 2, 2)
        );
        assert_eq!(summary.statuses, BTreeMap::from([(503, 2)]));
        // Requests leave every 25 ms; the k-th connection answers by k % 4 (0 is 200).
        assert_eq!(summary.failed_at_seconds.len(), 6);
        assert!(summary.failed_at_seconds.is_sorted());
        assert_eq!(
            summary.errors,
            BTreeMap::from([(
                "exchange: connection closed before message completed".to_owned(),
                2
            )])
        );
    }

    #[tokio::test]
    async fn requests_leave_on_schedule_while_earlier_ones_hang() {
        let (url, accepted) = mixed_server().await;
        let started = Instant::now();
        // A closed loop would stall at the first hanging request (the 4th, at 0.15 s)
        // until its timeout (2.15 s); an open loop has sent all 20 by 0.95 s, and ends by
        // duration + timeout.
        let run = tokio::spawn(go(plan(
            url,
            20.0,
            Duration::from_secs(1),
            Duration::from_secs(2),
        )));
        while accepted.load(Ordering::SeqCst) < 20 {
            assert!(
                started.elapsed() < Duration::from_millis(1900),
                "not sent on schedule"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let summary = run.await.unwrap().unwrap();
        assert_eq!(summary.timeouts, 5);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_counter_is_reset_before_and_compared_after() {
        let counter_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let counter_url = format!("http://{}", counter_listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(counter_listener, crate::counter::router()).await });
        let counter = CounterClient::new(&counter_url, Duration::from_secs(2)).unwrap();
        // Left over from an earlier run: must not count in this one.
        counter.increment("earlier").await.unwrap();

        let app_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_url = format!("http://{}/incr", app_listener.local_addr().unwrap());
        let app = crate::app::App::new(
            counter.clone(),
            Duration::from_millis(100),
            "pod".to_owned(),
        );
        tokio::spawn(
            async move { axum::serve(app_listener, crate::app::router(Arc::new(app))).await },
        );

        let mut plan = plan(
            app_url,
            50.0,
            Duration::from_millis(400),
            Duration::from_secs(2),
        );
        plan.counter = Some(counter);
        let summary = go(plan).await.unwrap();
        assert_eq!(
            (summary.sent, summary.ok, summary.counter),
            (20, 20, Some(20))
        );
        assert_eq!(summary.counter_minus_ok, Some(0));
        assert!(summary.lossless);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut millis: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(
            latency(&mut millis),
            Latency {
                p50: 50.0,
                p99: 99.0,
                max: 100.0
            }
        );
        assert_eq!(latency(&mut []), Latency::default());
    }
}
