use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;

const ME: &str = "graceful-0_1";
const OTHER: &str = "graceful-1_1";
const DURATION: Duration = Duration::from_secs(15);

/// `seconds` after T = 1000 s after the epoch.
fn at(seconds: f64) -> Timestamp {
    Timestamp::from_microsecond(1_000_000_000 + (seconds * 1e6) as i64).unwrap()
}

fn micro(seconds: f64) -> Option<MicroTime> {
    Some(MicroTime(at(seconds)))
}

/// A lease held by `holder` since 0 s, last renewed at `renewed` s, for 15 s, after
/// two transitions.
fn held(holder: &str, renewed: f64) -> Lease {
    Lease {
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: micro(0.0),
            renew_time: micro(renewed),
            lease_transitions: Some(2),
            ..LeaseSpec::default()
        }),
        ..Lease::default()
    }
}

fn with(mut lease: Lease, change: impl FnOnce(&mut LeaseSpec)) -> Lease {
    change(lease.spec.as_mut().unwrap());
    lease
}

/// The spec a takeover at `now` s writes over `transitions` earlier ones.
fn taken_over(now: f64, transitions: i32) -> Claim {
    Claim::TakeOver(LeaseSpec {
        holder_identity: Some(ME.into()),
        lease_duration_seconds: Some(15),
        acquire_time: micro(now),
        renew_time: micro(now),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    })
}

#[test]
fn no_lease_is_created_held_by_me() {
    assert_eq!(
        decide(None, ME, at(5.0), DURATION),
        Claim::Create(LeaseSpec {
            holder_identity: Some(ME.into()),
            lease_duration_seconds: Some(15),
            acquire_time: micro(5.0),
            renew_time: micro(5.0),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        })
    );
}

#[test]
fn my_lease_is_renewed_keeping_its_acquire_time_and_transitions() {
    let lease = held(ME, 4.0);
    assert_eq!(
        decide(Some(&lease), ME, at(6.0), DURATION),
        Claim::Renew(LeaseSpec {
            renew_time: micro(6.0),
            ..lease.spec.unwrap()
        })
    );
}

#[test]
fn my_expired_lease_is_still_mine_to_renew() {
    // Nobody took it while I could not renew: no transition.
    let decision = decide(Some(&held(ME, 4.0)), ME, at(60.0), DURATION);
    assert!(matches!(decision, Claim::Renew(_)), "{decision:?}");
}

#[test]
fn renewal_writes_my_duration_and_fills_a_missing_acquire_time() {
    let lease = with(held(ME, 4.0), |spec| {
        spec.acquire_time = None;
        spec.lease_duration_seconds = Some(60);
    });
    let Claim::Renew(spec) = decide(Some(&lease), ME, at(6.0), DURATION) else {
        panic!("not a renewal");
    };
    assert_eq!(spec.acquire_time, micro(6.0));
    assert_eq!(spec.lease_duration_seconds, Some(15));
}

#[test]
fn their_live_lease_is_followed() {
    assert_eq!(
        decide(Some(&held(OTHER, 4.0)), ME, at(10.0), DURATION),
        Claim::Follow {
            holder: OTHER.into()
        }
    );
}

#[test]
fn their_expired_lease_is_taken_over() {
    assert_eq!(
        decide(Some(&held(OTHER, 4.0)), ME, at(20.0), DURATION),
        taken_over(20.0, 3)
    );
}

#[test]
fn a_lease_is_live_up_to_its_expiry_inclusive() {
    let lease = held(OTHER, 4.0);
    let expiry = at(19.0);
    assert_eq!(
        decide(Some(&lease), ME, expiry, DURATION),
        Claim::Follow {
            holder: OTHER.into()
        }
    );
    let just_after = expiry + SignedDuration::from_micros(1);
    assert!(matches!(
        decide(Some(&lease), ME, just_after, DURATION),
        Claim::TakeOver(_)
    ));
}

#[test]
fn expiry_counts_the_holders_duration_not_mine() {
    let long = with(held(OTHER, 4.0), |spec| {
        spec.lease_duration_seconds = Some(60)
    });
    assert!(matches!(
        decide(Some(&long), ME, at(30.0), DURATION),
        Claim::Follow { .. }
    ));
    // Without one (or with nonsense), mine applies.
    for seconds in [None, Some(0), Some(-5)] {
        let lease = with(held(OTHER, 4.0), |spec| {
            spec.lease_duration_seconds = seconds
        });
        assert!(matches!(
            decide(Some(&lease), ME, at(18.0), DURATION),
            Claim::Follow { .. }
        ));
        assert!(matches!(
            decide(Some(&lease), ME, at(20.0), DURATION),
            Claim::TakeOver(_)
        ));
    }
}

#[test]
fn a_released_lease_is_taken_over_at_once() {
    let lease = Lease {
        spec: Some(released(held(OTHER, 4.0).spec.unwrap(), at(5.0))),
        ..Lease::default()
    };
    assert_eq!(
        decide(Some(&lease), ME, at(5.5), DURATION),
        taken_over(5.5, 3)
    );
    let emptied = with(held(OTHER, 4.0), |spec| {
        spec.holder_identity = Some(String::new())
    });
    assert_eq!(
        decide(Some(&emptied), ME, at(5.5), DURATION),
        taken_over(5.5, 3)
    );
}

#[test]
fn releasing_keeps_the_history() {
    let spec = released(held(ME, 4.0).spec.unwrap(), at(5.0));
    assert_eq!(spec.holder_identity, None);
    assert_eq!(spec.renew_time, micro(5.0));
    assert_eq!(spec.acquire_time, micro(0.0));
    assert_eq!(spec.lease_transitions, Some(2));
}

#[test]
fn a_holder_without_a_renew_time_never_proved_it_is_alive() {
    let lease = with(held(OTHER, 4.0), |spec| spec.renew_time = None);
    assert_eq!(
        decide(Some(&lease), ME, at(5.0), DURATION),
        taken_over(5.0, 3)
    );
}

#[test]
fn a_lease_without_a_spec_is_taken_over() {
    let lease = Lease::default();
    assert_eq!(
        decide(Some(&lease), ME, at(5.0), DURATION),
        taken_over(5.0, 1)
    );
}

#[test]
fn a_renew_time_ahead_of_my_clock_is_live() {
    assert!(matches!(
        decide(Some(&held(OTHER, 30.0)), ME, at(10.0), DURATION),
        Claim::Follow { .. }
    ));
}

#[test]
fn a_takeover_keeps_fields_it_does_not_own() {
    let lease = with(held(OTHER, 4.0), |spec| {
        spec.strategy = Some("OldestEmulationVersion".into());
    });
    let Claim::TakeOver(spec) = decide(Some(&lease), ME, at(20.0), DURATION) else {
        panic!("not a takeover");
    };
    assert_eq!(spec.strategy.as_deref(), Some("OldestEmulationVersion"));
}

#[test]
fn lease_seconds_round_up_to_at_least_one() {
    assert_eq!(lease_seconds(Duration::from_secs(15)), 15);
    assert_eq!(lease_seconds(Duration::from_millis(1500)), 2);
    assert_eq!(lease_seconds(Duration::ZERO), 1);
    assert_eq!(lease_seconds(Duration::from_secs(u64::MAX)), i32::MAX);
}

#[test]
fn a_leader_steps_down_before_its_lease_expires_and_retries_in_time() {
    let config = LeaseConfig::new("graceful-system", ME);
    assert_eq!(config.name, "graceful-reconciler");
    assert!(config.renew_deadline() < config.duration);
    assert_eq!(config.interval(), Duration::from_secs(2));
    let slow = LeaseConfig {
        renew_every: Duration::from_secs(20),
        ..config
    };
    assert_eq!(slow.interval(), Duration::from_secs(5));
}

#[test]
fn identity_prefers_the_pod_name_then_the_hostname() {
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(identity_from(some("web-0"), some("node"), 7), "web-0_7");
    assert_eq!(identity_from(None, some("node\n"), 7), "node_7");
    assert_eq!(identity_from(some(" "), some("node"), 7), "node_7");
    assert_eq!(identity_from(None, None, 7), "graceful_7");
}

#[test]
fn two_processes_have_different_identities() {
    assert_ne!(identity_from(None, None, 1), identity_from(None, None, 2));
    assert!(identity().ends_with(&format!("_{}", std::process::id())));
}
