//! Leader election through a real kube-apiserver: two replicas on one Lease, never
//! both leading; a crashed leader replaced once its lease expires, a stopped one at
//! once, and a leader cut off from the apiserver stepping down before anyone else
//! may take over.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use graceful::lease::{self, LeaseConfig};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const NAME: &str = "graceful-reconciler";

struct Replica {
    identity: String,
    leader: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Replica {
    fn start(client: kube::Client, namespace: &str, identity: &str, duration: Duration) -> Self {
        let config = LeaseConfig {
            duration,
            renew_every: Duration::from_millis(500),
            ..LeaseConfig::new(namespace, identity)
        };
        let (leader_tx, leader) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(lease::run(client, config, leader_tx, stop_rx));
        Self {
            identity: identity.to_owned(),
            leader,
            stop,
            task,
        }
    }

    fn leads(&self) -> bool {
        *self.leader.borrow()
    }
}

/// Waits for one of the two to lead; returns (leader, follower).
async fn elect(a: Replica, b: Replica) -> (Replica, Replica) {
    support::eventually("a leader", Duration::from_secs(20), || async {
        (a.leads() || b.leads()).then_some(())
    })
    .await;
    if a.leads() { (a, b) } else { (b, a) }
}

async fn holder(api: &Api<Lease>) -> (Option<String>, Option<i32>) {
    let spec = api
        .get(NAME)
        .await
        .expect("the lease")
        .spec
        .unwrap_or_default();
    (spec.holder_identity, spec.lease_transitions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_crashed_leader_is_replaced_once_its_lease_expires() {
    let client = support::cluster().client().await;
    let ns = support::namespace(&client, "lease").await;
    let duration = Duration::from_secs(3);
    let a = Replica::start(client.clone(), &ns, "a", duration);
    let b = Replica::start(client.clone(), &ns, "b", duration);
    let (leader, follower) = elect(a, b).await;

    // Through several renewals: exactly one leads, always the same.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert!(leader.leads(), "{} stopped leading", leader.identity);
        assert!(!follower.leads(), "{} leads too", follower.identity);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let api = Api::<Lease>::namespaced(client, &ns);
    assert_eq!(holder(&api).await, (Some(leader.identity.clone()), Some(0)));

    // A crash releases nothing: the follower waits out the lease.
    assert!(leader.leads());
    let crashed = Instant::now();
    leader.task.abort();
    support::eventually("the follower to lead", duration * 3, || async {
        follower.leads().then_some(())
    })
    .await;
    let waited = crashed.elapsed();
    // The leader led when it crashed, so it had renewed within the last 2 s (its
    // renewal deadline) and its lease outlived the crash by at least 1 s.
    assert!(
        waited >= Duration::from_secs(1),
        "took over after {waited:?}"
    );
    assert_eq!(
        holder(&api).await,
        (Some(follower.identity.clone()), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_releases_the_lease_to_the_other_at_once() {
    let client = support::cluster().client().await;
    let ns = support::namespace(&client, "lease").await;
    // Long enough that waiting it out would show.
    let duration = Duration::from_secs(15);
    let a = Replica::start(client.clone(), &ns, "a", duration);
    let b = Replica::start(client.clone(), &ns, "b", duration);
    let (leader, follower) = elect(a, b).await;

    let stopped = Instant::now();
    leader.stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), leader.task)
        .await
        .expect("the loop ends on stop")
        .expect("the loop does not panic");
    assert!(!*leader.leader.borrow(), "still leading after stop");
    support::eventually("the follower to lead", Duration::from_secs(4), || async {
        follower.leads().then_some(())
    })
    .await;
    let waited = stopped.elapsed();
    assert!(
        waited < Duration::from_secs(4),
        "took over after {waited:?}"
    );

    let api = Api::<Lease>::namespaced(client, &ns);
    assert_eq!(
        holder(&api).await,
        (Some(follower.identity.clone()), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_apiserver_steps_down_before_its_lease_expires() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let ns = support::namespace(&client, "lease").await;
    let duration = Duration::from_secs(3);

    // The first replica reaches the apiserver through a link the test can cut.
    let kubeconfig = Kubeconfig::read_from(&cluster.kubeconfig).expect("a kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a client config");
    let upstream = config
        .cluster_url
        .authority()
        .expect("the apiserver's address")
        .to_string();
    let link = Link::open(upstream).await;
    config.cluster_url = format!("https://{}", link.addr).parse().expect("a URL");
    let linked = kube::Client::try_from(config).expect("a client");

    let a = Replica::start(linked, &ns, "a", duration);
    support::eventually(
        "the first replica to lead",
        Duration::from_secs(20),
        || async { a.leads().then_some(()) },
    )
    .await;
    let b = Replica::start(client, &ns, "b", duration);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.leads() && !b.leads());

    // Requests now hang: no error tells the leader, only the clock.
    let cut = Instant::now();
    link.cut.send_replace(true);
    let mut stepped_down = None;
    while !b.leads() {
        assert!(cut.elapsed() < duration * 3, "nobody took over");
        if !a.leads() && stepped_down.is_none() {
            stepped_down = Some(cut.elapsed());
        }
        assert!(!(a.leads() && b.leads()), "both lead");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took_over = cut.elapsed();
    let stepped_down = stepped_down.expect("the cut-off leader stepped down first");
    assert!(
        stepped_down <= Duration::from_secs(2) + Duration::from_millis(300),
        "stepped down after {stepped_down:?}"
    );
    assert!(
        stepped_down < took_over,
        "stepped down after {stepped_down:?}, taken over after {took_over:?}"
    );
    a.task.abort();
    b.task.abort();
}

/// A TCP relay to the apiserver that, once cut, forwards nothing more and leaves
/// every connection hanging, as a partitioned network does.
struct Link {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Link {
    async fn open(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("its address");
        let (cut, is_cut) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut is_cut = is_cut.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if !*is_cut.borrow() {
                        let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let relay = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                        tokio::select! {
                            _ = relay => return,
                            _ = is_cut.wait_for(|&cut| cut) => {}
                        }
                    }
                    // Hold the connection open, silent, until the test ends.
                    std::future::pending::<()>().await;
                });
            }
        });
        Self { addr, cut }
    }
}
