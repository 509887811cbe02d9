//! What a real node does with pods, which an apiserver alone cannot show and the
//! reconciler and the webhook depend on: a kubelet, containerd and kube-proxy run a
//! locally built image, kill a container over its memory limit (`OOMKilled`) or at
//! the end of its grace period (exit 137), and run a native preStop sleep before
//! SIGTERM. Times come from the API and from `/proc/uptime`, which the host and the
//! containers share (no time namespace), so they compare to a hundredth of a second.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use graceful::api::GracefulPolicySpec;
use graceful::mutate::{Capabilities, Governing, PodView, mutate};
use json_patch::jsonptr::Pointer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

use support::graceful::http_get_at;
use support::{TEST_IMAGE, eventually, repo};

/// Seconds since boot, as every container on this node also reads it.
fn uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("/proc/uptime");
    let first = text.split_whitespace().next().unwrap_or_default();
    first.parse().expect("uptime in seconds")
}

/// A container of the test image running `script` with sh, never pulled.
fn container(name: &str, script: &str) -> Value {
    json!({"name": name, "image": TEST_IMAGE, "imagePullPolicy": "Never",
           "command": ["sh", "-c", script]})
}

/// `spec` pinned to the real node: test binaries sharing the cluster create fake ones.
fn on_node(node: &str, mut spec: Value) -> Value {
    spec["nodeSelector"] = json!({"kubernetes.io/hostname": node});
    spec
}

fn pod(name: &str, node: &str, spec: Value) -> Pod {
    let spec = on_node(node, spec);
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("a pod")
}

fn status_of(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first()
}

/// The pods of a fresh namespace `name` on the cluster with the real node, and the
/// node's name.
async fn node_pods(name: &str) -> (Api<Pod>, &'static str) {
    let (cluster, node) = support::node_cluster();
    let client = cluster.client().await;
    let ns = support::namespace(&client, name).await;
    (Api::namespaced(client, &ns), node)
}

/// Creates `pod` and waits until its container runs and is ready.
async fn run(pods: &Api<Pod>, pod: &Pod) -> String {
    let name = pod.metadata.name.clone().expect("a name");
    pods.create(&PostParams::default(), pod)
        .await
        .expect("the pod is created");
    eventually(
        &format!("pod {name} ready"),
        Duration::from_secs(60),
        || async {
            let pod = pods.get(&name).await.ok()?;
            status_of(&pod)?.ready.then_some(())
        },
    )
    .await;
    name
}

/// The states of a deleted pod the tests look at.
struct Deletion {
    /// The first with a deletionTimestamp: the kubelet's final delete rewrites both
    /// deletion fields (grace period 0).
    requested: Pod,
    /// The last, with the kubelet's final container status.
    gone: Pod,
    /// The uptime just before the delete request.
    deleted_at: f64,
}

/// Deletes pod `name` and follows it until it is gone.
async fn delete_and_follow(pods: &Api<Pod>, name: &str) -> Deletion {
    let current = pods.get(name).await.expect("the pod");
    let version = current
        .metadata
        .resource_version
        .clone()
        .expect("a version");
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(90);
    let mut events = pods
        .watch(&params, &version)
        .await
        .expect("a watch")
        .boxed();
    let deleted_at = uptime();
    pods.delete(name, &DeleteParams::default())
        .await
        .expect("the pod is deleted");
    let mut requested = None;
    let mut last = current;
    while let Some(event) = events.try_next().await.expect("watch events") {
        let (WatchEvent::Modified(pod) | WatchEvent::Deleted(pod)) = &event else {
            continue;
        };
        if requested.is_none() && pod.metadata.deletion_timestamp.is_some() {
            requested = Some(pod.clone());
        }
        last = pod.clone();
        if let WatchEvent::Deleted(gone) = event {
            return Deletion {
                requested: requested.unwrap_or_else(|| gone.clone()),
                gone,
                deleted_at,
            };
        }
    }
    panic!(
        "pod {name} still exists 90 s after its delete; last status: {:?}",
        last.status
    );
}

fn terminated(pod: &Pod) -> &ContainerStateTerminated {
    status_of(pod)
        .and_then(|status| status.state.as_ref()?.terminated.as_ref())
        .unwrap_or_else(|| panic!("no terminated container in {:?}", pod.status))
}

/// `e2e/image` with `args`, writing `out`.
fn build_image(out: &Path, args: &[&str]) -> Output {
    let output = Command::new(repo().join("e2e/image"))
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("e2e/image runs");
    assert!(
        output.status.success(),
        "e2e/image failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test]
async fn an_image_built_from_host_files_runs_as_its_config_says() {
    let (cluster, node) = support::node_cluster();
    let client = cluster.client().await;
    let ns = support::namespace(&client, "node-image").await;
    let reference = format!("localhost/graceful-test/config-{}:1", std::process::id());
    // The kubelet takes only the user ID of an image's user (its group comes from
    // the pod's runAsGroup, else 0).
    let script = r#"echo "$GREETING $(id -u) $(pwd)" >/dev/termination-log"#;
    let args = [
        "--ref",
        &reference,
        "--user",
        "1234:5678",
        "--env",
        "GREETING=hello",
        "--workdir",
        "/tmp",
        "--entrypoint",
        "/bin/sh",
        "--entrypoint",
        "-c",
        "--cmd",
        script,
        "/bin/busybox:/bin/sh",
        "/bin/busybox:/bin/id",
    ];
    let dir = std::env::temp_dir().join(format!("graceful-test-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let (first, second) = (dir.join("first.tar"), dir.join("second.tar"));
    let built = build_image(&first, &args);
    build_image(&second, &args);
    // The name containerd and the kubelet use, unchanged for a localhost/ reference.
    assert_eq!(String::from_utf8_lossy(&built.stdout).trim(), reference);
    let bytes = std::fs::read(&first).expect("the first archive");
    assert!(
        bytes == std::fs::read(&second).expect("the second archive"),
        "reproducible"
    );
    cluster.load(&first);
    std::fs::remove_dir_all(&dir).expect("the temporary directory is removed");

    let pods = Api::<Pod>::namespaced(client, &ns);
    let spec = pod(
        "config",
        node,
        json!({"restartPolicy": "Never", "containers": [
            {"name": "app", "image": reference, "imagePullPolicy": "Never"}
        ]}),
    );
    pods.create(&PostParams::default(), &spec)
        .await
        .expect("the pod is created");
    let end = eventually(
        "the container to finish",
        Duration::from_secs(60),
        || async {
            let pod = pods.get("config").await.ok()?;
            status_of(&pod)?.state.clone()?.terminated
        },
    )
    .await;
    assert_eq!(end.exit_code, 0, "{end:?}");
    assert_eq!(end.message.as_deref(), Some("hello 1234 /tmp\n"));
}

#[tokio::test]
async fn a_deployment_of_a_local_image_is_ready_and_its_service_answers_from_the_host() {
    let (cluster, node) = support::node_cluster();
    let client = cluster.client().await;
    let ns = support::namespace(&client, "node-service").await;
    // Each pod answers with its name, so the test sees both behind the Service.
    let mut web = container(
        "web",
        "hostname > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
    );
    web["readinessProbe"] = json!({"tcpSocket": {"port": 8080}, "periodSeconds": 1});
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": on_node(node, json!({"containers": [web]})),
            },
        }
    }))
    .expect("a deployment");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .expect("a service");
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("the deployment is created");
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let service = services
        .create(&PostParams::default(), &service)
        .await
        .expect("the service is created");

    eventually("2 ready replicas", Duration::from_secs(60), || async {
        let deployment = deployments.get("web").await.ok()?;
        (deployment.status?.ready_replicas == Some(2)).then_some(())
    })
    .await;
    let names: BTreeSet<String> = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("the pods")
        .into_iter()
        .filter_map(|pod| pod.metadata.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // From the host through kube-proxy's rules to both pods (as the apiserver will
    // reach graceful's webhook Service), within 30 s of kube-proxy seeing them.
    let ip: IpAddr = service
        .spec
        .and_then(|spec| spec.cluster_ip)
        .and_then(|ip| ip.parse().ok())
        .expect("a ClusterIP");
    let address = SocketAddr::new(ip, 80);
    let mut answered = BTreeSet::new();
    eventually(
        "both pods answering on the ClusterIP",
        Duration::from_secs(30),
        || {
            if let Some(response) = http_get_at(address, "/index.html") {
                let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
                answered.insert(body.trim().to_owned());
            }
            let done = answered == names;
            async move { done.then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed_and_restarted() {
    let (pods, node) = node_pods("node-oom").await;
    let mut hog = container(
        "hog",
        // dd fills a 64 MiB buffer: four times the limit.
        "exec dd if=/dev/zero of=/dev/null bs=64M count=1",
    );
    hog["resources"] = json!({"limits": {"memory": "16Mi"}});
    let spec = pod("hog", node, json!({"containers": [hog]}));
    pods.create(&PostParams::default(), &spec)
        .await
        .expect("the pod is created");

    let status = eventually(
        "a restart after an OOM kill",
        Duration::from_secs(60),
        || async {
            let pod = pods.get("hog").await.ok()?;
            let status = status_of(&pod)?.clone();
            (status.restart_count >= 1 && status.last_state.as_ref()?.terminated.is_some())
                .then_some(status)
        },
    )
    .await;
    let last = status
        .last_state
        .and_then(|state| state.terminated)
        .expect("the last state");
    assert_eq!(last.reason.as_deref(), Some("OOMKilled"), "{last:?}");
    assert_eq!(last.exit_code, 137, "{last:?}");
    assert!(status.restart_count >= 1);
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_at_the_end_of_its_grace_period() {
    let (pods, node) = node_pods("node-grace").await;
    let spec = pod(
        "stubborn",
        node,
        json!({
            "terminationGracePeriodSeconds": 5,
            "containers": [container("app", "trap '' TERM; while true; do sleep 1; done")],
        }),
    );
    let name = run(&pods, &spec).await;

    let deletion = delete_and_follow(&pods, &name).await;
    let took = uptime() - deletion.deleted_at;
    let end = terminated(&deletion.gone);
    let metadata = deletion.requested.metadata;
    let grace = metadata.deletion_grace_period_seconds;
    let deletion = metadata.deletion_timestamp.expect("a deletionTimestamp");
    let finished = end.finished_at.clone().expect("a finishedAt");
    // deletionTimestamp is the delete request's time plus the grace period.
    let after_deadline = finished.0.duration_since(deletion.0).as_secs_f64();
    println!(
        "deletionTimestamp={} deletionGracePeriodSeconds={grace:?} finishedAt={} \
         exitCode={} pod gone {took:.2} s after the delete",
        deletion.0, finished.0, end.exit_code
    );
    assert_eq!(grace, Some(5));
    assert_eq!(end.exit_code, 137, "SIGKILL: {end:?}");
    // Timestamps have whole seconds.
    assert!(
        (-1.0..=2.0).contains(&after_deadline),
        "killed {after_deadline} s after the deadline"
    );
    assert!((5.0..10.0).contains(&took), "gone after {took} s");
}

/// A process that writes the uptime at which `signal` arrived as its termination
/// message, runs `drain` (shell) and exits 0; `prelude` runs first. `wait` returns at
/// once on a trapped signal.
fn signal_clock(signal: &str, prelude: &str, drain: &str) -> Value {
    let trap = "read up rest </proc/uptime; echo \"$up\" >/dev/termination-log";
    container(
        "app",
        &format!("{prelude}\ntrap '{trap}; {drain}exit 0' {signal}\nsleep 3600 &\nwait"),
    )
}

/// Seconds from the delete to the signal a [`signal_clock`] container recorded, once it
/// exited 0 from its trap.
fn seconds_to_signal(deletion: &Deletion) -> f64 {
    let end = terminated(&deletion.gone);
    println!("{end:?}");
    assert_eq!(end.exit_code, 0, "exited from its signal trap: {end:?}");
    let signalled: f64 = end
        .message
        .as_deref()
        .and_then(|message| message.trim().parse().ok())
        .unwrap_or_else(|| panic!("the signal time as termination message: {end:?}"));
    signalled - deletion.deleted_at
}

#[tokio::test]
async fn a_prestop_sleep_delays_sigterm() {
    let (pods, node) = node_pods("node-prestop").await;
    let mut app = signal_clock("TERM", "", "");
    app["lifecycle"] = json!({"preStop": {"sleep": {"seconds": 3}}});
    let spec = pod("prestop", node, json!({"containers": [app]}));
    let name = run(&pods, &spec).await;

    let deletion = delete_and_follow(&pods, &name).await;
    let after = seconds_to_signal(&deletion);
    println!("SIGTERM {after:.2} s after the delete (preStop sleep 3 s)");
    // Not before the sleep ends; the upper bound leaves room for a busy machine.
    assert!(
        (3.0..6.0).contains(&after),
        "SIGTERM {after} s after the delete"
    );
}

/// `pod` as graceful's engine changes it under `policy` (a GracefulPolicy spec in YAML),
/// on a Kubernetes 1.36 apiserver: the same step the webhook takes.
fn governed(pod: Pod, policy: &str) -> Pod {
    let spec: GracefulPolicySpec = serde_yaml_ng::from_str(policy).expect("a policy spec");
    let mut value = serde_json::to_value(&pod).expect("a pod");
    let view: PodView = serde_json::from_value(value.clone()).expect("a pod view");
    let governing = Governing {
        name: "node",
        spec: &spec,
        services: &[],
        tuning: &[],
    };
    let caps = Capabilities::for_server_version(1, 36);
    let mutation = mutate(&view, Pointer::root(), governing, caps);
    let operations = mutation.patch.operations().expect("the patch reads");
    json_patch::patch(&mut value, &operations).expect("the patch applies");
    serde_json::from_value(value).expect("a governed pod")
}

/// Pod `name` made of `spec`, governed by `policy` (see [`governed`]), running on the
/// node in a namespace of its own; returns the pod as it was created.
async fn run_governed(name: &str, spec: Value, policy: &str) -> (Api<Pod>, Pod) {
    let (pods, node) = node_pods(&format!("node-{name}")).await;
    let spec = governed(pod(name, node, spec), policy);
    run(&pods, &spec).await;
    let created = pods.get(name).await.expect("the pod");
    (pods, created)
}

/// The terminated state of the container or init container `name`.
fn terminated_named<'a>(pod: &'a Pod, name: &str) -> &'a ContainerStateTerminated {
    let status = pod.status.as_ref();
    let statuses = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .chain(status.and_then(|s| s.init_container_statuses.as_ref()))
        .flatten();
    statuses
        .filter(|s| s.name == name)
        .find_map(|s| s.state.as_ref()?.terminated.as_ref())
        .unwrap_or_else(|| panic!("no terminated {name} in {:?}", pod.status))
}

/// A process that drains for `seconds` (a shell expression) after `signal`, then exits 0.
fn draining(name: &str, signal: &str, seconds: &str) -> Value {
    container(
        name,
        &format!("trap 'sleep {seconds}; exit 0' {signal}\nsleep 3600 &\nwait"),
    )
}

#[tokio::test]
async fn a_native_sidecar_outlives_an_app_that_uses_its_whole_budget() {
    let mut sidecar = draining("shipper", "TERM", "2");
    sidecar["restartPolicy"] = json!("Always");
    let (pods, created) = run_governed(
        "sidecar",
        json!({"terminationGracePeriodSeconds": 5, "initContainers": [sidecar],
               "containers": [draining("app", "TERM", "\"$GRACEFUL_SHUTDOWN_BUDGET_SECONDS\"")]}),
        "drain: {preStopSleepSeconds: 1, shutdownBudgetSeconds: 4, safetyMarginSeconds: 3}\n\
         sidecars: {shutdownSeconds: 4}\nenv: {}\n",
    )
    .await;
    let spec = created.spec.as_ref().expect("a spec");
    assert_eq!(
        spec.termination_grace_period_seconds,
        Some(12),
        "sleep 1 + budget 4 + sidecars 4 + margin 3"
    );
    let shipper = &spec.init_containers.as_ref().expect("init containers")[0];
    assert!(
        shipper.lifecycle.is_none(),
        "nothing is added to a native sidecar"
    );

    let deletion = delete_and_follow(&pods, "sidecar").await;
    let app = terminated_named(&deletion.gone, "app");
    let shipper = terminated_named(&deletion.gone, "shipper");
    println!("app {app:?}\nshipper {shipper:?}");
    assert_eq!(app.exit_code, 0, "the app drained and exited: {app:?}");
    assert_eq!(
        shipper.exit_code, 0,
        "the sidecar was not SIGKILLed: {shipper:?}"
    );
    let finished = |t: &ContainerStateTerminated| t.finished_at.clone().expect("a finishedAt").0;
    assert!(
        finished(shipper) >= finished(app),
        "the sidecar outlives the app"
    );
}

#[tokio::test]
async fn an_app_that_drains_for_its_budget_variable_exits_before_the_deadline() {
    let script = "\"$GRACEFUL_SHUTDOWN_BUDGET_SECONDS\"";
    let (pods, created) = run_governed(
        "budget",
        json!({"containers": [draining("app", "TERM", script)]}),
        "drain: {preStopSleepSeconds: 1, shutdownBudgetSeconds: 6, safetyMarginSeconds: 3}\n\
         env: {budget: [{name: SPRING_LIFECYCLE_TIMEOUT_PER_SHUTDOWN_PHASE, format: Duration}]}\n",
    )
    .await;
    let env = created.spec.as_ref().expect("a spec").containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let value = |name: &str| {
        env.iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value.clone())
    };
    assert_eq!(
        value("GRACEFUL_SHUTDOWN_BUDGET_SECONDS").as_deref(),
        Some("6")
    );
    assert_eq!(
        value("GRACEFUL_TERMINATION_GRACE_PERIOD_SECONDS").as_deref(),
        Some("30")
    );
    assert_eq!(
        value("SPRING_LIFECYCLE_TIMEOUT_PER_SHUTDOWN_PHASE").as_deref(),
        Some("6s")
    );

    let deletion = delete_and_follow(&pods, "budget").await;
    let end = terminated(&deletion.gone);
    let deadline = deletion
        .requested
        .metadata
        .deletion_timestamp
        .expect("a deletionTimestamp");
    let finished = end.finished_at.clone().expect("a finishedAt");
    println!("deadline {} finished {} {end:?}", deadline.0, finished.0);
    assert_eq!(
        end.exit_code, 0,
        "drained and exited, not SIGKILLed: {end:?}"
    );
    assert!(finished.0 < deadline.0, "exited before the deadline");
}

/// The stop signal through the real apiserver (with the ContainerStopSignals gate) and
/// node (containerd 2, which honours the CRI field): an app that ignores SIGTERM and
/// drains only on SIGQUIT gets SIGQUIT after the preStop sleep, drains and exits 0
/// within its budget; without the policy the same app is SIGKILLed.
#[tokio::test]
async fn an_app_that_drains_only_on_sigquit_gets_sigquit_from_the_policy() {
    let quit_only = || {
        json!({
            "terminationGracePeriodSeconds": 6,
            "containers": [signal_clock("QUIT", "trap '' TERM", "sleep 1; ")],
        })
    };
    let (pods, node) = node_pods("node-signal-without").await;
    run(&pods, &pod("signal", node, quit_only())).await;
    let without = delete_and_follow(&pods, "signal").await;
    let killed = terminated(&without.gone);
    assert_eq!(
        killed.exit_code, 137,
        "SIGKILLed without the policy: {killed:?}"
    );

    let (pods, created) = run_governed(
        "signal",
        quit_only(),
        "drain: {preStopSleepSeconds: 1, shutdownBudgetSeconds: 2, safetyMarginSeconds: 1, stopSignal: SIGQUIT}\n",
    )
    .await;
    let container = &created.spec.as_ref().expect("a spec").containers[0];
    let signal = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.clone());
    assert_eq!(
        signal.as_deref(),
        Some("SIGQUIT"),
        "the apiserver keeps the stop signal"
    );
    let reported = status_of(&created).and_then(|s| s.stop_signal.clone());
    assert_eq!(
        reported.as_deref(),
        Some("SIGQUIT"),
        "the runtime reports the signal it will send"
    );

    let deletion = delete_and_follow(&pods, "signal").await;
    let after = seconds_to_signal(&deletion);
    println!("SIGQUIT {after:.2} s after the delete (preStop sleep 1 s)");
    // Not before the sleep ends; the upper bound leaves room for a busy machine.
    assert!(
        (1.0..5.0).contains(&after),
        "SIGQUIT {after} s after the delete"
    );
    let deadline = deletion
        .requested
        .metadata
        .deletion_timestamp
        .expect("a deletionTimestamp");
    let finished = terminated(&deletion.gone).finished_at.clone();
    let finished = finished.expect("a finishedAt");
    assert!(finished.0 < deadline.0, "exited before the deadline");
}
