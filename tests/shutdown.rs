//! graceful's own graceful shutdown, through a real kube-apiserver: SIGTERM in the
//! middle of a burst of pod creations fails /readyz at once, every admission the
//! apiserver sends meanwhile is answered, the Lease is released and the process exits
//! 0 well inside a pod's grace period; its logs are JSON lines throughout.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::Value;

use support::graceful::{Graceful, Launch, Load, labelled_namespace, lease_holder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_answers_every_review_releases_the_lease_and_exits_0() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let label = format!("shutdown-{}", std::process::id());
    let delay = Duration::from_secs(4);
    let mut graceful = Graceful::launch(
        cluster,
        &Launch {
            name: "shutdown",
            cert_files: true,
            args: &["--shutdown-delay", "4s", "--log-format", "json"],
            ..Launch::default()
        },
    );
    graceful.wait_ready();
    let config = graceful.register_for(cluster, &label);
    let namespace = labelled_namespace(cluster, &client, "shutdown", &label).await;
    cluster.apply_ok(&namespace, support::POLICY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    support::graceful::first_mutated(&pods, "web").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    support::eventually(
        "graceful holding its lease",
        Duration::from_secs(20),
        || {
            let (leases, graceful) = (&leases, &graceful);
            async move {
                let holder = lease_holder(leases, &graceful.lease).await?;
                graceful.holds(&holder).then_some(())
            }
        },
    )
    .await;

    let load = Load::start(&pods, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    graceful.terminate();
    let terminated = Instant::now();
    let before = load.created();
    support::eventually("/readyz failing", Duration::from_millis(500), || {
        let ready = graceful.ready();
        async move { (!ready).then_some(()) }
    })
    .await;
    // The apiserver keeps calling, as endpoints take a moment to drop a pod: inside the
    // delay every admission is still answered.
    tokio::time::sleep_until((terminated + delay - Duration::from_secs(1)).into()).await;
    let (bad, created) = load.stop().await;
    assert!(bad.is_empty(), "{} of {created} pods: {bad:?}", bad.len());
    assert!(
        created > before + 10,
        "{} pods after SIGTERM",
        created - before
    );

    let status = graceful
        .wait_exit(Duration::from_secs(15))
        .expect("graceful exits");
    let took = terminated.elapsed();
    assert!(status.success(), "{status}\n{}", graceful.log());
    assert!(
        took < delay + Duration::from_secs(3),
        "exited after {took:?}"
    );
    assert_eq!(
        lease_holder(&leases, &graceful.lease).await,
        None,
        "lease released"
    );

    let log = graceful.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let said = |what: &str| {
        lines
            .iter()
            .any(|line| line["message"].as_str() == Some(what))
    };
    assert!(said("released the lease"), "{log}");
    assert!(said("stopped"), "{log}");

    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &config]);
    cluster.kubectl_ok(&["delete", "namespace", &namespace, "--wait=false"]);
}
