//! graceful supervises its own tasks, through a real kube-apiserver: when the watch of
//! one owner kind can no longer run (its RBAC is revoked and its connection drops, so
//! the next watch is forbidden), `/readyz` turns 503 naming that watch, and the process
//! shuts down and exits non-zero, for the kubelet to restart it, rather than go on
//! admitting pods from a cache that no longer moves.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::Cluster;
use support::graceful::{Graceful, Launch, http_get};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy in front of the apiserver whose connections the test can cut, as a
/// network blip or an apiserver restart would.
struct Proxy {
    port: u16,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(relay);
                }
            }
        });
        Self {
            port,
            connections,
            accept,
        }
    }

    /// Drops every open connection; new ones still go through.
    fn cut(&self) {
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

fn admin_kubeconfig(cluster: &Cluster) -> Value {
    let text = std::fs::read_to_string(&cluster.kubeconfig).expect("the kubeconfig");
    serde_yaml_ng::from_str(&text).expect("a kubeconfig")
}

/// Where the apiserver listens, from the admin kubeconfig.
fn apiserver(cluster: &Cluster) -> SocketAddr {
    admin_kubeconfig(cluster)["clusters"][0]["cluster"]["server"]
        .as_str()
        .and_then(|server| server.trim_start_matches("https://").parse().ok())
        .expect("the apiserver at an IP address and port")
}

/// The admin kubeconfig, through the proxy, as `user`.
fn kubeconfig_via(cluster: &Cluster, proxy: &Proxy, user: &str) -> std::path::PathBuf {
    let mut config = admin_kubeconfig(cluster);
    config["clusters"][0]["cluster"]["server"] = json!(format!("https://127.0.0.1:{}", proxy.port));
    for entry in config["users"].as_array_mut().expect("users") {
        entry["user"]["as"] = json!(user);
        entry["user"]["as-groups"] = json!(["system:authenticated"]);
    }
    let path = std::env::temp_dir().join(format!(
        "graceful-supervision-{}.kubeconfig",
        std::process::id()
    ));
    std::fs::write(&path, serde_json::to_string(&config).expect("JSON")).expect("written");
    path
}

/// What graceful needs, for `user`; CronJobs through a binding of their own.
fn rbac(user: &str) -> String {
    format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {user}}}
rules:
  - {{apiGroups: [graceful.dev], resources: [gracefulpolicies], verbs: [list, watch]}}
  - {{apiGroups: [graceful.dev], resources: [gracefulpolicies/status], verbs: [patch]}}
  - {{apiGroups: [""], resources: [pods], verbs: [list, watch]}}
  - {{apiGroups: [""], resources: [services], verbs: [list, watch]}}
  - {{apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}}
  - {{apiGroups: [""], resources: [replicationcontrollers], verbs: [get, list, watch]}}
  - {{apiGroups: [apps], resources: [replicasets, deployments, statefulsets, daemonsets], verbs: [get, list, watch]}}
  - {{apiGroups: [batch], resources: [jobs], verbs: [get, list, watch]}}
  - {{apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}}
  - {{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {user}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {user}}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {user}-cronjobs}}
rules:
  - {{apiGroups: [batch], resources: [cronjobs], verbs: [get, list, watch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {user}-cronjobs}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {user}-cronjobs}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_cannot_run_fails_readiness_and_the_process_exits_non_zero() {
    let cluster = support::cluster();
    let user = format!("graceful-supervision-{}", std::process::id());
    let rbac = rbac(&user);
    cluster.kubectl_with_input(&["apply", "-f", "-"], Some(&rbac));
    let can_list_cronjobs = || {
        cluster
            .kubectl(&["auth", "can-i", "list", "cronjobs.batch", "--as", &user])
            .status
            .success()
    };
    support::eventually("RBAC in force", Duration::from_secs(10), || async {
        can_list_cronjobs().then_some(())
    })
    .await;

    let proxy = Proxy::start(apiserver(cluster)).await;
    let kubeconfig = kubeconfig_via(cluster, &proxy, &user);
    let mut graceful = Graceful::launch(
        cluster,
        &Launch {
            name: "supervision",
            cert_files: true,
            kubeconfig: Some(&kubeconfig),
            args: &["--shutdown-delay", "1s"],
            ..Launch::default()
        },
    );
    graceful.wait_ready();

    // Revoke the CronJob watch's permission: a watch in progress is not ended by that,
    // but the next one is refused, and the connection drop makes a next one.
    cluster.kubectl_ok(&["delete", "clusterrolebinding", &format!("{user}-cronjobs")]);
    support::eventually("RBAC revoked", Duration::from_secs(10), || async {
        (!can_list_cronjobs()).then_some(())
    })
    .await;
    proxy.cut();

    let readyz = support::eventually("/readyz to fail", Duration::from_secs(20), || {
        let answer = http_get(graceful.admin_port, "/readyz").unwrap_or_default();
        async move { answer.starts_with("HTTP/1.0 503").then_some(answer) }
    })
    .await;
    assert!(
        readyz.contains("CronJob watch: failed: CronJob watch is forbidden"),
        "{readyz}"
    );
    let status = graceful
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("graceful did not exit:\n{}", graceful.log()));
    assert!(!status.success(), "{status}\n{}", graceful.log());
    let log = graceful.log();
    assert!(log.contains("graceful cannot go on"), "{log}");
    assert!(log.contains("the CronJob watch failed"), "{log}");

    cluster.kubectl_ok(&["delete", "clusterrolebinding", &user]);
    cluster.kubectl_ok(&["delete", "clusterrole", &user, &format!("{user}-cronjobs")]);
}
