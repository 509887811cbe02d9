//! `graceful run`: the admission webhook over HTTPS, and health and metrics over plain
//! HTTP on a port of their own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use kube::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use tracing_subscriber::EnvFilter;

use crate::api::GracefulPolicy;
use crate::lease::{self, LeaseConfig};
use crate::metrics::{Metrics, admin_router};
use crate::mutate::Capabilities;
use crate::reconcile::{EventQueue, FIELD_MANAGER, ReconcileConfig, Reconciler, publish_events};
use crate::runtime::health::Health;
use crate::runtime::tasks::Tasks;
use crate::runtime::watch::{Index, drive};
use crate::tls::managed::{self, CertConfig, Managed};
use crate::tls::{CertFiles, Serving};
use crate::webhook::watch::Caches;
use crate::webhook::{Webhook, router};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// graceful's own namespace: where its certificate Secret and Lease live.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,

    #[command(flatten, next_help_heading = "Serving")]
    serve: ServeArgs,

    #[command(flatten, next_help_heading = "Certificates")]
    tls: TlsArgs,

    #[command(flatten, next_help_heading = "Reconciler")]
    reconcile: ReconcileArgs,

    #[command(flatten, next_help_heading = "Logs")]
    log: LogArgs,
}

/// Where graceful listens, and how it stops.
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Where the webhook listens (HTTPS).
    #[arg(long, env = "GRACEFUL_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    webhook_addr: SocketAddr,

    /// Where /healthz, /readyz and /metrics listen (plain HTTP).
    #[arg(long, env = "GRACEFUL_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    admin_addr: SocketAddr,

    /// After SIGTERM, how long admissions are still answered (with /readyz failing)
    /// before the listener closes; keep it under the grace period minus the preStop.
    #[arg(long, env = "GRACEFUL_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    shutdown_delay: Duration,
}

/// The serving certificate: from files, or graceful's own CA.
#[derive(clap::Args, Debug)]
struct TlsArgs {
    /// A serving certificate chain (PEM) managed elsewhere (cert-manager, say), reloaded
    /// when it changes. Without it graceful runs its own CA (--tls-secret).
    #[arg(
        long,
        env = "GRACEFUL_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "tls_key_file"
    )]
    tls_cert_file: Option<PathBuf>,

    /// The private key of --tls-cert-file (PEM).
    #[arg(
        long,
        env = "GRACEFUL_TLS_KEY_FILE",
        value_name = "FILE",
        requires = "tls_cert_file"
    )]
    tls_key_file: Option<PathBuf>,

    /// The Secret in graceful's namespace that holds the chain every replica serves.
    #[arg(
        long,
        env = "GRACEFUL_TLS_SECRET",
        default_value = "graceful-webhook-tls"
    )]
    tls_secret: String,

    /// The MutatingWebhookConfiguration whose caBundle graceful keeps current.
    #[arg(long, env = "GRACEFUL_WEBHOOK_CONFIG_NAME", default_value = "graceful")]
    webhook_config_name: String,

    /// The Service in front of graceful: the serving certificate is for its DNS names.
    #[arg(long, env = "GRACEFUL_WEBHOOK_SERVICE", default_value = "graceful")]
    webhook_service: String,

    /// More names or IP addresses for the serving certificate (a webhook `url`'s host).
    #[arg(
        long,
        env = "GRACEFUL_TLS_SAN",
        value_name = "NAME",
        value_delimiter = ','
    )]
    tls_san: Vec<String>,

    /// How long graceful's certificates are valid; renewed at two thirds of it.
    #[arg(long, env = "GRACEFUL_CERT_VALIDITY", default_value = "365d", value_parser = parse_validity)]
    cert_validity: Duration,
}

/// The status writer: who writes, and over which window.
#[derive(clap::Args, Debug)]
struct ReconcileArgs {
    /// The namespace of the Lease that picks the one replica writing policy status;
    /// graceful's own namespace by default.
    #[arg(long, env = "GRACEFUL_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,

    /// The name of that Lease.
    #[arg(long, env = "GRACEFUL_LEASE_NAME", default_value = LeaseConfig::DEFAULT_NAME)]
    lease_name: String,

    /// Violations are counted, and conditions stay False after one, over this window.
    #[arg(long, env = "GRACEFUL_VIOLATION_WINDOW_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(i64).range(60..))]
    violation_window_seconds: i64,
}

#[derive(clap::Args, Debug)]
struct LogArgs {
    /// Log lines as text or as JSON objects.
    #[arg(long, env = "GRACEFUL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log level or filter (`debug`, `info,graceful=debug`); RUST_LOG when absent, else info.
    #[arg(long, env = "GRACEFUL_LOG_LEVEL")]
    log_level: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// How long the server-version probe at start may take before the default applies.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long requests in flight get to finish once the listener closes.
const DRAIN: Duration = Duration::from_secs(10);
/// How long releasing the Lease may take at exit.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging(args.log.log_format, args.log.log_level.as_deref())?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(args))
}

fn init_logging(format: LogFormat, level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).context("--log-level")?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    Ok(())
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // kube's client uses rustls too; one process-wide provider keeps it off aws-lc.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Args {
        namespace,
        serve,
        tls: tls_args,
        reconcile: reconcile_args,
        log: _,
    } = args;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let caps = capabilities(&client).await;
    let mut tasks = Tasks::default();

    let identity = lease::identity();
    let (leader_tx, leader) = tokio::sync::watch::channel(false);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let lease = LeaseConfig {
        name: reconcile_args.lease_name,
        ..LeaseConfig::new(
            reconcile_args
                .lease_namespace
                .unwrap_or_else(|| namespace.clone()),
            identity.clone(),
        )
    };
    // The lease ends when told to stop: it is joined at exit, and ending before that
    // is a failure like any other task's.
    let mut lease = tokio::spawn(lease::run(client.clone(), lease, leader_tx, stop));
    tasks.spawn("the leadership metric", {
        let (metrics, leader) = (metrics.clone(), leader.clone());
        async move {
            metrics.follow_leadership(leader).await;
            Ok(())
        }
    });

    let config = ReconcileConfig {
        window_seconds: reconcile_args.violation_window_seconds,
        ..ReconcileConfig::default()
    };
    let (events, queue) = EventQueue::new(metrics.clone());
    let reconciler = Reconciler::new(config, metrics.clone(), events, leader);
    let caches = Arc::new(Caches::new(Some(client.clone()), metrics.clone()));

    // Each kind is watched once. GracefulPolicies feed both the webhook's cache and
    // the reconciler; the owners feed the webhook's; the pods the reconciler's.
    let policies = watcher::watcher(
        Api::<GracefulPolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let policy_indexes: [Arc<dyn Index<GracefulPolicy>>; 2] = [caches.clone(), reconciler.clone()];
    let component = health.register("GracefulPolicy watch");
    tasks.spawn("the GracefulPolicy watch", async move {
        Err(drive(policies, &policy_indexes, &component).await.into())
    });
    for (kind, watch) in caches.owner_watches(&client, &health) {
        tasks.spawn(format!("the {} watch", kind.name()), async move {
            Err(watch.await.into())
        });
    }
    let services = caches.service_watch(&client, &health);
    tasks.spawn(
        "the Service watch",
        async move { Err(services.await.into()) },
    );
    let component = health.register("Pod watch");
    tasks.spawn("the Pod watch", {
        let (reconciler, client) = (reconciler.clone(), client.clone());
        async move { Err(reconciler.watch_pods(client, component).await.into()) }
    });
    let component = health.register("EndpointSlice watch");
    tasks.spawn("the EndpointSlice watch", {
        let (reconciler, client) = (reconciler.clone(), client.clone());
        async move {
            Err(reconciler
                .watch_endpoint_slices(client, component)
                .await
                .into())
        }
    });
    tasks.spawn("the status writer", {
        let (reconciler, client) = (reconciler.clone(), client.clone());
        async move {
            reconciler.write_statuses(client).await;
            Ok(())
        }
    });
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(identity),
        },
    );
    tasks.spawn("the Event publisher", {
        let metrics = metrics.clone();
        async move {
            publish_events(queue, recorder, metrics).await;
            Ok(())
        }
    });

    let serving = Arc::new(Serving::default());
    let component = health.register("serving certificate");
    tasks.spawn("the certificate loader", {
        let serving = serving.clone();
        async move {
            serving.until_loaded().await;
            component.ready();
            std::future::pending().await
        }
    });
    match (tls_args.tls_cert_file, tls_args.tls_key_file) {
        (Some(cert), Some(key)) => {
            let files = CertFiles::new(cert, key, serving.clone(), metrics.clone());
            tasks.spawn("the certificate files watch", async move {
                Arc::new(files).watch().await;
                Ok(())
            });
        }
        _ => {
            let config = CertConfig {
                names: CertConfig::service_names(
                    &tls_args.webhook_service,
                    &namespace,
                    &tls_args.tls_san,
                ),
                namespace,
                secret: tls_args.tls_secret,
                webhook_config: tls_args.webhook_config_name,
                validity: tls_args.cert_validity,
            };
            let managed = Managed::new(client, config, serving.clone(), metrics.clone());
            tasks.spawn("the certificate manager", async move {
                managed.run().await;
                Ok(())
            });
        }
    }

    let admin = tokio::net::TcpListener::bind(serve.admin_addr)
        .await
        .with_context(|| format!("listening on {}", serve.admin_addr))?;
    tracing::info!(addr = %serve.admin_addr, "admin server listening");
    let admin = axum::serve(admin, admin_router(metrics.clone(), health.clone()));

    let tls = RustlsConfig::from_config(Arc::new(serving.server_config()?));
    let webhook = router(Webhook {
        lookup: caches,
        caps,
        metrics,
    });
    let handle = axum_server::Handle::new();
    tracing::info!(addr = %serve.webhook_addr, "webhook listening");
    // TCP_NODELAY: the apiserver multiplexes concurrent reviews over one HTTP/2
    // connection, and with Nagle's algorithm an answer written while an earlier one is
    // unacknowledged waits for the client's delayed ACK (tens of milliseconds).
    let acceptor = RustlsAcceptor::new(tls).acceptor(NoDelayAcceptor::new());
    let webhook = axum_server::bind(serve.webhook_addr)
        .acceptor(acceptor)
        .handle(handle.clone())
        .serve(webhook.into_make_service());
    let mut webhook = std::pin::pin!(webhook);
    let mut admin = std::pin::pin!(admin.into_future());

    // Until a signal, a task that ends, or a server that fails.
    let failure = tokio::select! {
        () = terminated() => None,
        failure = tasks.first_ended() => Some(failure),
        ended = &mut lease => Some(anyhow::anyhow!("the lease ended: {ended:?}")),
        served = &mut webhook => Some(anyhow::anyhow!("the webhook server stopped: {served:?}")),
        served = &mut admin => Some(anyhow::anyhow!("the admin server stopped: {served:?}")),
    };
    if let Some(failure) = &failure {
        tracing::error!(error = %failure, "graceful cannot go on; shutting down to be restarted");
    }
    // Either way: fail /readyz and hand the Lease over at once, keep answering
    // admissions for the delay (endpoints and the apiserver take a moment to stop
    // sending), then close the listener and let requests in flight finish.
    tracing::info!(delay = ?serve.shutdown_delay, "shutting down: not ready, still answering admissions");
    health.drain();
    let _ = stop_tx.send(true);
    let drained = async {
        tokio::time::sleep(serve.shutdown_delay).await;
        tracing::info!(
            connections = handle.connection_count(),
            "closing the webhook listener"
        );
        handle.graceful_shutdown(Some(DRAIN));
        (&mut webhook).await
    };
    let served = tokio::select! {
        served = drained => served.with_context(|| format!("serving on {}", serve.webhook_addr)),
        served = &mut admin => served.with_context(|| format!("serving on {}", serve.admin_addr)),
    };
    if !lease.is_finished() && tokio::time::timeout(RELEASE_TIMEOUT, lease).await.is_err() {
        tracing::warn!("timed out handing the lease over");
    }
    tracing::info!("stopped");
    match failure {
        Some(failure) => Err(failure),
        None => served,
    }
}

/// What the apiserver supports; on no answer, graceful's support floor.
async fn capabilities(client: &kube::Client) -> Capabilities {
    let version = tokio::time::timeout(VERSION_TIMEOUT, client.apiserver_version()).await;
    let parsed = match &version {
        Ok(Ok(info)) => parse_version(&info.major, &info.minor),
        _ => None,
    };
    match parsed {
        Some((major, minor)) => {
            tracing::info!(major, minor, "Kubernetes version");
            Capabilities::for_server_version(major, minor)
        }
        None => {
            tracing::warn!(
                ?version,
                "Kubernetes version unknown; assuming the support floor"
            );
            Capabilities::default()
        }
    }
}

/// `"1"`, `"34+"` (some distributions add a `+`).
pub(super) fn parse_version(major: &str, minor: &str) -> Option<(u32, u32)> {
    let number = |text: &str| text.trim_end_matches('+').parse().ok();
    Some((number(major)?, number(minor)?))
}

/// SIGTERM or Ctrl-C.
async fn terminated() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}

/// `90d`, `12h`, `30m`, `45s`, `500ms`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90d, 12h, 30m, 45s"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is one of ms, s, m, h, d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

fn parse_validity(text: &str) -> Result<Duration, String> {
    let validity = parse_duration(text)?;
    if validity < managed::MIN_VALIDITY {
        return Err(format!(
            "at least {}s: renewal takes place in the last third",
            managed::MIN_VALIDITY.as_secs()
        ));
    }
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_duration, parse_validity, parse_version};

    #[test]
    fn reads_durations() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_validity("59s").is_err());
        assert!(parse_validity("1h").is_ok());
    }

    #[test]
    fn reads_server_versions() {
        assert_eq!(parse_version("1", "34"), Some((1, 34)));
        assert_eq!(parse_version("1", "29+"), Some((1, 29)));
        assert_eq!(parse_version("", ""), None);
    }
}
