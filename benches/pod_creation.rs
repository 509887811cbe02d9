//! Pod creation through a real kube-apiserver, as users feel it, with and without the
//! webhook (`graceful run` registered for one namespace and not for the other):
//!
//! - **rollouts**: Deployments whose annotation names the policy, rolled ROLLOUTS times
//!   (each rollout a new ReplicaSet the owner cache has never seen, and its pods), and
//!   graceful's own admission histogram over those admissions (p50, p99) with the
//!   number of owners it had to read from the apiserver;
//! - **bare pods**: CLIENTS clients (one connection each) creating PODS pods one after
//!   another, rounds alternating between a namespace without the webhook, one where
//!   graceful is called but has nothing to patch (the floor of any webhook), and one
//!   where it patches: pods/s, the create call's p50 and p99, and the CPU the apiserver,
//!   etcd and graceful spent per pod;
//! - **a Deployment scaled from 0 to REPLICAS**: the time until the last pod exists,
//!   pods/s, with and without the webhook.
//!
//! No node is needed: the controller-manager creates ReplicaSets and pods, which stay
//! pending. Run with `cargo bench --bench pod_creation` (under the bench lock, as
//! BENCHMARKS.md says); starts its own control plane from e2e/ unless
//! `GRACEFUL_TEST_KUBECONFIG` names one. Knobs (environment): `GRACEFUL_BENCH_ROLLOUTS`
//! (20), `GRACEFUL_BENCH_ROLLOUT_DEPLOYMENTS` (5, rolled at once),
//! `GRACEFUL_BENCH_ROLLOUT_REPLICAS` (10), `GRACEFUL_BENCH_PODS` (1000),
//! `GRACEFUL_BENCH_CLIENTS` (8), `GRACEFUL_BENCH_REPLICAS` (500),
//! `GRACEFUL_BENCH_ROUNDS` (2), `GRACEFUL_BENCH_PARTS` (`rollouts,bare,deployment`;
//! also `reads`: the owner read alone, on a cache no watch feeds).
//! Under `cargo test --all-targets` (no `--bench` argument) it does nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use support::Cluster;
use support::bench::{loadavg, quantile, var};
use support::graceful::{Graceful, labelled_namespace, mutated_for};

const POLICY: &str = "web";

struct Knobs {
    rollouts: usize,
    rollout_replicas: usize,
    parallel: usize,
    pods: usize,
    clients: usize,
    replicas: usize,
    rounds: usize,
    parts: String,
}

impl Knobs {
    fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            rollouts: var("GRACEFUL_BENCH_ROLLOUTS", 20)?,
            rollout_replicas: var("GRACEFUL_BENCH_ROLLOUT_REPLICAS", 10)?.max(1),
            parallel: var("GRACEFUL_BENCH_ROLLOUT_DEPLOYMENTS", 5)?.max(1),
            pods: var("GRACEFUL_BENCH_PODS", 1000)?,
            clients: var("GRACEFUL_BENCH_CLIENTS", 8)?.max(1),
            replicas: var("GRACEFUL_BENCH_REPLICAS", 500)?,
            rounds: var("GRACEFUL_BENCH_ROUNDS", 2)?.max(1),
            parts: std::env::var("GRACEFUL_BENCH_PARTS")
                .unwrap_or_else(|_| "rollouts,bare,deployment".to_owned()),
        })
    }

    fn runs(&self, part: &str) -> bool {
        self.parts.split(',').any(|p| p.trim() == part)
    }
}

/// graceful's admission histogram: cumulative counts by upper bound, in seconds.
#[derive(Clone, Debug, Default)]
struct Histogram(Vec<(f64, u64)>);

impl Histogram {
    fn of(metrics: &str) -> Self {
        let buckets = metrics
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("graceful_admission_duration_seconds_bucket{le=\"")?;
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.split_whitespace().next()?.parse().ok()?))
            })
            .collect();
        Self(buckets)
    }

    /// The admissions between `before` and `self`.
    fn since(&self, before: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|&(le, count)| {
                    let earlier = before
                        .0
                        .iter()
                        .find(|(b, _)| *b == le)
                        .map_or(0, |(_, c)| *c);
                    (le, count.saturating_sub(earlier))
                })
                .collect(),
        )
    }

    fn total(&self) -> u64 {
        self.0.last().map_or(0, |(_, c)| *c)
    }

    /// The upper bound of the bucket holding quantile `q`.
    fn quantile(&self, q: f64) -> f64 {
        let rank = (q * self.total() as f64).ceil() as u64;
        self.0
            .iter()
            .find(|(_, count)| *count >= rank.max(1))
            .map_or(f64::NAN, |(le, _)| *le)
    }

    fn describe(&self) -> String {
        let mut previous = 0;
        let mut parts = Vec::new();
        for &(le, count) in &self.0 {
            if count > previous {
                parts.push(format!("≤{}: {}", seconds(le), count - previous));
            }
            previous = count;
        }
        parts.join(", ")
    }
}

fn seconds(s: f64) -> String {
    if s.is_infinite() {
        "+Inf".to_owned()
    } else if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    if !support::bench::requested("pod_creation") {
        return Ok(());
    }
    let knobs = Knobs::from_env()?;
    support::bench::block_on(bench(support::cluster(), &knobs))
}

async fn bench(cluster: &Cluster, knobs: &Knobs) -> anyhow::Result<()> {
    let client = cluster.client().await;
    let label = format!("bench-{}", std::process::id());
    let graceful = Graceful::start(cluster, "pod-creation", &[]);
    let config = graceful.register_for(cluster, &label);
    let with = labelled_namespace(cluster, &client, "with", &label).await;
    let without = support::namespace(&client, "without").await;
    for namespace in [&with, &without] {
        cluster.apply_ok(namespace, support::POLICY);
    }
    support::graceful::first_mutated(&Api::namespaced(client.clone(), &with), POLICY).await;
    println!(
        "pod_creation: graceful run {} (release), load average {}",
        env!("CARGO_PKG_VERSION"),
        loadavg()
    );

    let outcome = async {
        if knobs.runs("reads") {
            owner_reads(cluster, &client, &with).await?;
        }
        if knobs.runs("rollouts") {
            rollouts(&client, &graceful, &with, knobs).await?;
        }
        if knobs.runs("bare") {
            let called = labelled_namespace(cluster, &client, "called", &label).await;
            bare_pods(
                cluster,
                &client,
                &graceful,
                [&without, &called, &with],
                knobs,
            )
            .await?;
            cluster.kubectl_ok(&["delete", "namespace", &called, "--wait=false"]);
        }
        if knobs.runs("deployment") {
            scaled_deployment(&client, &graceful, &with, &without, knobs).await?;
        }
        anyhow::Ok(())
    }
    .await;

    let fail_open = graceful.metric("graceful_admission_fail_open_total");
    if std::env::var_os("GRACEFUL_BENCH_LOG").is_some() {
        let _ = std::fs::copy(
            graceful.dir.join("graceful.log"),
            std::env::var_os("GRACEFUL_BENCH_LOG").unwrap_or_default(),
        );
    }
    drop(graceful);
    eprintln!("cleaning up");
    for namespace in [&with, &without] {
        clear(&client, namespace).await;
        cluster.kubectl_ok(&["delete", "namespace", namespace, "--wait=false"]);
    }
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &config]);
    ensure!(
        fail_open.is_none(),
        "admissions failed open during the bench"
    );
    outcome
}

/// Deletes every pod and Deployment of `namespace` at once (no kubelet holds them).
async fn clear(client: &Client, namespace: &str) {
    let now = DeleteParams::default().grace_period(0);
    let _ = Api::<Deployment>::namespaced(client.clone(), namespace)
        .delete_collection(&now, &ListParams::default())
        .await;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let _ = pods.delete_collection(&now, &ListParams::default()).await;
    for _ in 0..600 {
        match pods.list_metadata(&ListParams::default()).await {
            Ok(list) if list.items.is_empty() => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn deployment(name: &str, replicas: usize) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"graceful.dev/policy": POLICY}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            // Every rollout replaces all pods at once: none of them ever runs.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "100%"}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]},
            },
        },
    }))?)
}

/// Waits until Deployment `name` has `replicas` pods of its latest template.
async fn rolled(deployments: &Api<Deployment>, name: &str, replicas: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = deployments.get(name).await?;
        let generation = d.metadata.generation.unwrap_or_default();
        let status = d.status.unwrap_or_default();
        if status.observed_generation == Some(generation)
            && status.updated_replicas.unwrap_or_default() as usize >= replicas
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{name} did not roll out in 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn rollouts(
    client: &Client,
    graceful: &Graceful,
    namespace: &str,
    knobs: &Knobs,
) -> anyhow::Result<()> {
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    let names: Vec<String> = (0..knobs.parallel).map(|i| format!("roll-{i}")).collect();
    let before = Histogram::of(&graceful.metrics());
    let fetched_before = owner_fetches(graceful);
    for name in &names {
        deployments
            .create(
                &PostParams::default(),
                &deployment(name, knobs.rollout_replicas)?,
            )
            .await?;
    }
    for name in &names {
        rolled(&deployments, name, knobs.rollout_replicas).await?;
    }
    let created = Histogram::of(&graceful.metrics()).since(&before);
    println!(
        "  {} new Deployments: {} admissions, p50 ≤ {}, p99 ≤ {}, max ≤ {}; owners read: {}",
        knobs.parallel,
        created.total(),
        seconds(created.quantile(0.50)),
        seconds(created.quantile(0.99)),
        seconds(created.quantile(1.0)),
        owner_fetches(graceful) - fetched_before
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load_before = loadavg();
    let before = Histogram::of(&graceful.metrics());
    let fetched_before = owner_fetches(graceful);
    for rollout in 0..knobs.rollouts {
        // As `kubectl rollout restart` does: a new template, so a new ReplicaSet; all
        // the Deployments at once, as a release of several workloads does.
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "bench.graceful.dev/rollout": rollout.to_string()}}}}});
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        futures::future::try_join_all(
            names
                .iter()
                .map(|name| deployments.patch(name, &params, &patch)),
        )
        .await?;
        for name in &names {
            rolled(&deployments, name, knobs.rollout_replicas).await?;
        }
        // Spread the rollouts out as people and pipelines do.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let during = Histogram::of(&graceful.metrics()).since(&before);
    let fetched = owner_fetches(graceful) - fetched_before;
    println!(
        "  rollouts: {} of {} Deployments at once, {} replicas each, {} admissions (load average {} / {})",
        knobs.rollouts,
        knobs.parallel,
        knobs.rollout_replicas,
        during.total(),
        load_before,
        loadavg()
    );
    println!(
        "    admission p50 ≤ {}, p99 ≤ {}, max ≤ {} (graceful_admission_duration_seconds)",
        seconds(during.quantile(0.50)),
        seconds(during.quantile(0.99)),
        seconds(during.quantile(1.0)),
    );
    println!("    buckets: {}", during.describe());
    println!("    owners read from the apiserver: {fetched}");
    clear(client, namespace).await;
    Ok(())
}

fn owner_fetches(graceful: &Graceful) -> f64 {
    ["found", "absent", "error"]
        .iter()
        .filter_map(|result| {
            graceful.metric(&format!(
                "graceful_owner_fetches_total{{result=\"{result}\"}}"
            ))
        })
        .sum()
}

/// A bare pod; `policy` names the policy in its annotation, or none.
fn bare_pod(name: &str, policy: Option<&str>) -> anyhow::Result<Pod> {
    let annotations = match policy {
        Some(policy) => json!({"graceful.dev/policy": policy}),
        None => json!({}),
    };
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]},
    }))?)
}

/// Where bare pods are created, and so what their admission costs the apiserver.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    /// No webhook is registered for the namespace.
    Without,
    /// graceful is called and answers with no patch (no policy governs the pod): what
    /// any webhook costs the apiserver, whatever it decides.
    Called,
    /// graceful is called and patches the pod.
    Patched,
}

impl Side {
    const ALL: [Side; 3] = [Side::Without, Side::Called, Side::Patched];

    fn name(self) -> &'static str {
        match self {
            Side::Without => "without graceful",
            Side::Called => "called, no patch",
            Side::Patched => "with graceful",
        }
    }

    fn policy(self) -> Option<&'static str> {
        (self != Side::Called).then_some(POLICY)
    }
}

/// CPU seconds (user + system) of a process so far; `None` once it is gone.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks / per_second as f64)
}

/// The processes whose CPU a pod's creation costs: the apiserver and etcd (from the pid
/// files `e2e/cluster` keeps beside the kubeconfig) and graceful.
struct Processes(Vec<(&'static str, u32)>);

impl Processes {
    fn of(cluster: &Cluster, graceful: &Graceful) -> Self {
        let dir = cluster
            .kubeconfig
            .parent()
            .unwrap_or(std::path::Path::new("."));
        let mut pids: Vec<(&'static str, u32)> = ["kube-apiserver", "etcd"]
            .into_iter()
            .filter_map(|name| {
                let pid = std::fs::read_to_string(dir.join(format!("{name}.pid"))).ok()?;
                Some((name, pid.trim().parse().ok()?))
            })
            .collect();
        pids.push(("graceful", graceful.pid()));
        Self(pids)
    }

    fn cpu(&self) -> Vec<f64> {
        self.0
            .iter()
            .map(|&(_, pid)| cpu_seconds(pid).unwrap_or(f64::NAN))
            .collect()
    }
}

struct Created {
    pods: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    mutated: usize,
    /// CPU seconds of each of [`Processes`] over the round.
    cpu: Vec<f64>,
}

async fn create_bare(
    cluster: &Cluster,
    processes: &Processes,
    namespace: &str,
    side: Side,
    round: usize,
    knobs: &Knobs,
) -> anyhow::Result<Created> {
    let mut clients = Vec::new();
    for _ in 0..knobs.clients {
        clients.push(Api::<Pod>::namespaced(cluster.client().await, namespace));
    }
    let per_client = knobs.pods / knobs.clients;
    let cpu_before = processes.cpu();
    let started = Instant::now();
    let workers = clients.into_iter().enumerate().map(|(worker, pods)| {
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            let mut mutated = 0;
            for i in 0..per_client {
                let pod = bare_pod(&format!("bare-{round}-{worker}-{i}"), side.policy())?;
                let called = Instant::now();
                let created = pods.create(&PostParams::default(), &pod).await?;
                latencies.push(called.elapsed());
                mutated += usize::from(mutated_for(&created, POLICY));
            }
            anyhow::Ok((latencies, mutated))
        })
    });
    let mut created = Created {
        pods: 0,
        wall: Duration::ZERO,
        latencies: Vec::new(),
        mutated: 0,
        cpu: Vec::new(),
    };
    for worker in futures::future::join_all(workers).await {
        let (latencies, mutated) = worker??;
        created.pods += latencies.len();
        created.latencies.extend(latencies);
        created.mutated += mutated;
    }
    created.wall = started.elapsed();
    created.cpu = (processes.cpu().iter().zip(cpu_before))
        .map(|(after, before)| after - before)
        .collect();
    created.latencies.sort();
    Ok(created)
}

/// Bare pods created round after round on each [`Side`]: pods/s, the create call's
/// latency and the CPU each process spent per pod, side by side.
async fn bare_pods(
    cluster: &Cluster,
    client: &Client,
    graceful: &Graceful,
    namespaces: [&str; 3],
    knobs: &Knobs,
) -> anyhow::Result<()> {
    let processes = Processes::of(cluster, graceful);
    let mut results: [Vec<Created>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let load_before = loadavg();
    let before = Histogram::of(&graceful.metrics());
    for round in 0..knobs.rounds {
        for (index, side) in Side::ALL.into_iter().enumerate() {
            let namespace = namespaces[index];
            let created = create_bare(cluster, &processes, namespace, side, round, knobs).await?;
            clear(client, namespace).await;
            results[index].push(created);
        }
    }
    let admissions = Histogram::of(&graceful.metrics()).since(&before);
    println!(
        "  bare pods: {} clients, {} pods per round, {} rounds alternating (load average {} / {})",
        knobs.clients,
        knobs.pods / knobs.clients * knobs.clients,
        knobs.rounds,
        load_before,
        loadavg()
    );
    let mut rates = [0.0; 3];
    let mut p99s = [Duration::ZERO; 3];
    for (index, side) in Side::ALL.into_iter().enumerate() {
        let runs = &results[index];
        let pods: usize = runs.iter().map(|r| r.pods).sum();
        let wall: Duration = runs.iter().map(|r| r.wall).sum();
        let mut latencies: Vec<Duration> = runs
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        latencies.sort();
        let mutated: usize = runs.iter().map(|r| r.mutated).sum();
        rates[index] = pods as f64 / wall.as_secs_f64();
        p99s[index] = quantile(&latencies, 0.99);
        let cpu = processes
            .0
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let seconds: f64 = runs.iter().map(|r| r.cpu[i]).sum();
                format!("{name} {:.2}", seconds * 1e3 / pods.max(1) as f64)
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "    {:<17} {:>7.0} pods/s  create p50 {}  p99 {}  (per round: {}; {mutated} mutated)",
            side.name(),
            rates[index],
            ms(quantile(&latencies, 0.50)),
            ms(p99s[index]),
            runs.iter()
                .map(|r| format!("{:.0}/s", r.pods as f64 / r.wall.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("      CPU ms per pod: {cpu}");
        let expected = if side == Side::Patched { pods } else { 0 };
        ensure!(
            mutated == expected,
            "{}: {mutated} of {pods} pods mutated, expected {expected}",
            side.name()
        );
    }
    for (index, side) in [(1, Side::Called), (2, Side::Patched)] {
        println!(
            "    {}: ratio {:.3}, p99 difference {:+.2} ms",
            side.name(),
            rates[index] / rates[0],
            (p99s[index].as_secs_f64() - p99s[0].as_secs_f64()) * 1e3,
        );
    }
    println!(
        "    graceful's admissions p50 ≤ {}, p99 ≤ {}",
        seconds(admissions.quantile(0.5)),
        seconds(admissions.quantile(0.99)),
    );
    Ok(())
}

/// The time from scaling Deployment `name` to `replicas` until its last pod exists.
async fn scale_up(client: &Client, namespace: &str, replicas: usize) -> anyhow::Result<Duration> {
    let name = "scaled";
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    deployments
        .create(&PostParams::default(), &deployment(name, 0)?)
        .await?;
    let pods = Api::<PartialObjectMeta<Pod>>::namespaced(client.clone(), namespace);
    let mut events = watcher::watcher(
        pods,
        watcher::Config::default().labels(&format!("app={name}")),
    )
    .applied_objects()
    .boxed();
    // The watch is open before the scale.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let scale = json!({"spec": {"replicas": replicas}});
    deployments
        .patch_scale(name, &PatchParams::default(), &Patch::Merge(&scale))
        .await?;
    let mut seen = BTreeSet::new();
    while seen.len() < replicas {
        let next = tokio::time::timeout(Duration::from_secs(120), events.next()).await;
        match next.context("no new pod in 2 minutes")? {
            Some(Ok(pod)) => {
                seen.insert(pod.metadata.name.unwrap_or_default());
            }
            Some(Err(error)) => eprintln!("  pod watch: {error}"),
            None => anyhow::bail!("the pod watch ended"),
        }
    }
    let took = started.elapsed();
    drop(events);
    clear(client, namespace).await;
    Ok(took)
}

async fn scaled_deployment(
    client: &Client,
    graceful: &Graceful,
    with: &str,
    without: &str,
    knobs: &Knobs,
) -> anyhow::Result<()> {
    let mut took: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let load_before = loadavg();
    let before = Histogram::of(&graceful.metrics());
    for _ in 0..knobs.rounds {
        for (side, namespace) in [(0, without), (1, with)] {
            took[side].push(scale_up(client, namespace, knobs.replicas).await?);
        }
    }
    let admissions = Histogram::of(&graceful.metrics()).since(&before);
    println!(
        "  a Deployment scaled 0 → {}, {} rounds alternating (load average {} / {})",
        knobs.replicas,
        knobs.rounds,
        load_before,
        loadavg()
    );
    let mut rates = [0.0; 2];
    for (side, name) in [(0, "without graceful"), (1, "with graceful")] {
        let total: Duration = took[side].iter().sum();
        rates[side] = (knobs.replicas * took[side].len()) as f64 / total.as_secs_f64();
        println!(
            "    {name:<17} {:>7.1} pods/s  (to the last pod: {})",
            rates[side],
            took[side]
                .iter()
                .map(|d| format!("{:.2} s", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "    ratio {:.3}; graceful's admissions ({}) p50 ≤ {}, p99 ≤ {}",
        rates[1] / rates[0],
        admissions.total(),
        seconds(admissions.quantile(0.5)),
        seconds(admissions.quantile(0.99)),
    );
    Ok(())
}

/// The read an admission makes after an owner-cache miss, timed alone: a cache that no
/// watch feeds, so every lookup misses and reads the ReplicaSet from the apiserver.
async fn owner_reads(cluster: &Cluster, client: &Client, namespace: &str) -> anyhow::Result<()> {
    use graceful::kinds::Kind;
    use graceful::webhook::Lookup;
    use graceful::webhook::watch::Caches;
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    deployments
        .create(&PostParams::default(), &deployment("read", 0)?)
        .await?;
    let rs = loop {
        let list =
            Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(client.clone(), namespace)
                .list_metadata(&ListParams::default().labels("app=read"))
                .await?;
        if let Some(name) = list.items.first().and_then(|r| r.metadata.name.clone()) {
            break name;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let caches = Caches::new(
        Some(cluster.client().await),
        std::sync::Arc::new(graceful::metrics::Metrics::new()),
    );
    let read = async |what: &str, n: usize, pause: Duration| -> anyhow::Result<()> {
        let mut took = Vec::new();
        for _ in 0..n {
            tokio::time::sleep(pause).await;
            let started = Instant::now();
            let _ = caches.owners(namespace, (Kind::ReplicaSet, &rs)).await;
            took.push(started.elapsed());
        }
        let first = took[0];
        took.sort();
        println!(
            "    {what:<40} first {}  p50 {}  p99 {}  max {}",
            ms(first),
            ms(quantile(&took, 0.5)),
            ms(quantile(&took, 0.99)),
            ms(*took.last().unwrap_or(&Duration::ZERO))
        );
        Ok(())
    };
    println!("  owner reads after a miss (load average {})", loadavg());
    read("a new client, then one after another", 200, Duration::ZERO).await?;
    read("every 100 ms", 30, Duration::from_millis(100)).await?;
    read("every 2 s", 5, Duration::from_secs(2)).await?;
    let raw = Api::<PartialObjectMeta<k8s_openapi::api::apps::v1::ReplicaSet>>::namespaced(
        cluster.client().await,
        namespace,
    );
    for (what, params) in [
        (
            "GET metadata, quorum read (etcd)",
            kube::api::GetParams::default(),
        ),
        (
            "GET metadata, resourceVersion=0 (cache)",
            kube::api::GetParams::any(),
        ),
    ] {
        let mut took = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            raw.get_with(&rs, &params).await?;
            took.push(started.elapsed());
        }
        took.sort();
        println!(
            "    {what:<40} p50 {}  p99 {}",
            ms(quantile(&took, 0.5)),
            ms(quantile(&took, 0.99))
        );
    }
    deployments.delete("read", &DeleteParams::default()).await?;
    Ok(())
}
