//! Shared by the integration tests that go through a real kube-apiserver: one local
//! control plane per test binary (or the one named by `GRACEFUL_TEST_KUBECONFIG`), a
//! namespace per test, a client, kubectl, and the CRDs applied.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub mod bench;
pub mod graceful;

/// The policy `web` the integration tests apply: a 5 s sleep, a 25 s budget and a 5 s
/// margin (a 35 s grace period), and fast readiness probes.
pub const POLICY: &str = r#"
apiVersion: graceful.dev/v1alpha1
kind: GracefulPolicy
metadata: {name: web}
spec:
  drain: {preStopSleepSeconds: 5, shutdownBudgetSeconds: 25, safetyMarginSeconds: 5}
  readiness: {periodSeconds: 2, failureThreshold: 1, timeoutSeconds: 1}
"#;

/// Names a running cluster's admin kubeconfig to use instead of starting one.
pub const KUBECONFIG_ENV: &str = "GRACEFUL_TEST_KUBECONFIG";

/// Names the real node (kubelet, containerd, kube-proxy) of that cluster, if it has one.
pub const NODE_ENV: &str = "GRACEFUL_TEST_NODE";

/// The busybox-static image `e2e/cluster up --node` imports (nothing can be pulled).
pub const TEST_IMAGE: &str = "localhost/graceful-e2e/busybox:1";

pub struct Cluster {
    pub kubeconfig: PathBuf,
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cluster of this test binary, started on first use and stopped when the binary
/// exits (the launcher watches our PID), with `crds/` applied.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let kubeconfig = match shared_kubeconfig() {
            Some(path) => path,
            None => start_cluster(&[]),
        };
        prepare(kubeconfig)
    })
}

/// The cluster with a real node and the node's name: the shared one when it has a
/// node, else one this test binary starts with `up --node` (one node per host).
pub fn node_cluster() -> (&'static Cluster, &'static str) {
    static NODE: OnceLock<(&'static Cluster, String)> = OnceLock::new();
    let (cluster, node) = NODE.get_or_init(|| {
        let shared = std::env::var(NODE_ENV).ok().filter(|node| !node.is_empty());
        if let (Some(_), Some(node)) = (shared_kubeconfig(), shared) {
            return (cluster(), node);
        }
        let cluster: &'static Cluster = Box::leak(Box::new(prepare(start_cluster(&["--node"]))));
        let node =
            cluster.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
        (cluster, node)
    });
    (cluster, node)
}

fn shared_kubeconfig() -> Option<PathBuf> {
    std::env::var_os(KUBECONFIG_ENV)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The cluster at `kubeconfig`, with `crds/` applied.
fn prepare(kubeconfig: PathBuf) -> Cluster {
    let cluster = Cluster { kubeconfig };
    cluster.kubectl_ok(&["apply", "--server-side", "-f", "crds/"]);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gracefulpolicies.graceful.dev",
    ]);
    cluster
}

/// A control plane of its own (no node), for a test that breaks it (restarts its
/// apiserver or etcd) or loads it heavily, apart from the tests that share one. Stopped
/// when the test binary exits.
pub fn private_cluster(name: &str) -> Cluster {
    prepare(start_cluster_named(
        &format!("test-{}-{name}", std::process::id()),
        &[],
    ))
}

fn start_cluster(extra: &[&str]) -> PathBuf {
    start_cluster_named(&format!("test-{}", std::process::id()), extra)
}

fn start_cluster_named(name: &str, extra: &[&str]) -> PathBuf {
    let output = Command::new(repo().join("e2e/cluster"))
        .args(["up", "--name", name, "--owner-pid"])
        .arg(std::process::id().to_string())
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("e2e/cluster runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    match last.strip_prefix("KUBECONFIG=") {
        Some(path) if output.status.success() => PathBuf::from(path),
        _ => panic!(
            "e2e/cluster up failed ({}):\n{}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

impl Cluster {
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("a kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a client config");
        Client::try_from(config).expect("a client")
    }

    /// `e2e/cluster load` of `archive` into the node of this cluster (named after its
    /// directory).
    pub fn load(&self, archive: &Path) {
        let name = self
            .kubeconfig
            .parent()
            .and_then(Path::file_name)
            .expect("the cluster's directory");
        let output = Command::new(repo().join("e2e/cluster"))
            .arg("load")
            .arg("--name")
            .arg(name)
            .arg(archive)
            .output()
            .expect("e2e/cluster runs");
        assert!(
            output.status.success(),
            "load failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The cluster's name for `e2e/cluster` (its directory's).
    pub fn name(&self) -> &str {
        self.kubeconfig
            .parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .expect("the cluster's directory")
    }

    /// Starts `e2e/cluster restart` of `component`, down for `down`: it returns once the
    /// apiserver is ready again.
    pub fn restart(&self, component: &str, down: Duration) -> std::process::Child {
        Command::new(repo().join("e2e/cluster"))
            .args(["restart", "--name", self.name(), component])
            .arg(down.as_secs_f64().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("e2e/cluster runs")
    }

    /// Merges `status` (JSON `{"status": ...}`) into GracefulPolicy `policy`'s status
    /// subresource, as graceful's reconciler would write it.
    pub fn patch_policy_status(&self, namespace: &str, policy: &str, status: &str) {
        self.kubectl_ok(&[
            "patch",
            "gracefulpolicy",
            policy,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ]);
    }

    /// Runs the cluster's kubectl from the repository root.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_input(args, None)
    }

    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(repo().join("e2e/bin/kubectl"))
            .current_dir(repo())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut stdin = child.stdin.take().expect("kubectl's stdin");
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).expect("kubectl reads");
        }
        drop(stdin);
        child.wait_with_output().expect("kubectl finishes")
    }

    /// Runs kubectl and returns its standard output; panics with its error otherwise.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        checked(args, self.kubectl(args))
    }

    /// `kubectl apply -f -` of `yaml`, in `namespace`.
    pub fn apply(&self, namespace: &str, yaml: &str) -> Output {
        self.kubectl_with_input(&["apply", "-n", namespace, "-f", "-"], Some(yaml))
    }

    pub fn apply_ok(&self, namespace: &str, yaml: &str) -> String {
        checked(&["apply", "-f", "-"], self.apply(namespace, yaml))
    }
}

fn checked(args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// A new namespace for one test, named after `prefix`; unique across test binaries
/// that share a cluster.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("the namespace is created");
    name
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
