//! `graceful run` as a child process of a test, on free loopback ports, serving a fresh
//! self-signed certificate from files or a chain of its own CA; and the loopback
//! overlay's webhook configuration pointed at it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

use base64::Engine;
use serde_json::{Value, json};

use super::Cluster;

/// A running `graceful run`, killed when dropped.
pub struct Graceful {
    child: Child,
    pub dir: PathBuf,
    pub webhook_port: u16,
    pub admin_port: u16,
    /// The serving certificate (PEM), which is its own CA; empty when graceful runs its
    /// own CA.
    pub ca_pem: String,
    /// The name of its Lease, in its namespace.
    pub lease: String,
    /// How it was started, for [`Graceful::respawn`].
    command: Vec<std::ffi::OsString>,
    kubeconfig: PathBuf,
}

/// How to start a `graceful run`.
#[derive(Default)]
pub struct Launch<'a> {
    /// Keeps its files apart from other instances of this test binary.
    pub name: &'a str,
    /// graceful's own namespace (`--namespace`): `default` when empty.
    pub namespace: &'a str,
    /// The name of its Lease: instances of one lease take turns as the status writer.
    /// `graceful-test-<pid>-<name>` when absent.
    pub lease: Option<&'a str>,
    /// A self-signed certificate from files (`true`), or graceful's own CA (`false`).
    pub cert_files: bool,
    /// Another kubeconfig than the cluster's admin one.
    pub kubeconfig: Option<&'a Path>,
    pub args: &'a [&'a str],
}

impl Drop for Graceful {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep the log of a failed test to read.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A plain HTTP/1.0 GET on loopback; the whole response, headers included.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_at(SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// A plain HTTP/1.0 GET of `address` (e.g. a ClusterIP), giving up after 2 s.
pub fn http_get_at(address: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

impl Graceful {
    /// Starts `graceful run` against `cluster` with a self-signed certificate from files
    /// and waits until it is ready. `name` keeps its files apart from other instances of
    /// this test binary, and names its Lease: two instances of the same name take turns
    /// as the status writer.
    pub fn start(cluster: &Cluster, name: &str, extra: &[&str]) -> Self {
        let graceful = Self::launch(
            cluster,
            &Launch {
                name,
                cert_files: true,
                args: extra,
                ..Launch::default()
            },
        );
        graceful.wait_ready();
        graceful
    }

    /// Starts `graceful run` with its own CA, kept in Secret `name` of `default` and
    /// injected into webhook configuration `name`, for 127.0.0.1, plus `extra`; waits
    /// until it is ready.
    pub fn with_own_ca(cluster: &Cluster, replica: &str, name: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "--tls-secret",
            name,
            "--webhook-config-name",
            name,
            "--tls-san",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        let graceful = Self::launch(
            cluster,
            &Launch {
                name: replica,
                args: &args,
                ..Launch::default()
            },
        );
        graceful.wait_ready();
        graceful
    }

    /// Starts `graceful run` as `launch` says, without waiting.
    pub fn launch(cluster: &Cluster, launch: &Launch) -> Self {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("graceful-test-{pid}-{}", launch.name));
        std::fs::create_dir_all(&dir).expect("a test directory");
        let (webhook_port, admin_port) = (free_port(), free_port());
        let lease = match launch.lease {
            Some(lease) => lease.to_owned(),
            None => format!("graceful-test-{pid}-{}", launch.name),
        };
        let namespace = if launch.namespace.is_empty() {
            "default"
        } else {
            launch.namespace
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_graceful"));
        command
            .arg("run")
            .args(["--webhook-addr", &format!("127.0.0.1:{webhook_port}")])
            .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .args(["--namespace", namespace, "--lease-name", &lease]);
        let mut ca_pem = String::new();
        if launch.cert_files {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
                .expect("a certificate");
            ca_pem = cert.cert.pem();
            std::fs::write(dir.join("tls.crt"), &ca_pem).expect("the certificate is written");
            std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem())
                .expect("the key is written");
            command
                .arg("--tls-cert-file")
                .arg(dir.join("tls.crt"))
                .arg("--tls-key-file")
                .arg(dir.join("tls.key"));
        }
        command.args(launch.args);
        let command: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
        let kubeconfig = launch.kubeconfig.unwrap_or(&cluster.kubeconfig).to_owned();
        Graceful {
            child: spawn(&command, &kubeconfig, &dir),
            dir,
            webhook_port,
            admin_port,
            ca_pem,
            lease,
            command,
            kubeconfig,
        }
    }

    /// Starts it again as it was started (its ports, certificate and Lease), once it
    /// has exited or been killed, without waiting.
    pub fn respawn(&mut self) {
        let _ = self.child.wait();
        self.child = spawn(&self.command, &self.kubeconfig, &self.dir);
    }

    /// Waits until `/readyz` says ready; panics with the log after 30 s.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready() {
            assert!(
                Instant::now() < deadline,
                "graceful run did not become ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn ready(&self) -> bool {
        http_get(self.admin_port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.0 200"))
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin_port, "/metrics").unwrap_or_default()
    }

    /// The value of one sample in `/metrics`, e.g. `graceful_tracked_pods`.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let metrics = self.metrics();
        let line = metrics
            .lines()
            .find(|line| line.split_whitespace().next() == Some(sample))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM, as the kubelet does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {}", self.pid());
    }

    /// SIGKILL: no chance to hand anything over.
    pub fn kill(&mut self) {
        self.child.kill().expect("graceful is killed");
        let _ = self.child.wait();
    }

    /// How it exited, once it has, within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// `self` identifies as `holder` in a Lease (`<host>_<pid>`).
    pub fn holds(&self, holder: &str) -> bool {
        holder.ends_with(&format!("_{}", self.pid()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("graceful.log")).unwrap_or_default()
    }

    /// Registers `graceful-test-<label>`: a webhook configuration that sends the pods of
    /// namespaces labelled `label` to this instance and trusts its certificate. Returns
    /// its name.
    pub fn register_for(&self, cluster: &Cluster, label: &str) -> String {
        let name = format!("graceful-test-{label}");
        register_webhook(
            cluster,
            &name,
            &[self.webhook_port],
            Some(&self.ca_pem),
            label,
        );
        name
    }
}

/// `graceful <args>` logging to `dir`'s graceful.log.
fn spawn(args: &[std::ffi::OsString], kubeconfig: &Path, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("graceful.log"))
        .expect("a log file");
    Command::new(env!("CARGO_BIN_EXE_graceful"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log file"))
        .stderr(log)
        .spawn()
        .expect("graceful runs")
}

/// The caBundle of every webhook of MutatingWebhookConfiguration `name`, as text.
pub async fn ca_bundles(
    configs: &Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>,
    name: &str,
) -> Vec<String> {
    let Ok(config) = configs.get(name).await else {
        return Vec::new();
    };
    config
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|webhook| {
            let bundle = webhook.client_config.ca_bundle.unwrap_or_default();
            String::from_utf8(bundle.0).unwrap_or_default()
        })
        .collect()
}

/// The holder of Lease `name`, `None` when it is free (released leases keep an empty holder).
pub async fn lease_holder(
    leases: &Api<k8s_openapi::api::coordination::v1::Lease>,
    name: &str,
) -> Option<String> {
    let lease = leases.get(name).await.ok()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Registers the loopback overlay's MutatingWebhookConfiguration as `name`, with one
/// webhook per port in `ports`, for namespaces labelled `graceful.dev/test=<label>`
/// only, so that test binaries sharing a cluster do not see each other's webhooks.
/// `ca_pem` goes into every caBundle; without it graceful is to inject its own CA.
pub fn register_webhook(
    cluster: &Cluster,
    name: &str,
    ports: &[u16],
    ca_pem: Option<&str>,
    label: &str,
) {
    let rendered = cluster.kubectl_ok(&["kustomize", "manifests/overlays/loopback"]);
    let mut config: Value = serde_yaml_ng::from_str(&rendered).expect("one webhook configuration");
    config["metadata"]["name"] = json!(name);
    let template = config["webhooks"][0].clone();
    assert_eq!(
        template["clientConfig"]["url"], "https://127.0.0.1:8443/mutate",
        "the overlay's URL"
    );
    let webhooks: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut webhook = template.clone();
            if i > 0 {
                webhook["name"] = json!(format!("pods-{i}.graceful.dev"));
            }
            webhook["clientConfig"] = json!({"url": format!("https://127.0.0.1:{port}/mutate")});
            if let Some(ca) = ca_pem {
                webhook["clientConfig"]["caBundle"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(ca));
            }
            webhook["namespaceSelector"]["matchLabels"] = json!({"graceful.dev/test": label});
            webhook
        })
        .collect();
    config["webhooks"] = json!(webhooks);
    let output = cluster.kubectl_with_input(
        &["apply", "-f", "-"],
        Some(&serde_json::to_string(&config).expect("JSON")),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new namespace, labelled for the webhooks [`register_webhook`] registered with `label`.
pub async fn labelled_namespace(
    cluster: &Cluster,
    client: &kube::Client,
    prefix: &str,
    label: &str,
) -> String {
    let namespace = super::namespace(client, prefix).await;
    cluster.kubectl_ok(&[
        "label",
        "namespace",
        &namespace,
        &format!("graceful.dev/test={label}"),
    ]);
    namespace
}

/// A bare pod that names `policy` in its own annotation.
pub fn governed_pod(name: &str, policy: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": {"graceful.dev/policy": policy}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}
    }))
    .expect("a pod")
}

/// Whether the webhook patched `pod` for `policy`.
pub fn mutated_for(pod: &Pod, policy: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get("graceful.dev/policy"))
        .is_some_and(|p| p == policy)
}

/// Creates pods naming `policy` until one comes out mutated: the apiserver calls a
/// webhook configuration a moment after it is registered.
pub async fn first_mutated(pods: &Api<Pod>, policy: &str) {
    let mut attempt = 0;
    super::eventually("a mutated pod", Duration::from_secs(15), || {
        attempt += 1;
        async move {
            let name = format!("first-{attempt}");
            let pod = pods
                .create(&PostParams::default(), &governed_pod(&name, policy))
                .await
                .ok()?;
            mutated_for(&pod, policy).then_some(())
        }
    })
    .await;
}

/// Clients creating pods that name the policy `web`, one after another each, until
/// stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    created: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    pub fn start(pods: &Api<Pod>, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let created = Arc::new(AtomicUsize::new(0));
        let workers = (0..workers)
            .map(|worker| {
                let (pods, stop, created) = (pods.clone(), stop.clone(), created.clone());
                tokio::spawn(async move {
                    let mut bad = Vec::new();
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let name = format!("load-{worker}-{i}");
                        let pod = governed_pod(&name, "web");
                        match pods.create(&PostParams::default(), &pod).await {
                            Ok(pod) if mutated_for(&pod, "web") => {}
                            Ok(_) => bad.push(format!("{name}: not mutated")),
                            Err(error) => bad.push(format!("{name}: {error}")),
                        }
                        created.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    bad
                })
            })
            .collect();
        Self {
            stop,
            created,
            workers,
        }
    }

    /// How many pods were created so far.
    pub fn created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }

    /// Stops the clients; the pods that failed or came out unmutated, and how many
    /// were created in all.
    pub async fn stop(self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let mut bad = Vec::new();
        for worker in self.workers {
            bad.extend(worker.await.expect("a load client"));
        }
        (bad, self.created.load(Ordering::Relaxed))
    }
}
