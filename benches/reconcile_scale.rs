//! The reconciler at scale, against a real kube-apiserver: 10,000 governed pods bound
//! to a Node (the bench plays their kubelet, as tests/reconcile.rs does), then
//! `graceful run`, and:
//!
//! - its RSS (VmRSS, VmHWM), with a Service whose EndpointSlices list every pod, once
//!   the initial list is done (`graceful_tracked_pods`
//!   reaches the pod count) and after it settles, the time to that list, and the CPU
//!   time it took;
//! - the time from a pod status change (a restart after an Error) to the policy status
//!   showing it (`violations.restarts` up, `NoRestarts` False), over SAMPLES pods.
//!
//! Run with `benches/reconcile-scale.sh` (builds, then takes the shared bench lock) or
//! `cargo bench --bench reconcile_scale`. Starts its own control plane from e2e/
//! unless `GRACEFUL_TEST_KUBECONFIG` names a running one. Knobs (environment):
//! `GRACEFUL_SCALE_PODS` (10000), `GRACEFUL_SCALE_SAMPLES` (100),
//! `GRACEFUL_SCALE_REPLICASETS` (0: the pods have no owner; N: they are spread over N
//! ReplicaSets, each pod owned by one, as a Deployment's are),
//! `GRACEFUL_SCALE_CONCURRENCY` (32 requests in flight while creating pods),
//! `GRACEFUL_SCALE_SETTLE_SECONDS` (5). Under `cargo test --all-targets` (no
//! `--bench` argument) it does nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use graceful::api::{GracefulPolicy, GracefulPolicyStatus};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::Cluster;
use support::bench::{loadavg, quantile, var};
use support::graceful::Graceful;

const POLICY: &str = "web";

/// The record the webhook would have left on a pod it mutated (as in tests/reconcile.rs).
const RECORD: &str = r#"{"policy":"web","mode":"Enforce","preStopSleepSeconds":5,"shutdownBudgetSeconds":25,"changes":[{"field":"spec.terminationGracePeriodSeconds","from":30,"to":35}]}"#;

/// How often the policy is read while waiting for a status change to show.
const POLL: Duration = Duration::from_millis(20);

struct Knobs {
    pods: usize,
    samples: usize,
    replica_sets: usize,
    concurrency: usize,
    settle: Duration,
}

impl Knobs {
    fn from_env() -> anyhow::Result<Self> {
        let knobs = Self {
            pods: var("GRACEFUL_SCALE_PODS", 10_000)?,
            samples: var("GRACEFUL_SCALE_SAMPLES", 100)?,
            replica_sets: var("GRACEFUL_SCALE_REPLICASETS", 0)?,
            concurrency: var("GRACEFUL_SCALE_CONCURRENCY", 32)?.max(1),
            settle: Duration::from_secs(var("GRACEFUL_SCALE_SETTLE_SECONDS", 5)? as u64),
        };
        ensure!(
            knobs.samples <= knobs.pods,
            "more samples than pods ({} > {})",
            knobs.samples,
            knobs.pods
        );
        ensure!(
            knobs.replica_sets <= knobs.pods,
            "more ReplicaSets than pods ({} > {})",
            knobs.replica_sets,
            knobs.pods
        );
        Ok(knobs)
    }

    /// How long a phase that grows with the pod count (the slices, the initial list, the
    /// status) may take before the bench gives up: 5 minutes, or 10 ms a pod.
    fn patience(&self) -> Duration {
        Duration::from_secs(300).max(Duration::from_millis(10) * self.pods as u32)
    }

    /// The RSS target: 64 MiB at the 10,000 pods of the first target, 256 MiB up to
    /// Kubernetes' published limit of 150,000.
    fn rss_target_mib(&self) -> u64 {
        if self.pods <= 10_000 { 64 } else { 256 }
    }
}

/// Holds the bench's ReplicaSets in deletion, so that the ReplicaSet controller neither
/// creates their replicas nor deletes the bench's pods, and the garbage collector leaves
/// the pods to the bench until the finalizer goes (at the clean-up).
const HOLD: &str = "graceful.dev/bench-hold";

/// Memory and CPU of a process, from /proc.
#[derive(Clone, Copy)]
struct Usage {
    rss_kib: u64,
    hwm_kib: u64,
    cpu: Duration,
}

fn usage(pid: u32) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
        Ok(line.split_whitespace().nth(1).context("a value")?.parse()?)
    };
    // utime and stime are fields 14 and 15, counted after the parenthesised name.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = &stat[stat.rfind(')').context("a stat line")? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Usage {
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
        cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64),
    })
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn rfc3339(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
}

/// The address of pod `i` (in 10.128.0.0/9), for the Service's EndpointSlices.
fn pod_ip(i: usize) -> String {
    format!(
        "10.{}.{}.{}",
        128 + (i >> 16) % 128,
        (i >> 8) & 255,
        i & 255
    )
}

/// The status of the one container of a pod.
fn container_status(restarts: i32, last_state: Value) -> Value {
    let now = rfc3339(Timestamp::now());
    json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "app", "image": "registry.example/app:1", "imageID": "", "ready": true,
        "started": true, "restartCount": restarts,
        "state": {"running": {"startedAt": now}}, "lastState": last_state,
    }]}})
}

fn pod(name: &str, node: &str, owner: Option<&ReplicaSet>) -> anyhow::Result<Pod> {
    let mut labels = json!({"graceful.dev/policy": POLICY, "app": "scale"});
    let mut owners = json!([]);
    if let Some(owner) = owner {
        let rs = owner
            .metadata
            .name
            .as_deref()
            .context("a ReplicaSet's name")?;
        labels["rs"] = json!(rs);
        owners = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                         "uid": owner.metadata.uid, "controller": true,
                         "blockOwnerDeletion": true}]);
    }
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels, "ownerReferences": owners,
                     "annotations": {"graceful.dev/applied": RECORD}},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 35,
            "containers": [{"name": "app", "image": "registry.example/app:1",
                            "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}}}],
            // No kubelet heartbeats, so the Node turns NotReady and is tainted: tolerate
            // every taint for good, or the pods would be evicted mid-run.
            "tolerations": [{"operator": "Exists"}],
        }
    }))?)
}

/// ReplicaSet `j` of the bench, for `replicas` of its pods, created and then held in
/// deletion by [`HOLD`].
async fn held_replica_set(
    api: &Api<ReplicaSet>,
    j: usize,
    replicas: usize,
) -> anyhow::Result<ReplicaSet> {
    let name = format!("rs-{j:04}");
    let labels = json!({"app": "scale", "rs": name, "graceful.dev/policy": POLICY});
    let object: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": name, "finalizers": [HOLD]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app",
                                                       "image": "registry.example/app:1"}]}}},
    }))?;
    // Replicas 0 until held, so that the controller has nothing to create meanwhile.
    let mut unscaled = object.clone();
    if let Some(spec) = unscaled.spec.as_mut() {
        spec.replicas = Some(0);
    }
    create_retried(api, &unscaled)
        .await
        .with_context(|| format!("creating ReplicaSet {name}"))?;
    let background = DeleteParams::background();
    retry(|| api.delete(&name, &background))
        .await
        .with_context(|| format!("holding ReplicaSet {name}"))?;
    let scale = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let params = PatchParams::default();
    retry(|| api.patch(&name, &params, &scale))
        .await
        .with_context(|| format!("scaling ReplicaSet {name}"))
}

/// Creates `object`, retried as [`retry`] does; a retry of a create that went through
/// (409) is done.
async fn create_retried<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    retry(|| async {
        match api.create(&PostParams::default(), object).await {
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            created => created.map(drop),
        }
    })
    .await
}

/// Retries a request that failed on the way (the apiserver closing a kept-alive
/// connection under load), not one the apiserver refused.
async fn retry<T, F, Fut>(mut request: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        match request().await {
            Err(error) if attempt < 5 && !matches!(error, kube::Error::Api(_)) => {
                attempt += 1;
                eprintln!("  retrying after: {error}");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            done => return done,
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// A small xorshift, for the pauses that spread status changes over the write interval.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        max.mul_f64((self.0 % 10_000) as f64 / 10_000.0)
    }
}

fn restarts(status: Option<&GracefulPolicyStatus>) -> i64 {
    status
        .and_then(|s| s.violations.as_ref())
        .map_or(0, |v| v.restarts)
}

fn condition(status: &GracefulPolicyStatus, type_: &str) -> Option<String> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn main() -> anyhow::Result<()> {
    if !support::bench::requested("reconcile_scale") {
        return Ok(());
    }
    let knobs = Knobs::from_env()?;
    // Started here (or named by GRACEFUL_TEST_KUBECONFIG), with crds/ applied; the
    // launcher stops it when this process ends.
    support::bench::block_on(bench(support::cluster(), &knobs))
}

async fn bench(cluster: &Cluster, knobs: &Knobs) -> anyhow::Result<()> {
    let client = cluster.client().await;
    let ns = format!("scale-{}", std::process::id());
    let node = ns.clone();
    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    let nodes = Api::<Node>::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": node}}))?,
        )
        .await?;
    let outcome = measure(cluster, &client, &ns, &node, knobs).await;

    // Pods on a Node without a kubelet never finish a graceful delete: remove them at
    // once, then their namespace and the Node.
    eprintln!("cleaning up namespace {ns}");
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let now = DeleteParams::default().grace_period(0);
    let _ = pods.delete_collection(&now, &ListParams::default()).await;
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), &ns);
    let release = json!({"metadata": {"finalizers": null}});
    if let Ok(held) = replica_sets.list_metadata(&ListParams::default()).await {
        for rs in held
            .items
            .iter()
            .filter_map(|rs| rs.metadata.name.as_deref())
        {
            let _ = replica_sets
                .patch(rs, &PatchParams::default(), &Patch::Merge(&release))
                .await;
        }
    }
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    let _ = nodes.delete(&node, &DeleteParams::default()).await;
    outcome
}

async fn measure(
    cluster: &Cluster,
    client: &Client,
    ns: &str,
    node: &str,
    knobs: &Knobs,
) -> anyhow::Result<()> {
    let policies = Api::<GracefulPolicy>::namespaced(client.clone(), ns);
    let policy: GracefulPolicy = serde_json::from_value(json!({
        "apiVersion": "graceful.dev/v1alpha1", "kind": "GracefulPolicy",
        "metadata": {"name": POLICY},
        "spec": {"drain": {"preStopSleepSeconds": 5, "shutdownBudgetSeconds": 25,
                           "safetyMarginSeconds": 5}},
    }))?;
    policies.create(&PostParams::default(), &policy).await?;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "scale"},
        "spec": {"selector": {"app": "scale"}, "ports": [{"port": 80}]},
    }))?;
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &service)
        .await?;

    // The ReplicaSets first (pod i belongs to the (i mod N)-th), their pods' owners.
    let replica_set_api = Api::<ReplicaSet>::namespaced(client.clone(), ns);
    let owners_started = Instant::now();
    let replica_sets: Vec<ReplicaSet> = futures::stream::iter(0..knobs.replica_sets)
        .map(|j| {
            let replicas = (knobs.pods - j).div_ceil(knobs.replica_sets);
            held_replica_set(&replica_set_api, j, replicas)
        })
        .buffered(knobs.concurrency)
        .try_collect()
        .await?;
    if !replica_sets.is_empty() {
        eprintln!(
            "created {} ReplicaSets in {:.1?}",
            replica_sets.len(),
            owners_started.elapsed()
        );
    }

    // The pods, each created bound and given a Running status, as a kubelet would.
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let replica_sets = &replica_sets;
    let name = |i: usize| format!("app-{i:06}");
    let created = Instant::now();
    futures::stream::iter(0..knobs.pods)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let name = name(i);
                let owner =
                    (!replica_sets.is_empty()).then(|| &replica_sets[i % replica_sets.len()]);
                let object = pod(&name, node, owner)?;
                create_retried(&pods, &object)
                    .await
                    .with_context(|| format!("creating pod {name}"))?;
                let mut status = container_status(0, json!({}));
                status["status"]["podIP"] = json!(pod_ip(i));
                status["status"]["podIPs"] = json!([{"ip": pod_ip(i)}]);
                status["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
                retry(|| async {
                    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await
                })
                .await
                .with_context(|| format!("writing the status of pod {name}"))?;
                if (i + 1) % 1000 == 0 {
                    eprintln!("  {} pods", i + 1);
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(knobs.concurrency)
        .try_collect::<()>()
        .await?;
    let creation = created.elapsed();
    eprintln!(
        "created {} pods (create + status) in {creation:.1?}: {:.0} pods/s with {} in flight",
        knobs.pods,
        knobs.pods as f64 / creation.as_secs_f64(),
        knobs.concurrency
    );
    // The EndpointSlice controller lists every pod in the Service's slices (100 a
    // slice), which graceful watches too.
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns);
    let in_slices = Instant::now();
    loop {
        let listed = slices.list(&ListParams::default()).await?.items;
        let endpoints: usize = listed.iter().map(|s| s.endpoints.len()).sum();
        if endpoints >= knobs.pods {
            eprintln!(
                "{endpoints} endpoints in {} EndpointSlices after {:.1?}",
                listed.len(),
                in_slices.elapsed()
            );
            break;
        }
        ensure!(
            in_slices.elapsed() < knobs.patience(),
            "the EndpointSlices list {endpoints} of {} pods after {:?}",
            knobs.pods,
            knobs.patience()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Let the apiserver and etcd finish with the burst before graceful starts.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // graceful starts; the initial list is done when it tracks every pod.
    // Every governed pod of the cluster (a shared one may hold others): graceful lists
    // them all.
    let total = Api::<Pod>::all(client.clone())
        .list_metadata(&ListParams::default().labels("graceful.dev/policy"))
        .await?
        .items
        .len();
    let load_before = loadavg();
    let started = Instant::now();
    let mut graceful = Graceful::start(cluster, "scale", &[]);
    let pid = graceful.pid();
    let mut peak_during_list = 0;
    let listed = loop {
        if graceful.exited() {
            bail!("graceful run exited:\n{}", graceful.log());
        }
        if let Ok(u) = usage(pid) {
            peak_during_list = peak_during_list.max(u.rss_kib);
        }
        if graceful
            .metric("graceful_tracked_pods")
            .is_some_and(|n| n >= total as f64)
        {
            break started.elapsed();
        }
        ensure!(
            started.elapsed() < knobs.patience(),
            "graceful did not track {total} pods in {:?}:\n{}",
            knobs.patience(),
            graceful.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let after_list = usage(pid)?;
    // And the status shows them all.
    let in_status = loop {
        let status = retry(|| policies.get_status(POLICY)).await?.status;
        if status
            .and_then(|s| s.pods)
            .is_some_and(|p| p.matched as usize >= knobs.pods)
        {
            break started.elapsed();
        }
        ensure!(
            started.elapsed() < knobs.patience(),
            "the policy status never counted {} pods:\n{}",
            knobs.pods,
            graceful.log()
        );
        tokio::time::sleep(POLL).await;
    };
    tokio::time::sleep(knobs.settle).await;
    let settled = usage(pid)?;
    eprintln!(
        "listed in {listed:.2?}; RSS {} after the list, {} settled",
        mib(after_list.rss_kib),
        mib(settled.rss_kib)
    );

    // Status change to condition: one restart on a different pod each time, at a random
    // point of graceful's status-write interval.
    let mut jitter = Jitter(
        Timestamp::now()
            .as_nanosecond()
            .unsigned_abs()
            .try_into()
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            | 1,
    );
    let mut latencies = Vec::with_capacity(knobs.samples);
    let mut seen = restarts(policies.get_status(POLICY).await?.status.as_ref());
    let step = (knobs.pods / knobs.samples.max(1)).max(1);
    for sample in 0..knobs.samples {
        tokio::time::sleep(Duration::from_millis(50) + jitter.next(Duration::from_secs(1))).await;
        let name = name(sample * step);
        let finished = rfc3339(Timestamp::now());
        let last_state = json!({"terminated": {"exitCode": 1, "reason": "Error",
                                               "startedAt": finished, "finishedAt": finished}});
        let changed = Instant::now();
        let status = container_status(1, last_state);
        retry(|| async {
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
        })
        .await?;
        loop {
            let status = retry(|| policies.get_status(POLICY)).await?.status;
            let now = restarts(status.as_ref());
            if now > seen {
                let latency = changed.elapsed();
                let reflected = status
                    .as_ref()
                    .and_then(|s| condition(s, "NoRestarts"))
                    .is_some_and(|c| c == "False");
                ensure!(reflected, "restarts counted but NoRestarts is not False");
                ensure!(
                    now == seen + 1,
                    "one restart counted as {} (pod {name})",
                    now - seen
                );
                seen = now;
                latencies.push(latency);
                break;
            }
            ensure!(
                changed.elapsed() < Duration::from_secs(30),
                "the restart of {name} did not show in 30 s:\n{}",
                graceful.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }
    let after_samples = usage(pid)?;
    let load_after = loadavg();
    latencies.sort();
    drop(graceful);

    println!();
    println!(
        "reconcile_scale: {} governed pods on one Node, graceful run {}",
        knobs.pods,
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "  governed pods in the cluster        {total} (label graceful.dev/policy, in {ns}: {})",
        knobs.pods
    );
    println!(
        "  pods created (create + status)      {:.1} s, {:.0} pods/s, {} requests in flight",
        creation.as_secs_f64(),
        knobs.pods as f64 / creation.as_secs_f64(),
        knobs.concurrency
    );
    println!(
        "  time to the initial list            {} (start to graceful_tracked_pods = {total})",
        ms(listed),
    );
    println!("  time to status pods.matched         {}", ms(in_status));
    println!(
        "  CPU time to the initial list        {} (user + system)",
        ms(after_list.cpu)
    );
    println!(
        "  RSS after the initial list          {} (peak sampled during the list {}, VmHWM {})",
        mib(after_list.rss_kib),
        mib(peak_during_list),
        mib(after_list.hwm_kib)
    );
    println!(
        "  RSS settled ({} s later)             {} (VmHWM {})",
        knobs.settle.as_secs(),
        mib(settled.rss_kib),
        mib(settled.hwm_kib)
    );
    println!(
        "  CPU time while settled              {} over {} s",
        ms(settled.cpu.saturating_sub(after_list.cpu)),
        knobs.settle.as_secs()
    );
    println!(
        "  RSS after the samples               {} (VmHWM {}, CPU {} in all)",
        mib(after_samples.rss_kib),
        mib(after_samples.hwm_kib),
        ms(after_samples.cpu)
    );
    if !latencies.is_empty() {
        println!(
            "  status change to condition          p50 {}  p95 {}  p99 {}  max {}  (min {}, N = {})",
            ms(quantile(&latencies, 0.50)),
            ms(quantile(&latencies, 0.95)),
            ms(quantile(&latencies, 0.99)),
            ms(*latencies.last().unwrap_or(&Duration::ZERO)),
            ms(latencies[0]),
            latencies.len()
        );
    }
    println!("  load average before / after         {load_before} / {load_after}");
    let rss_target = knobs.rss_target_mib();
    let rss_ok = settled.rss_kib.max(after_list.rss_kib) < rss_target * 1024;
    let p99_ok = latencies.is_empty() || quantile(&latencies, 0.99) < Duration::from_secs(2);
    println!(
        "  targets: RSS < {rss_target} MiB {}, p99 < 2 s {}",
        if rss_ok { "met" } else { "MISSED" },
        if p99_ok { "met" } else { "MISSED" }
    );
    Ok(())
}
