//! `graceful run`: the admission webhook over HTTPS, and health and metrics over plain
//! HTTP on a port of their own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tracing_subscriber::EnvFilter;

use crate::lease::{self, LeaseConfig};
use crate::metrics::{Metrics, admin_router};
use crate::mutate::Capabilities;
use crate::reconcile;
use crate::tls::CertFiles;
use crate::webhook::watch::Caches;
use crate::webhook::{Webhook, router};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the webhook listens (HTTPS).
    #[arg(long, env = "GRACEFUL_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    webhook_addr: SocketAddr,

    /// Where /healthz, /readyz and /metrics listen (plain HTTP).
    #[arg(long, env = "GRACEFUL_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    admin_addr: SocketAddr,

    /// The serving certificate chain (PEM); reloaded when it changes.
    #[arg(long, env = "GRACEFUL_TLS_CERT_FILE", value_name = "FILE")]
    tls_cert_file: PathBuf,

    /// The serving certificate's private key (PEM); reloaded when it changes.
    #[arg(long, env = "GRACEFUL_TLS_KEY_FILE", value_name = "FILE")]
    tls_key_file: PathBuf,

    /// The namespace of the Lease that picks the one replica writing policy status
    /// (graceful's own namespace when it runs in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,

    /// The name of that Lease.
    #[arg(long, env = "GRACEFUL_LEASE_NAME", default_value = LeaseConfig::DEFAULT_NAME)]
    lease_name: String,

    /// Violations are counted, and conditions stay False after one, over this window.
    #[arg(long, env = "GRACEFUL_VIOLATION_WINDOW_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(i64).range(60..))]
    violation_window_seconds: i64,
}

/// How long the server-version probe at start may take before the default applies.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long requests in flight get to finish on SIGTERM.
const DRAIN: Duration = Duration::from_secs(10);

pub fn run(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // kube's client uses rustls too; one process-wide provider keeps it off aws-lc.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::new());
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let caps = capabilities(&client).await;

    let identity = lease::identity();
    let (leader_tx, leader) = tokio::sync::watch::channel(false);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let lease = LeaseConfig {
        name: args.lease_name,
        ..LeaseConfig::new(args.lease_namespace, identity.clone())
    };
    tokio::spawn(lease::run(client.clone(), lease, leader_tx, stop));
    let settings = reconcile::Settings {
        window_seconds: args.violation_window_seconds,
        ..reconcile::Settings::default()
    };
    tokio::spawn(reconcile::run(
        client.clone(),
        metrics.clone(),
        settings,
        leader,
        identity,
    ));

    let caches = Arc::new(Caches::new(Some(client.clone()), metrics.clone()));
    tokio::spawn(caches.clone().run(client));
    let certs = Arc::new(CertFiles::new(
        args.tls_cert_file,
        args.tls_key_file,
        metrics.clone(),
    ));
    tokio::spawn(certs.clone().watch());

    let ready = {
        let (caches, certs) = (caches.clone(), certs.clone());
        Arc::new(move || caches.is_synced() && certs.is_loaded())
    };
    let admin = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("listening on {}", args.admin_addr))?;
    tracing::info!(addr = %args.admin_addr, "admin server listening");
    let admin = axum::serve(admin, admin_router(metrics.clone(), ready));

    let tls = RustlsConfig::from_config(Arc::new(certs.server_config()?));
    let webhook = router(Webhook {
        lookup: caches,
        caps,
        metrics,
    });
    let handle = axum_server::Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone(), stop_tx));
    tracing::info!(addr = %args.webhook_addr, "webhook listening");
    let webhook = axum_server::bind_rustls(args.webhook_addr, tls)
        .handle(handle)
        .serve(webhook.into_make_service());
    tokio::select! {
        served = webhook => served.with_context(|| format!("serving on {}", args.webhook_addr)),
        served = admin => served.with_context(|| format!("serving on {}", args.admin_addr)),
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
fn parse_version(major: &str, minor: &str) -> Option<(u32, u32)> {
    let number = |text: &str| text.trim_end_matches('+').parse().ok();
    Some((number(major)?, number(minor)?))
}

/// On SIGTERM or Ctrl-C: hand the Lease over at once and drain the webhook.
async fn shutdown_on_signal(handle: axum_server::Handle, stop: tokio::sync::watch::Sender<bool>) {
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
    tracing::info!("shutting down");
    let _ = stop.send(true);
    handle.graceful_shutdown(Some(DRAIN));
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn reads_server_versions() {
        assert_eq!(parse_version("1", "34"), Some((1, 34)));
        assert_eq!(parse_version("1", "29+"), Some((1, 29)));
        assert_eq!(parse_version("", ""), None);
    }
}
