//! Two `graceful run` replicas through a real kube-apiserver, as the Deployment runs
//! them: they share one certificate chain (minted once), both answer admissions,
//! exactly one writes policy status, and when it is killed the other takes over within
//! the lease duration.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

use graceful::lease::LeaseConfig;
use support::graceful::{
    Graceful, Launch, governed_pod, labelled_namespace, lease_holder, mutated_for, register_webhook,
};

const STATUS_WRITES: &str = "graceful_status_writes_total{result=\"ok\"}";

fn writes(graceful: &Graceful) -> f64 {
    graceful.metric(STATUS_WRITES).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_a_chain_both_admit_one_writes_status_and_the_other_takes_over() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let label = format!("ha-{}", std::process::id());
    let name = format!("graceful-test-{label}");
    let args = [
        "--tls-secret",
        &name,
        "--webhook-config-name",
        &name,
        "--tls-san",
        "127.0.0.1",
    ];
    let lease = format!("graceful-test-{label}");
    let launch = |replica| {
        Graceful::launch(
            cluster,
            &Launch {
                name: replica,
                lease: Some(&lease),
                args: &args,
                ..Launch::default()
            },
        )
    };
    // Started together: both find no Secret, one chain is minted.
    let (a, b) = (launch("ha-a"), launch("ha-b"));
    a.wait_ready();
    b.wait_ready();
    let created = |g: &Graceful| {
        g.metric("graceful_certificate_steps_total{step=\"created\"}")
            .unwrap_or(0.0)
    };
    assert_eq!(created(&a) + created(&b), 1.0, "one chain for both");

    // One webhook per replica: every pod goes through both.
    register_webhook(
        cluster,
        &name,
        &[a.webhook_port, b.webhook_port],
        None,
        &label,
    );
    let namespace = labelled_namespace(cluster, &client, "ha", &label).await;
    cluster.apply_ok(&namespace, support::POLICY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    support::graceful::first_mutated(&pods, "web").await;
    for replica in [&a, &b] {
        let answered = replica
            .metric("graceful_admission_duration_seconds_count")
            .unwrap_or(0.0);
        assert!(answered > 0.0, "replica on {}", replica.webhook_port);
    }

    // Exactly one writes status: the lease holder.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let first = support::eventually("a leader", Duration::from_secs(20), || {
        let leases = &leases;
        let lease = &a.lease;
        async move { lease_holder(leases, lease).await }
    })
    .await;
    let (mut leader, follower) = if a.holds(&first) { (a, b) } else { (b, a) };
    assert!(leader.holds(&first), "{first} is one of them");
    support::eventually("the leader writing status", Duration::from_secs(20), || {
        let wrote = writes(&leader);
        async move { (wrote > 0.0).then_some(()) }
    })
    .await;
    assert_eq!(writes(&follower), 0.0, "the follower writes no status");

    // The leader dies without handing over: the follower takes the lease once it
    // expires, and writes status from then on.
    leader.kill();
    let killed = Instant::now();
    support::eventually("the follower leading", Duration::from_secs(30), || {
        let (leases, follower) = (&leases, &follower);
        async move {
            let holder = lease_holder(leases, &follower.lease).await?;
            follower.holds(&holder).then_some(())
        }
    })
    .await;
    let took = killed.elapsed();
    // The leader last renewed at most one renew interval before it died, so the lease
    // expires between `duration - renew` and `duration` after the kill: the follower must
    // not take it earlier (two writers), and takes it at its next attempt after expiry.
    // One more interval of slack covers a loaded machine's scheduling, not the protocol.
    let (duration, renew) = (
        LeaseConfig::DEFAULT_DURATION,
        LeaseConfig::DEFAULT_RENEW_EVERY,
    );
    assert!(took >= duration - renew, "took over early, after {took:?}");
    assert!(took <= duration + 2 * renew, "took over after {took:?}");
    cluster.apply_ok(
        &namespace,
        &support::POLICY.replace("name: web", "name: web2"),
    );
    support::eventually(
        "the new leader writing status",
        Duration::from_secs(20),
        || {
            let wrote = writes(&follower);
            async move { (wrote > 0.0).then_some(()) }
        },
    )
    .await;

    // Admissions go on through the replica left.
    let pod = pods
        .create(&PostParams::default(), &governed_pod("after", "web"))
        .await
        .expect("a pod");
    assert!(mutated_for(&pod, "web"), "{:?}", pod.metadata);

    drop(follower);
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &name]);
    cluster.kubectl_ok(&["delete", "secret", "-n", "default", &name]);
    cluster.kubectl_ok(&["delete", "namespace", &namespace, "--wait=false"]);
}
