//! One status writer among replicas: a coordination.k8s.io/v1 Lease names the leader.
//!
//! Every replica serves admissions; only the holder of the lease writes policy status
//! and publishes Events. `decide` is the pure rule (lease in, what to write out);
//! [`run`] is the loop around it that reads, writes with optimistic concurrency and
//! publishes leadership on a watch channel.
//!
//! Expiry compares the holder's `renewTime` with this replica's clock, so it assumes
//! the replicas' clocks agree to well under the lease duration (NTP does that).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

#[cfg(test)]
mod tests;

/// Where the leader's lease lives and how it is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    /// The Lease object's name, shared by all replicas.
    pub name: String,
    /// This replica's name in `holderIdentity`; unique per process (see [`identity`]).
    pub identity: String,
    /// How long a lease lasts without renewal before another replica may take it.
    pub duration: Duration,
    /// How often the lease is read and renewed (or, by a follower, checked). Kept
    /// under a third of `duration` so a leader gets several tries before it must step
    /// down.
    pub renew_every: Duration,
}

impl LeaseConfig {
    pub const DEFAULT_NAME: &'static str = "graceful-reconciler";
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(15);
    pub const DEFAULT_RENEW_EVERY: Duration = Duration::from_secs(2);

    /// The default lease (name, 15 s, renewed every 2 s) in `namespace`.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: Self::DEFAULT_NAME.to_owned(),
            identity: identity.into(),
            duration: Self::DEFAULT_DURATION,
            renew_every: Self::DEFAULT_RENEW_EVERY,
        }
    }

    /// How long a leader keeps leading without a successful renewal. Shorter than the
    /// lease so it stops writing before anyone else may start (client-go's 10 s of 15).
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    fn interval(&self) -> Duration {
        self.renew_every.min(self.renew_deadline() / 2)
    }
}

/// This process's holder identity: `$POD_NAME` (else the hostname), then the process
/// id, so two processes on one machine differ.
pub fn identity() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok());
    identity_from(std::env::var("POD_NAME").ok(), hostname, std::process::id())
}

fn identity_from(pod_name: Option<String>, hostname: Option<String>, pid: u32) -> String {
    let name = [pod_name, hostname]
        .into_iter()
        .flatten()
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "graceful".to_owned());
    format!("{name}_{pid}")
}

/// What to do with the lease as read.
#[derive(Debug, Clone, PartialEq)]
enum Claim {
    /// There is none: create it, held by me.
    Create(LeaseSpec),
    /// I hold it: write it back with a new renewTime.
    Renew(LeaseSpec),
    /// Nobody holds it (released, expired, never held): make it mine.
    TakeOver(LeaseSpec),
    /// `holder` holds a live lease: keep off.
    Follow { holder: String },
}

/// The rule every replica applies to the lease it read, at `now`. A lease is live
/// until `renewTime + leaseDurationSeconds` (`duration` when the lease has none),
/// inclusive; one without a renewTime was never proven live.
fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp, duration: Duration) -> Claim {
    let seconds = lease_seconds(duration);
    let Some(lease) = lease else {
        return Claim::Create(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        });
    };
    let current = lease.spec.clone().unwrap_or_default();
    let holder = current.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return Claim::Renew(LeaseSpec {
            lease_duration_seconds: Some(seconds),
            acquire_time: current.acquire_time.clone().or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            ..current
        });
    }
    if !holder.is_empty() {
        let held_for = current
            .lease_duration_seconds
            .filter(|&s| s > 0)
            .unwrap_or(seconds);
        let live = current.renew_time.as_ref().is_some_and(|renewed| {
            now.duration_since(renewed.0) <= SignedDuration::from_secs(held_for.into())
        });
        if live {
            return Claim::Follow {
                holder: holder.to_owned(),
            };
        }
    }
    Claim::TakeOver(LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(seconds),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(current.lease_transitions.unwrap_or(0).saturating_add(1)),
        ..current
    })
}

/// The lease as its holder gives it up: nobody holds it, so the next replica to look
/// takes it over without waiting for expiry.
fn released(spec: LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        renew_time: Some(MicroTime(now)),
        ..spec
    }
}

/// `leaseDurationSeconds` for `duration`: whole seconds, rounded up so others never
/// wait less than the holder counts on, and at least one.
fn lease_seconds(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds).unwrap_or(i32::MAX).max(1)
}

/// Holds the lease when it can, until `stop` turns true (or its sender is dropped),
/// publishing on `leader` whether this replica may write status; only changes are
/// sent. A leader that cannot renew for two thirds of the lease duration steps down
/// before its lease can expire. On stop it steps down, then releases the lease so
/// another replica takes over at once.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) {
    let span = tracing::info_span!(
        "lease",
        namespace = %config.namespace,
        name = %config.name,
        identity = %config.identity,
    );
    hold(client, config, leader, stop).instrument(span).await
}

enum Wake {
    Stop,
    RenewDeadline,
    Round(Result<Role, kube::Error>),
}

enum Role {
    /// I hold the lease, renewed by a write that began at `since`.
    Leader {
        since: Instant,
    },
    Follower {
        holder: String,
    },
}

async fn hold(
    client: Client,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api = Api::<Lease>::namespaced(client, &config.namespace);
    let stopped = async move {
        // A dropped sender cannot ask any more: stop too.
        let _ = stop.wait_for(|&stop| stop).await;
    };
    tokio::pin!(stopped);
    // When the last successful write that left me holding the lease began.
    let mut renewed: Option<Instant> = None;
    let mut next_round = Instant::now();
    loop {
        // A round hanging on a silent apiserver must not delay the step-down.
        let wake = tokio::select! {
            biased;
            () = &mut stopped => Wake::Stop,
            () = sleep_until(renewed.map(|at| at + config.renew_deadline())) => Wake::RenewDeadline,
            result = async {
                tokio::time::sleep_until(next_round).await;
                round(&api, &config).await
            } => Wake::Round(result),
        };
        match wake {
            Wake::Stop => break,
            Wake::RenewDeadline => {
                renewed = None;
                publish(&leader, false);
                tracing::warn!(
                    deadline = ?config.renew_deadline(),
                    "could not renew the lease in time; no longer leading"
                );
            }
            Wake::Round(result) => {
                next_round = Instant::now() + config.interval();
                match result {
                    Ok(Role::Leader { since }) => {
                        renewed = Some(since);
                        if publish(&leader, true) {
                            tracing::info!("leading");
                        }
                    }
                    Ok(Role::Follower { holder }) => {
                        renewed = None;
                        if publish(&leader, false) {
                            tracing::warn!(%holder, "no longer leading");
                        } else {
                            tracing::debug!(%holder, "following");
                        }
                    }
                    // Leadership stands until the renewal deadline.
                    Err(error) => tracing::warn!(%error, "could not read or write the lease"),
                }
            }
        }
    }
    // Stop writing first: once released, another replica may start at once.
    publish(&leader, false);
    // After a lease duration the lease has expired anyway.
    match tokio::time::timeout(config.duration, release(&api, &config)).await {
        Ok(Ok(true)) => tracing::info!("released the lease"),
        Ok(Ok(false)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not release the lease"),
        Err(_) => tracing::warn!("timed out releasing the lease"),
    }
}

/// One read and, unless following, one write. The write carries the resourceVersion
/// read, so of two replicas deciding on the same lease only one succeeds.
async fn round(api: &Api<Lease>, config: &LeaseConfig) -> Result<Role, kube::Error> {
    // Taken before the read: the lease can only have been renewed later than this.
    let since = Instant::now();
    let now = Timestamp::now();
    let current = api.get_opt(&config.name).await?;
    let spec = match decide(current.as_ref(), &config.identity, now, config.duration) {
        Claim::Follow { holder } => return Ok(Role::Follower { holder }),
        Claim::Create(spec) | Claim::Renew(spec) | Claim::TakeOver(spec) => Some(spec),
    };
    let written = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec,
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            lease.spec = spec;
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
        }
    };
    match written {
        Ok(_) => Ok(Role::Leader { since }),
        // Another replica wrote first (AlreadyExists on create, Conflict on replace).
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Role::Follower {
            holder: "another replica".to_owned(),
        }),
        Err(error) => Err(error),
    }
}

/// Gives up the lease if it names me (even if a write cut short by stop made it mine
/// unbeknown); whether it did.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(false);
    };
    let Some(spec) = lease.spec.take() else {
        return Ok(false);
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(false);
    }
    lease.spec = Some(released(spec, Timestamp::now()));
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        // Changed since the read: someone else took it already.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Sends `value` if it differs from the last one; whether it did.
fn publish(leader: &watch::Sender<bool>, value: bool) -> bool {
    leader.send_if_modified(|current| {
        let changed = *current != value;
        *current = value;
        changed
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
