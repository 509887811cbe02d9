//! graceful when things break, through real kube-apiservers: the apiserver or etcd
//! restarts, a replica is SIGKILLed (both in turn), pods arrive in a storm, and the
//! webhook certificate's Secret or the CA in the caBundle is removed. Each test asserts
//! what the user must be able to rely on (no pod blocked, none left unpatched while a
//! replica is ready, violations counted once) and prints its figures on lines that start
//! with `faults:`, for BENCHMARKS.md and the README's failure modes.
//!
//! The restarts and the storm run on control planes of their own (no node), so that
//! they break or load nothing the other tests use. No scenario needs a real shutdown: the
//! test plays the kubelet of bound pods by writing their status (a restart after an
//! Error), as benches/reconcile_scale.rs does, and counts what it wrote.

mod support;

use std::time::{Duration, Instant};

use base64::Engine;

use graceful::api::GracefulPolicy;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::Cluster;
use support::graceful::{
    Graceful, Launch, Load, ca_bundles, governed_pod, labelled_namespace, lease_holder,
    mutated_for, register_webhook,
};

/// Taken by the scenarios that load or break a control plane of their own (the
/// restarts and the storm), so that they run one at a time: on two cores, two at once
/// can push an admission past the apiserver's webhook timeout (2 s), which is the
/// storm's own failure, not the one under test.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A pod naming `web`, bound to `node`, tolerating the taints of a Node without a kubelet.
fn bound_pod(name: &str, node: &str) -> Pod {
    let mut pod = governed_pod(name, "web");
    pod.spec.as_mut().expect("a spec").node_name = Some(node.to_owned());
    pod.spec.as_mut().expect("a spec").tolerations = Some(vec![
        serde_json::from_value(json!({"operator": "Exists"})).expect("a toleration"),
    ]);
    pod
}

/// What a kubelet writes: the one container running, after `restarts` restarts, the
/// last one after an Error.
fn kubelet_status(restarts: i32) -> Value {
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let last = if restarts == 0 {
        json!({})
    } else {
        json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}})
    };
    json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "app", "image": "registry.example/app:1.0", "imageID": "", "ready": true,
        "started": true, "restartCount": restarts,
        "state": {"running": {"startedAt": now}}, "lastState": last,
    }]}})
}

/// Writes pod `name`'s status, retrying while the apiserver is away.
async fn write_status(pods: &Api<Pod>, name: &str, restarts: i32) {
    let status = kubelet_status(restarts);
    support::eventually("a pod status written", Duration::from_secs(60), || {
        let status = &status;
        async move {
            pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
                .await
                .ok()
                .map(drop)
        }
    })
    .await;
}

/// The restarts policy `web` of `namespace` shows, if it can be read.
async fn restarts(policies: &Api<GracefulPolicy>) -> Option<i64> {
    let policy = policies.get_status("web").await.ok()?;
    Some(policy.status?.violations.map_or(0, |v| v.restarts))
}

/// Waits until policy `web` shows `expected` restarts; then checks for `hold` that it
/// stays there (a count made twice shows up within a write interval or two).
async fn restarts_settle_at(policies: &Api<GracefulPolicy>, expected: i64, hold: Duration) {
    support::eventually(
        &format!("{expected} restarts in the status"),
        Duration::from_secs(60),
        || async move { (restarts(policies).await? >= expected).then_some(()) },
    )
    .await;
    let until = Instant::now() + hold;
    while Instant::now() < until {
        if let Some(now) = restarts(policies).await {
            assert_eq!(now, expected, "restarts counted {now} times for {expected}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn create_node(cluster: &Cluster, name: &str) {
    cluster.apply_ok(
        "default",
        &format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n"),
    );
}

/// What the clients of a [`Load`] saw: pods admitted unpatched, and requests refused or
/// lost (the apiserver away).
fn tally(bad: &[String]) -> (usize, usize) {
    let unpatched = bad.iter().filter(|b| b.ends_with(": not mutated")).count();
    (unpatched, bad.len() - unpatched)
}

/// Scenarios 1 and 2: `component` (the apiserver or etcd) restarts while pods are being
/// created and a governed pod restarts; another restarts just as it comes back.
async fn control_plane_restarts(component: &str, down: Duration) {
    let _heavy = HEAVY.lock().await;
    let cluster = support::private_cluster(component);
    let client = cluster.client().await;
    let node = "faults-node";
    create_node(&cluster, node);
    let mut graceful = Graceful::start(&cluster, component, &[]);
    let label = format!("restart-{component}");
    graceful.register_for(&cluster, &label);
    let namespace = labelled_namespace(&cluster, &client, "restart", &label).await;
    cluster.apply_ok(&namespace, support::POLICY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let policies: Api<GracefulPolicy> = Api::namespaced(client.clone(), &namespace);
    support::graceful::first_mutated(&pods, "web").await;
    for name in ["before", "gap"] {
        let pod = pods
            .create(&PostParams::default(), &bound_pod(name, node))
            .await
            .expect("a bound pod");
        assert!(mutated_for(&pod, "web"), "{name} is mutated");
        write_status(&pods, name, 0).await;
    }
    write_status(&pods, "before", 1).await;
    restarts_settle_at(&policies, 1, Duration::from_secs(2)).await;

    let load = Load::start(&pods, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = graceful.pid();
    let started = Instant::now();
    let mut restart = cluster.restart(component, down);
    // /readyz while the control plane is away: graceful answers from its caches, so it
    // stays ready (failing it would take every replica out of the Service at once).
    let mut readyz_during = std::collections::BTreeSet::new();
    let status = loop {
        if let Some(status) = restart.try_wait().expect("e2e/cluster restart") {
            break status;
        }
        readyz_during.insert(graceful.ready());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let back = Instant::now();
    assert!(
        status.success(),
        "e2e/cluster restart {component}: {status}"
    );
    let outage = back - started;

    // Just back: a pod restarts before graceful's watches can have resumed, and a
    // policy is created that only a resumed watch can know.
    write_status(&pods, "gap", 1).await;
    cluster.apply_ok(
        &namespace,
        &support::POLICY.replace("name: web", "name: web2"),
    );
    let mut attempt = 0;
    support::eventually("the new policy used", Duration::from_secs(60), || {
        attempt += 1;
        let pods = &pods;
        async move {
            let pod = governed_pod(&format!("after-{attempt}"), "web2");
            let pod = pods.create(&PostParams::default(), &pod).await.ok()?;
            mutated_for(&pod, "web2").then_some(())
        }
    })
    .await;
    let policies_synced = back.elapsed();
    restarts_settle_at(&policies, 2, Duration::from_secs(5)).await;
    let pods_synced = back.elapsed().saturating_sub(Duration::from_secs(5));
    let (bad, created) = load.stop().await;
    let (unpatched, refused) = tally(&bad);

    assert!(!graceful.exited(), "graceful exited:\n{}", graceful.log());
    assert_eq!(graceful.pid(), pid, "the same process");
    assert!(graceful.ready(), "ready after the restart");
    assert_eq!(readyz_during, [true].into(), "/readyz during the outage");
    assert_eq!(unpatched, 0, "pods admitted unpatched: {bad:?}");
    assert_eq!(
        // The series appears at the first such admission.
        graceful
            .metric("graceful_admission_fail_open_total{reason=\"not_synced\"}")
            .unwrap_or(0.0),
        0.0,
        "no admission failed open for a cache"
    );
    eprintln!(
        "faults: {component} restart: down {:.1}s (stop, {down:?} down, start to /readyz), \
         {created} pods tried by 2 clients, {refused} refused by the apiserver, 0 unpatched; \
         /readyz 200 throughout; policy cache synced {:.1}s and pod watch {:.1}s after \
         the apiserver was ready; restarts counted 2 for 2",
        outage.as_secs_f64(),
        policies_synced.as_secs_f64(),
        pods_synced.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_restarts_and_graceful_carries_on_counting_once() {
    control_plane_restarts("kube-apiserver", Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restarts_and_graceful_carries_on_counting_once() {
    control_plane_restarts("etcd", Duration::from_secs(3)).await;
}

async fn secret_ca(secrets: &Api<Secret>, name: &str) -> Option<String> {
    let secret = secrets.get(name).await.ok()?;
    let bytes = secret.data?.get("ca.crt")?.0.clone();
    String::from_utf8(bytes).ok()
}

/// Waits until the Secret holds a CA the caBundle trusts and a pod is mutated again;
/// how long that took.
async fn repaired(
    secrets: &Api<Secret>,
    configs: &Api<MutatingWebhookConfiguration>,
    pods: &Api<Pod>,
    name: &str,
) -> Duration {
    let broken = Instant::now();
    support::eventually("the repair", Duration::from_secs(60), || async move {
        let ca = secret_ca(secrets, name).await?;
        (ca_bundles(configs, name).await == [ca]).then_some(())
    })
    .await;
    support::graceful::first_mutated(pods, "web").await;
    broken.elapsed()
}

/// Scenario 7: the certificate Secret is deleted, then the CA is cut out of the caBundle
/// by hand, while two clients create pods; graceful repairs both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_secret_and_the_ca_bundle_are_repaired_while_pods_come() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let label = format!("repair-{}", std::process::id());
    let name = format!("graceful-test-{label}");
    let graceful = Graceful::with_own_ca(cluster, "repair", &name, &[]);
    register_webhook(cluster, &name, &[graceful.webhook_port], None, &label);
    let namespace = labelled_namespace(cluster, &client, "repair", &label).await;
    cluster.apply_ok(&namespace, support::POLICY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    support::graceful::first_mutated(&pods, "web").await;

    let load = Load::start(&pods, 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = load.created();
    cluster.kubectl_ok(&["delete", "secret", "-n", "default", &name]);
    let secret_repair = repaired(&secrets, &configs, &pods, &name).await;
    let during_secret = load.created() - before;
    let (bad, _) = load.stop().await;
    let (secret_unpatched, secret_refused) = tally(&bad);

    // Another namespace: the clients name their pods from 0 again.
    let namespace2 = labelled_namespace(cluster, &client, "repair", &label).await;
    cluster.apply_ok(&namespace2, support::POLICY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace2);
    support::graceful::first_mutated(&pods, "web").await;
    let load = Load::start(&pods, 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = load.created();
    cluster.kubectl_ok(&[
        "patch",
        "mutatingwebhookconfiguration",
        &name,
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"}]"#,
    ]);
    let bundle_repair = repaired(&secrets, &configs, &pods, &name).await;
    let during_bundle = load.created() - before;
    let (bad, created) = load.stop().await;
    let (bundle_unpatched, bundle_refused) = tally(&bad);

    assert_eq!(
        secret_refused + bundle_refused,
        0,
        "no pod refused: {bad:?}"
    );
    eprintln!(
        "faults: certificate Secret deleted: repaired in {:.1}s, {secret_unpatched} of \
         {during_secret} pods created meanwhile admitted unpatched",
        secret_repair.as_secs_f64()
    );
    eprintln!(
        "faults: CA cut from the caBundle: repaired in {:.1}s, {bundle_unpatched} of \
         {during_bundle} pods created meanwhile admitted unpatched ({created} in the run)",
        bundle_repair.as_secs_f64()
    );

    drop(graceful);
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &name]);
    cluster.kubectl_ok(&["delete", "secret", "-n", "default", &name]);
    cluster.kubectl_ok(&[
        "delete",
        "namespace",
        &namespace,
        &namespace2,
        "--wait=false",
    ]);
}

/// Which of `replicas` holds Lease `lease`, once one does.
async fn leader_of(leases: &Api<Lease>, lease: &str, replicas: &[Graceful; 2]) -> usize {
    support::eventually("a leader", Duration::from_secs(40), || async move {
        let holder = lease_holder(leases, lease).await?;
        replicas.iter().position(|r| r.holds(&holder))
    })
    .await
}

/// Scenario 3: two replicas of one lease, each a webhook of the configuration, SIGKILLed
/// in turn (the leader first) while pods are created and governed pods restart. No pod
/// goes unpatched, and the status counts every restart the test wrote, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_replicas_sigkilled_in_turn_lose_no_patch_and_no_count() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let label = format!("kill-{}", std::process::id());
    let lease = format!("graceful-test-{label}");
    let node = format!("faults-{label}");
    create_node(cluster, &node);
    let launch = |replica| {
        let graceful = Graceful::launch(
            cluster,
            &Launch {
                name: replica,
                lease: Some(&lease),
                cert_files: true,
                ..Launch::default()
            },
        );
        graceful.wait_ready();
        graceful
    };
    let (a, b) = (launch("kill-a"), launch("kill-b"));
    // Both replicas serve one certificate in the Deployment; here each its own, and each
    // webhook trusts its replica's.
    let name = format!("graceful-test-{label}");
    register_webhook(cluster, &name, &[a.webhook_port], Some(&a.ca_pem), &label);
    let config = cluster.kubectl_ok(&["get", "mutatingwebhookconfiguration", &name, "-o", "json"]);
    let mut config: Value = serde_json::from_str(&config).expect("JSON");
    let mut second = config["webhooks"][0].clone();
    second["name"] = json!("pods-1.graceful.dev");
    second["clientConfig"] = json!({
        "url": format!("https://127.0.0.1:{}/mutate", b.webhook_port),
        "caBundle": base64::engine::general_purpose::STANDARD.encode(&b.ca_pem),
    });
    config["webhooks"]
        .as_array_mut()
        .expect("webhooks")
        .push(second);
    cluster.kubectl_with_input(&["replace", "-f", "-"], Some(&config.to_string()));
    let namespace = labelled_namespace(cluster, &client, "kill", &label).await;
    cluster.apply_ok(&namespace, support::POLICY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let policies: Api<GracefulPolicy> = Api::namespaced(client.clone(), &namespace);
    support::graceful::first_mutated(&pods, "web").await;
    let victims: Vec<String> = (0..4).map(|i| format!("bound-{i}")).collect();
    for victim in &victims {
        pods.create(&PostParams::default(), &bound_pod(victim, &node))
            .await
            .expect("a bound pod");
        write_status(&pods, victim, 0).await;
    }

    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let load = Load::start(&pods, 2);
    let mut replicas = [a, b];
    let mut written = vec![0; victims.len()];
    let mut total = 0;
    let mut restart = |written: &mut Vec<i32>, i: usize| {
        written[i] += 1;
        total += 1;
        (victims[i].clone(), written[i])
    };
    let mut unready = Duration::ZERO;
    for round in 0..2 {
        let leader = leader_of(&leases, &lease, &replicas).await;
        let (victim, count) = restart(&mut written, round * 2);
        write_status(&pods, &victim, count).await;
        replicas[leader].kill();
        let killed = Instant::now();
        // A restart while the lease is held by a dead process.
        let (victim, count) = restart(&mut written, round * 2 + 1);
        write_status(&pods, &victim, count).await;
        let follower = 1 - leader;
        support::eventually("the follower leading", Duration::from_secs(40), || {
            let (leases, lease, follower) = (&leases, &lease, &replicas[follower]);
            async move {
                follower
                    .holds(&lease_holder(leases, lease).await?)
                    .then_some(())
            }
        })
        .await;
        let took_over = killed.elapsed();
        // The kubelet restarts it: same port, same certificate.
        replicas[leader].respawn();
        replicas[leader].wait_ready();
        let back = killed.elapsed();
        unready += back;
        eprintln!(
            "faults: SIGKILL of the leader ({round}): the follower took the lease after {:.1}s; the replica was ready again {:.1}s after the kill",
            took_over.as_secs_f64(),
            back.as_secs_f64()
        );
    }
    let (victim, count) = restart(&mut written, 0);
    write_status(&pods, &victim, count).await;
    let (bad, created) = load.stop().await;
    let (unpatched, refused) = tally(&bad);
    restarts_settle_at(&policies, total, Duration::from_secs(5)).await;
    assert_eq!(unpatched + refused, 0, "{bad:?}");
    eprintln!(
        "faults: both replicas SIGKILLed in turn: {created} pods created, 0 unpatched; \
         {total} restarts written, {total} counted; replicas back ready after {:.1}s on \
         average",
        unready.as_secs_f64() / 2.0
    );

    drop(replicas);
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &name]);
    cluster.kubectl_ok(&["delete", "namespace", &namespace, "--wait=false"]);
    cluster.kubectl_ok(&["delete", "node", &node]);
}

/// Pods created by `clients` clients at once, `count` in all, in `pods`' namespace, each
/// client one after another as fast as the apiserver answers: how long that took, and
/// the pods that came out unmutated (`policy` set) or failed.
async fn create_bare(
    prefix: &str,
    pods: &Api<Pod>,
    count: usize,
    clients: usize,
    policy: Option<&str>,
) -> (Duration, Vec<String>) {
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|client| {
            let pods = pods.clone();
            let policy = policy.map(str::to_owned);
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut bad = Vec::new();
                for i in (client..count).step_by(clients) {
                    let name = format!("{prefix}-{i}");
                    match pods
                        .create(&PostParams::default(), &governed_pod(&name, "web"))
                        .await
                    {
                        Ok(pod) if policy.as_deref().is_none_or(|p| mutated_for(&pod, p)) => {}
                        Ok(_) => bad.push(format!("{name}: not mutated")),
                        Err(error) => bad.push(format!("{name}: {error}")),
                    }
                }
                bad
            })
        })
        .collect();
    let mut bad = Vec::new();
    for worker in workers {
        bad.extend(worker.await.expect("a client"));
    }
    (started.elapsed(), bad)
}

/// graceful's RSS, from /proc, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The upper bound of the histogram bucket that holds quantile `q` of `family`.
fn quantile_bound(metrics: &str, family: &str, q: f64) -> Option<f64> {
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&format!("{family}_bucket{{le=\""))?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    buckets
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|(le, _)| *le)
}

/// Scenario 4: 2,000 governed pods as fast as the apiserver takes them: a Deployment
/// scaled in steps while several clients create bare pods. Every pod is mutated (none
/// fails open) and graceful's memory stays bounded; the rate with the webhook is set
/// against the rate without (a namespace the webhook does not select).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_storm_is_mutated_whole_with_bounded_memory() {
    const BARE: usize = 1500;
    const REPLICAS: [u32; 2] = [250, 500];
    const CLIENTS: usize = 8;
    /// Pods for the rates with and without the webhook.
    const SOLO: usize = 400;
    /// Far above what graceful needs for 2,000 pods, far below a leak's growth.
    const RSS_BOUND_KIB: u64 = 256 * 1024;
    let _heavy = HEAVY.lock().await;
    let cluster = support::private_cluster("storm");
    let client = cluster.client().await;
    let graceful = Graceful::start(&cluster, "storm", &[]);
    graceful.register_for(&cluster, "storm");
    let governed = labelled_namespace(&cluster, &client, "storm", "storm").await;
    cluster.apply_ok(&governed, support::POLICY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &governed);
    support::graceful::first_mutated(&pods, "web").await;
    let plain = support::namespace(&client, "plain").await;
    // The rate through the apiserver alone, then with the webhook, the same clients
    // and nothing else going on.
    let (without, bad) = create_bare(
        "solo",
        &Api::namespaced(client.clone(), &plain),
        SOLO,
        CLIENTS,
        None,
    )
    .await;
    assert!(bad.is_empty(), "{bad:?}");
    let (with, bad) = create_bare("solo", &pods, SOLO, CLIENTS, Some("web")).await;
    assert!(bad.is_empty(), "{bad:?}");

    let pid = graceful.pid();
    let rss_start = rss_kib(pid);
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        }
    });
    let started = Instant::now();
    cluster.apply_ok(
        &governed,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: storm, annotations: {graceful.dev/policy: web}}\n\
         spec:\n  replicas: 0\n  selector: {matchLabels: {app: storm}}\n  template:\n    metadata: {labels: {app: storm}}\n    \
         spec: {containers: [{name: app, image: registry.example/app:1.0}]}\n",
    );
    let bare = create_bare("storm", &pods, BARE, CLIENTS, Some("web"));
    let steps = async {
        for replicas in REPLICAS {
            cluster.kubectl_ok(&[
                "scale",
                "deployment",
                "storm",
                "-n",
                &governed,
                &format!("--replicas={replicas}"),
            ]);
            let want = replicas as usize;
            support::eventually("the Deployment's pods", Duration::from_secs(180), || {
                let pods = &pods;
                async move {
                    let list = pods
                        .list(&ListParams::default().labels("app=storm"))
                        .await
                        .ok()?;
                    (list.items.len() >= want).then_some(())
                }
            })
            .await;
        }
    };
    let ((_, bad), ()) = tokio::join!(bare, steps);
    let storm = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss_peak = sampler.await.expect("the sampler");
    assert!(bad.is_empty(), "{} bare pods: {bad:?}", bad.len());

    let all = pods
        .list(&ListParams::default())
        .await
        .expect("the pods")
        .items;
    let unmutated: Vec<_> = all
        .iter()
        .filter(|p| !mutated_for(p, "web"))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let total = BARE + REPLICAS[REPLICAS.len() - 1] as usize;
    let storm_rate = total as f64 / storm.as_secs_f64();
    assert!(all.len() > total + SOLO, "{} pods", all.len());
    assert!(
        unmutated.is_empty(),
        "{} unmutated: {unmutated:?}",
        unmutated.len()
    );
    let failed_open: f64 = graceful
        .metrics()
        .lines()
        .filter(|l| l.starts_with("graceful_admission_fail_open_total{"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum();
    assert_eq!(failed_open, 0.0, "admissions failed open");
    assert!(rss_peak < RSS_BOUND_KIB, "RSS peaked at {rss_peak} KiB");
    let p99 = quantile_bound(
        &graceful.metrics(),
        "graceful_admission_duration_seconds",
        0.99,
    );
    eprintln!(
        "faults: pod storm: {total} governed pods in {:.1}s ({storm_rate:.0}/s; {BARE} bare \
         from {CLIENTS} clients and a Deployment scaled to {REPLICAS:?}), all mutated, none \
         failed open; {SOLO} bare pods from {CLIENTS} clients alone: {:.0}/s with the \
         webhook, {:.0}/s without; admission p99 <= {} ms (histogram bucket); RSS {} MiB at \
         the start, peak {} MiB",
        storm.as_secs_f64(),
        SOLO as f64 / with.as_secs_f64(),
        SOLO as f64 / without.as_secs_f64(),
        p99.map_or("?".to_owned(), |s| format!("{:.2}", s * 1000.0)),
        rss_start / 1024,
        rss_peak / 1024,
    );
}
