//! The Prometheus registry of graceful, and the admin server that exposes it with the
//! health endpoints on a plain-HTTP port apart from the webhook's.
//!
//! Every metric lives here, so that a reader sees in one place what graceful counts;
//! the webhook (and later the reconciler) call the small recording methods.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rustls::sign::CertifiedKey;

use crate::recommend::{Recommendation, Setting};

use crate::runtime::health::{Answer, Health};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The results of a write made with a deadline. Each series exists at zero from the
/// start, so that alerts and panels over `rate()` have a value before the first write.
const WRITE_RESULTS: [&str; 3] = ["ok", "error", "timeout"];

fn with_write_results() -> Family<ResultLabels, Counter> {
    let family = Family::<ResultLabels, Counter>::default();
    for result in WRITE_RESULTS {
        drop(family.get_or_create(&ResultLabels { result }));
    }
    family
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    namespace: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SettingLabels {
    namespace: String,
    policy: String,
    setting: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabels {
    namespace: String,
    policy: String,
    kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn shutdown_histogram() -> Histogram {
    // 0.25 s to ~17 min.
    Histogram::new(exponential_buckets(0.25, 2.0, 13))
}

fn propagation_histogram() -> Histogram {
    // 25 ms to ~100 s: a local API answers in tens of milliseconds, a loaded one in seconds.
    Histogram::new(exponential_buckets(0.025, 2.0, 13))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    admissions: Family<OutcomeLabels, Counter>,
    fail_open: Family<ReasonLabels, Counter>,
    admission_seconds: Histogram,
    owner_fetches: Family<ResultLabels, Counter>,
    owner_cache_objects: Gauge,
    tls_reloads: Family<ResultLabels, Counter>,
    certificate_steps: Family<StepLabels, Counter>,
    shutdown_seconds: HistogramFamily<PolicyLabels>,
    propagation_seconds: HistogramFamily<PolicyLabels>,
    violations: Family<ViolationLabels, Counter>,
    status_writes: Family<ResultLabels, Counter>,
    status_write_seconds: Histogram,
    events: Family<ResultLabels, Counter>,
    events_dropped: Counter,
    tracked_pods: Gauge,
    certificate_expiry: Gauge,
    leader: Gauge,
    policy_settings: Family<SettingLabels, Gauge>,
    policy_recommendations: Family<SettingLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("graceful");
        let admissions = Family::default();
        registry.register(
            "admissions",
            "Admission requests answered, by outcome (patched, unchanged, audited, not_governed, skipped, fail_open, bad_request)",
            admissions.clone(),
        );
        let fail_open = Family::default();
        registry.register(
            "admission_fail_open",
            "Pods admitted unchanged because of an error inside graceful, by reason",
            fail_open.clone(),
        );
        // 50 µs to ~0.8 s.
        let admission_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 15));
        registry.register(
            "admission_duration_seconds",
            "Time from reading an admission request to its answer",
            admission_seconds.clone(),
        );
        let owner_fetches = Family::default();
        registry.register(
            "owner_fetches",
            "Owners read from the apiserver because the watch cache did not have them yet, by result",
            owner_fetches.clone(),
        );
        let owner_cache_objects = Gauge::default();
        registry.register(
            "owner_cache_objects",
            "Workloads in the owner cache (ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs, CronJobs)",
            owner_cache_objects.clone(),
        );
        let tls_reloads = Family::default();
        registry.register(
            "tls_reloads",
            "Loads of the serving certificate (from its files or graceful's Secret), by result",
            tls_reloads.clone(),
        );
        let certificate_steps = Family::default();
        registry.register(
            "certificate_steps",
            "Steps of graceful's own certificate rotation written to its Secret (created, next_published, switched, previous_retired)",
            certificate_steps.clone(),
        );
        let shutdown_seconds: HistogramFamily<PolicyLabels> =
            Family::new_with_constructor(shutdown_histogram);
        registry.register(
            "shutdown_duration_seconds",
            "Shutdown duration of governed containers after the preStop sleep, by policy",
            shutdown_seconds.clone(),
        );
        let propagation_seconds: HistogramFamily<PolicyLabels> =
            Family::new_with_constructor(propagation_histogram);
        registry.register(
            "endpoint_propagation_seconds",
            "Time from the start of a governed pod's deletion until the last EndpointSlice stopped routing to it, by policy",
            propagation_seconds.clone(),
        );
        let violations = Family::default();
        registry.register(
            "violations",
            "Shutdowns over budget, OOM kills and restarts of governed containers, by policy and kind",
            violations.clone(),
        );
        let status_writes = with_write_results();
        registry.register(
            "status_writes",
            "GracefulPolicy status writes, by result (ok, error, timeout)",
            status_writes.clone(),
        );
        // 5 ms to ~20 s.
        let status_write_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        registry.register(
            "status_write_duration_seconds",
            "Time one GracefulPolicy status write took",
            status_write_seconds.clone(),
        );
        let events = with_write_results();
        registry.register(
            "events",
            "Events published for violations, by result (ok, error, timeout)",
            events.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Events not published because their queue was full",
            events_dropped.clone(),
        );
        let tracked_pods = Gauge::default();
        registry.register(
            "tracked_pods",
            "Governed pods the reconciler follows",
            tracked_pods.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the serving certificate in service expires (notAfter), in seconds since the epoch",
            certificate_expiry.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and writes policy status, else 0",
            leader.clone(),
        );
        let policy_settings = Family::default();
        registry.register(
            "policy_setting_seconds",
            "A policy's spec.drain setting that graceful has a recommendation for, by setting",
            policy_settings.clone(),
        );
        let policy_recommendations = Family::default();
        registry.register(
            "policy_recommended_seconds",
            "The value graceful recommends for that setting, from the shutdowns and endpoint propagation it measured",
            policy_recommendations.clone(),
        );
        Self {
            certificate_expiry,
            leader,
            policy_settings,
            policy_recommendations,
            shutdown_seconds,
            propagation_seconds,
            violations,
            status_writes,
            status_write_seconds,
            events,
            events_dropped,
            tracked_pods,
            registry,
            admissions,
            fail_open,
            admission_seconds,
            owner_fetches,
            owner_cache_objects,
            tls_reloads,
            certificate_steps,
        }
    }

    pub fn admission(&self, outcome: &'static str, took: Duration) {
        self.admissions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.admission_seconds.observe(took.as_secs_f64());
    }

    pub fn fail_open(&self, reason: &'static str) {
        self.fail_open.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn owner_fetch(&self, result: &'static str) {
        self.owner_fetches
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn owner_cache_objects(&self, count: usize) {
        self.owner_cache_objects
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn tls_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.tls_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn certificate_step(&self, step: &'static str) {
        self.certificate_steps
            .get_or_create(&StepLabels { step })
            .inc();
    }

    pub fn shutdown_observed(&self, namespace: &str, policy: &str, seconds: f64) {
        let labels = PolicyLabels {
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
        };
        self.shutdown_seconds
            .get_or_create(&labels)
            .observe(seconds);
    }

    pub fn propagation_observed(&self, namespace: &str, policy: &str, seconds: f64) {
        let labels = PolicyLabels {
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
        };
        self.propagation_seconds
            .get_or_create(&labels)
            .observe(seconds);
    }

    pub fn violation(&self, namespace: &str, policy: &str, kind: &str) {
        let labels = ViolationLabels {
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
            kind: kind.to_owned(),
        };
        self.violations.get_or_create(&labels).inc();
    }

    pub fn status_written(&self, result: &'static str, took: Duration) {
        self.status_writes
            .get_or_create(&ResultLabels { result })
            .inc();
        self.status_write_seconds.observe(took.as_secs_f64());
    }

    pub fn event_published(&self, result: &'static str) {
        self.events.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub fn tracked_pods(&self, count: usize) {
        self.tracked_pods
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// `key` goes into service: its expiry is the one to watch now.
    pub fn certificate_in_service(&self, key: &CertifiedKey) {
        if let Some(not_after) = crate::tls::not_after(key) {
            self.certificate_expiry.set(not_after);
        }
    }

    /// Follows this replica's leadership for as long as it runs.
    pub async fn follow_leadership(
        self: Arc<Self>,
        mut leader: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            self.leader.set(i64::from(*leader.borrow_and_update()));
            if leader.changed().await.is_err() {
                return;
            }
        }
    }

    /// A policy the reconciler reports on: its series exist from now on, at zero until
    /// something happens (so that `increase()` sees the first violation), and its
    /// settings stand beside graceful's recommendations for them.
    pub fn policy_reported(
        &self,
        namespace: &str,
        policy: &str,
        violation_kinds: &[&str],
        found: &[Recommendation],
    ) {
        let labels = PolicyLabels {
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
        };
        drop(self.shutdown_seconds.get_or_create(&labels));
        drop(self.propagation_seconds.get_or_create(&labels));
        for kind in violation_kinds {
            drop(self.violations.get_or_create(&ViolationLabels {
                namespace: namespace.to_owned(),
                policy: policy.to_owned(),
                kind: (*kind).to_owned(),
            }));
        }
        for recommendation in found {
            let labels = SettingLabels {
                namespace: namespace.to_owned(),
                policy: policy.to_owned(),
                setting: recommendation.setting.field(),
            };
            self.policy_settings
                .get_or_create(&labels)
                .set(recommendation.current);
            self.policy_recommendations
                .get_or_create(&labels)
                .set(recommendation.recommended);
        }
    }

    /// A policy is gone: its series go too, so that no alert fires for it.
    pub fn policy_removed(&self, namespace: &str, policy: &str) {
        for setting in Setting::ALL {
            let labels = SettingLabels {
                namespace: namespace.to_owned(),
                policy: policy.to_owned(),
                setting: setting.field(),
            };
            self.policy_settings.remove(&labels);
            self.policy_recommendations.remove(&labels);
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// `/healthz` (the process answers), `/readyz` (every component of `health` is ready,
/// and graceful is not shutting down) and `/metrics`.
pub fn admin_router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Admin { metrics, health })
}

/// 503 names what is not ready.
async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    match admin.health.answer() {
        Answer::Ready => (StatusCode::OK, "ok\n".to_owned()),
        Answer::NotReady(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", reasons.join("\n")),
        ),
    }
}

async fn metrics_text(State(admin): State<Admin>) -> impl IntoResponse {
    match admin.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_text(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let metrics = Arc::new(Metrics::new());
        metrics.admission("patched", Duration::from_micros(80));
        metrics.fail_open("panic");
        let health = Arc::new(Health::default());
        let watch = health.register("Pod watch");
        let router = admin_router(metrics, health);
        assert_eq!(get_text(router.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_text(router.clone(), "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready\nPod watch: not ready yet\n".to_owned()
            )
        );
        watch.ready();
        assert_eq!(get_text(router.clone(), "/readyz").await.0, StatusCode::OK);
        let (status, text) = get_text(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains("graceful_admissions_total{outcome=\"patched\"} 1"),
            "{text}"
        );
        assert!(text.contains("graceful_admission_fail_open_total{reason=\"panic\"} 1"));
        assert!(text.contains("graceful_admission_duration_seconds_count 1"));
        // Write results exist before any write, so rate() over them is defined.
        for result in WRITE_RESULTS {
            for family in ["graceful_status_writes_total", "graceful_events_total"] {
                let series = format!("{family}{{result=\"{result}\"}} 0\n");
                assert!(text.contains(&series), "{series} in {text}");
            }
        }
    }

    #[tokio::test]
    async fn exposes_certificate_expiry_leadership_and_recommendations() {
        use crate::recommend::{Recommendation, Setting};
        let metrics = Arc::new(Metrics::new());

        let mut params = rcgen::CertificateParams::new(vec!["graceful".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2030, 1, 2);
        let signing = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&signing).unwrap();
        let key =
            crate::tls::certified_key(cert.pem().as_bytes(), signing.serialize_pem().as_bytes())
                .unwrap();
        metrics.certificate_in_service(&key);

        let (leader, follows) = tokio::sync::watch::channel(false);
        let following = tokio::spawn(metrics.clone().follow_leadership(follows));
        leader.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while !metrics.encode().unwrap().contains("graceful_leader 1\n") {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the gauge follows the Lease");
        drop(leader);
        following.await.unwrap();

        let budget = Recommendation {
            setting: Setting::ShutdownBudgetSeconds,
            current: 20,
            recommended: 36,
        };
        metrics.policy_reported("shop", "web", &["OOMKilled"], &[budget]);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"graceful_violations_total{namespace="shop",policy="web",kind="OOMKilled"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"graceful_shutdown_duration_seconds_count{namespace="shop",policy="web"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains("graceful_certificate_expiry_timestamp_seconds 1893542400\n"),
            "{text}"
        );
        let labels = r#"{namespace="shop",policy="web",setting="shutdownBudgetSeconds"}"#;
        assert!(
            text.contains(&format!("graceful_policy_setting_seconds{labels} 20\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("graceful_policy_recommended_seconds{labels} 36\n")),
            "{text}"
        );

        metrics.policy_removed("shop", "web");
        assert!(!metrics.encode().unwrap().contains(labels));
    }
}
