//! graceful's own CA through a real kube-apiserver: `graceful run` without certificate
//! files creates the Secret, injects its CA into the webhook configuration, and the
//! apiserver calls it over TLS; a renewal forced by a short validity rotates the chain
//! while a client keeps creating pods, and every one of them is mutated.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;

use support::graceful::{Graceful, Load, ca_bundles, labelled_namespace, register_webhook};

fn data(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_mints_injects_and_rotates_its_ca_while_pods_keep_being_mutated() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let label = format!("certs-{}", std::process::id());
    let name = format!("graceful-test-{label}");
    let graceful = Graceful::with_own_ca(cluster, "certs", &name, &["--cert-validity", "60s"]);

    // The Secret holds the chain it serves.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret = secrets.get(&name).await.expect("the Secret is created");
    let first_ca = data(&secret, "ca.crt").expect("a CA certificate");
    assert!(data(&secret, "tls.crt").is_some() && data(&secret, "tls.key").is_some());

    // A webhook configuration registered without a caBundle gets graceful's CA.
    register_webhook(cluster, &name, &[graceful.webhook_port], None, &label);
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    support::eventually("the CA in the caBundle", Duration::from_secs(20), || {
        let (configs, name, first_ca) = (&configs, &name, &first_ca);
        async move { (ca_bundles(configs, name).await == [first_ca.clone()]).then_some(()) }
    })
    .await;

    // The apiserver verifies graceful with it: a pod is mutated.
    let namespace = labelled_namespace(cluster, &client, "certs", &label).await;
    cluster.apply_ok(&namespace, support::POLICY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    support::graceful::first_mutated(&pods, "web").await;

    // Renewal at two thirds of 60 s, while pods keep coming.
    let load = Load::start(&pods, 2);
    let started = Instant::now();
    let rotated = support::eventually("a rotated chain", Duration::from_secs(90), || {
        let (secrets, configs, name, first_ca) = (&secrets, &configs, &name, &first_ca);
        async move {
            let secret = secrets.get(name).await.ok()?;
            let ca = data(&secret, "ca.crt")?;
            let settled = ca != *first_ca
                && data(&secret, "previous-ca.crt").is_none()
                && data(&secret, "next-ca.crt").is_none();
            (settled && ca_bundles(configs, name).await == [ca.clone()]).then_some(ca)
        }
    })
    .await;
    // A little more load on the new chain alone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (bad, created) = load.stop().await;
    assert!(bad.is_empty(), "{} of {created} pods: {bad:?}", bad.len());
    assert!(
        created > 100,
        "only {created} pods in {:?}",
        started.elapsed()
    );
    assert_ne!(rotated, first_ca);
    for step in ["created", "next_published", "switched", "previous_retired"] {
        let sample = format!("graceful_certificate_steps_total{{step=\"{step}\"}}");
        assert_eq!(graceful.metric(&sample), Some(1.0), "{step}");
    }
    assert_eq!(
        graceful.metric("graceful_tls_reloads_total{result=\"ok\"}"),
        Some(2.0),
        "the first chain, then the second, without a restart"
    );

    drop(graceful);
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &name]);
    cluster.kubectl_ok(&["delete", "secret", "-n", "default", &name]);
    cluster.kubectl_ok(&["delete", "namespace", &namespace, "--wait=false"]);
}
