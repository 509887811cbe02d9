//! What graceful recommends for a policy's drain from what it measured, and the rule by
//! which `tuning: Auto` follows those recommendations. Pure: the measurements, the
//! policy and the clock in; the recommendations and the values new pods get out.
//!
//! The recommendations:
//! - **preStopSleepSeconds** = the 95th percentile of the endpoint propagation lag
//!   (`status.propagation`) + `recommend.dataPlaneAllowanceSeconds`, rounded up;
//! - **shutdownBudgetSeconds** = what `status.shutdown` recommends (the longest shutdown
//!   plus a fifth, rounded up; twice the budget when a container was SIGKILLed);
//!
//! each only once `recommend.minObservations` deletions (or shutdowns) were measured.
//!
//! # The Auto control rule
//!
//! Each value (the sleep, the budget) is decided on its own, every time the status is
//! computed, from the value Auto gives now (`A`, none before its first step) and the
//! recommendation (`R`):
//!
//! 1. No recommendation (too few observations): nothing changes. Before Auto's first
//!    step, new pods get the policy's own value.
//! 2. The target is `T = clamp(max(R, floor), min, max)` with the policy's `auto`
//!    bounds; the floor is what the containers were measured to need (the longest
//!    shutdown, rounded up, for the budget; 0 for the sleep), so that Auto never
//!    shortens a grace period below it unless the bound `max` says so.
//! 3. The first step sets `A = T`.
//! 4. Afterwards `A` changes at most once per `auto.intervalSeconds`.
//! 5. Up at once: `T > A` sets `A = T` (a longer drain only costs time).
//! 6. Down only past a dead band: `T < A - band(A)` sets `A = T`, with
//!    `band(A) = max(1, ceil(A / 4))`; anything in between keeps `A`.
//!
//! So `A` always lies within the bounds, moves at most once in an interval (so is
//! monotone within it), and never oscillates under noise: while recommendations stay
//! within `[c, c + band(c)]`, `A` only rises, and never above `c + band(c)` (a fall
//! would need `T < A - band(A) <= c`). The property tests below check all three.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    Advice, AutoValue, AutoValues, Bounds, Drain, GracefulPolicyStatus, PropagationStats,
    Recommendations, ShutdownStats, Tuning,
};

/// The recommended sleep.
pub fn sleep_advice(propagation: Option<&PropagationStats>, drain: &Drain) -> Advice {
    let needed = drain.recommend.min_observations;
    let allowance = drain.recommend.data_plane_allowance_seconds;
    match propagation {
        Some(stats) if stats.observed >= needed => Advice {
            seconds: Some((stats.p95_seconds + allowance as f64).ceil() as i64),
            reason: format!(
                "p95 endpoint propagation {:.2} s over {} deletions + {allowance} s data-plane allowance, rounded up",
                stats.p95_seconds, stats.observed
            ),
        },
        stats => too_few(stats.map_or(0, |s| s.observed), needed, "deletions"),
    }
}

/// The recommended budget.
pub fn budget_advice(shutdown: Option<&ShutdownStats>, drain: &Drain) -> Advice {
    let needed = drain.recommend.min_observations;
    match shutdown {
        Some(stats) if stats.observed >= needed => {
            let plus_a_fifth = (stats.max_seconds * 1.2).ceil() as i64;
            let reason = if stats.recommended_budget_seconds > plus_a_fifth.max(1) {
                format!(
                    "twice the budget: a container was SIGKILLed at its deadline (longest measured {:.1} s of {})",
                    stats.max_seconds, stats.observed
                )
            } else {
                format!(
                    "longest shutdown {:.1} s of {} measured + a fifth, rounded up",
                    stats.max_seconds, stats.observed
                )
            };
            Advice {
                seconds: Some(stats.recommended_budget_seconds),
                reason,
            }
        }
        stats => too_few(stats.map_or(0, |s| s.observed), needed, "shutdowns"),
    }
}

fn too_few(observed: i64, needed: i64, what: &str) -> Advice {
    Advice {
        seconds: None,
        reason: format!("{observed} of {needed} {what} measured: too few to recommend"),
    }
}

/// Both recommendations; none with `tuning: Fixed`.
pub fn recommendations(
    drain: &Drain,
    propagation: Option<&PropagationStats>,
    shutdown: Option<&ShutdownStats>,
) -> Option<Recommendations> {
    (drain.tuning != Tuning::Fixed).then(|| Recommendations {
        pre_stop_sleep_seconds: sleep_advice(propagation, drain),
        shutdown_budget_seconds: budget_advice(shutdown, drain),
    })
}

/// How one value is steered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    pub bounds: Bounds,
    /// What the containers were measured to need.
    pub floor: i64,
    pub interval_seconds: i64,
}

/// One step of the control rule (see the module's documentation): the value Auto
/// gives after `previous`, with the recommendation `advice`, at `now`.
pub fn step(
    previous: Option<&AutoValue>,
    advice: &Advice,
    control: Control,
    now: &Time,
) -> Option<AutoValue> {
    let Some(recommended) = advice.seconds else {
        return previous.cloned();
    };
    let target = control.bounds.clamp(recommended.max(control.floor));
    let reason = if target == recommended {
        advice.reason.clone()
    } else {
        format!(
            "{}; {recommended} s, bounded to {}-{} s",
            advice.reason, control.bounds.min, control.bounds.max
        )
    };
    let set = || {
        Some(AutoValue {
            seconds: target,
            changed_at: now.clone(),
            reason: reason.clone(),
        })
    };
    let Some(previous) = previous else {
        return set();
    };
    let current = previous.seconds;
    let since = now.0.as_second() - previous.changed_at.0.as_second();
    let moves = target > current || target < current - band(current);
    if since >= control.interval_seconds && moves {
        set()
    } else {
        Some(previous.clone())
    }
}

/// The dead band below the current value that a recommendation must fall through
/// before Auto lowers the value.
pub fn band(current: i64) -> i64 {
    (current.saturating_add(3) / 4).max(1)
}

/// The values Auto gives after this status computation; `None` outside Auto.
pub fn auto_values(
    drain: &Drain,
    recommendations: Option<&Recommendations>,
    shutdown: Option<&ShutdownStats>,
    previous: Option<&AutoValues>,
    now: &Time,
) -> Option<AutoValues> {
    if drain.tuning != Tuning::Auto {
        return None;
    }
    let recommendations = recommendations?;
    let previous = previous.cloned().unwrap_or_default();
    let auto = &drain.auto;
    let measured_need = shutdown.map_or(0, |s| s.max_seconds.ceil() as i64);
    let values = AutoValues {
        pre_stop_sleep_seconds: step(
            previous.pre_stop_sleep_seconds.as_ref(),
            &recommendations.pre_stop_sleep_seconds,
            Control {
                bounds: auto.pre_stop_sleep_seconds,
                floor: 0,
                interval_seconds: auto.interval_seconds,
            },
            now,
        ),
        shutdown_budget_seconds: step(
            previous.shutdown_budget_seconds.as_ref(),
            &recommendations.shutdown_budget_seconds,
            Control {
                bounds: auto.shutdown_budget_seconds,
                floor: measured_need,
                interval_seconds: auto.interval_seconds,
            },
            now,
        ),
    };
    (values != AutoValues::default()).then_some(values)
}

/// The drain new pods get: the policy's, with the values Auto set in `status` while the
/// policy is in Auto; and for the pod's record, one line per value Auto set.
pub fn effective(drain: &Drain, status: Option<&GracefulPolicyStatus>) -> (Drain, Vec<String>) {
    let mut effective = drain.clone();
    let mut lines = Vec::new();
    let auto = status.and_then(|s| s.auto.as_ref());
    let Some(auto) = auto.filter(|_| drain.tuning == Tuning::Auto) else {
        return (effective, lines);
    };
    let budget = &mut effective.budget;
    for (field, value, own) in [
        (
            "preStopSleepSeconds",
            &auto.pre_stop_sleep_seconds,
            &mut budget.pre_stop_sleep_seconds,
        ),
        (
            "shutdownBudgetSeconds",
            &auto.shutdown_budget_seconds,
            &mut budget.shutdown_budget_seconds,
        ),
    ] {
        if let Some(value) = value {
            lines.push(format!(
                "tuning Auto: {field} {} instead of the policy's {own}, since {}: {}",
                value.seconds, value.changed_at.0, value.reason
            ));
            *own = value.seconds;
        }
    }
    (effective, lines)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;
    use proptest::prelude::*;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + seconds).unwrap())
    }

    fn advice(seconds: Option<i64>) -> Advice {
        Advice {
            seconds,
            reason: "measured".to_owned(),
        }
    }

    const CONTROL: Control = Control {
        bounds: Bounds { min: 1, max: 60 },
        floor: 0,
        interval_seconds: 600,
    };

    fn propagation(observed: i64, p95: f64) -> PropagationStats {
        PropagationStats {
            observed,
            p95_seconds: p95,
            max_seconds: p95,
            ..PropagationStats::default()
        }
    }

    #[test]
    fn the_sleep_is_the_lags_p95_plus_the_allowance_once_enough_was_measured() {
        let drain = Drain::default();
        let found = sleep_advice(Some(&propagation(12, 0.41)), &drain);
        assert_eq!(found.seconds, Some(4));
        assert_eq!(
            found.reason,
            "p95 endpoint propagation 0.41 s over 12 deletions + 3 s data-plane allowance, rounded up"
        );
        let few = sleep_advice(Some(&propagation(2, 0.41)), &drain);
        assert_eq!(few.seconds, None);
        assert_eq!(
            few.reason,
            "2 of 5 deletions measured: too few to recommend"
        );
        assert_eq!(sleep_advice(None, &drain).seconds, None);
    }

    #[test]
    fn the_budget_says_when_it_was_doubled() {
        let drain = Drain::default();
        let stats = |max: f64, recommended| ShutdownStats {
            observed: 6,
            max_seconds: max,
            recommended_budget_seconds: recommended,
            ..ShutdownStats::default()
        };
        let plain = budget_advice(Some(&stats(17.8, 22)), &drain);
        assert_eq!(plain.seconds, Some(22));
        assert_eq!(
            plain.reason,
            "longest shutdown 17.8 s of 6 measured + a fifth, rounded up"
        );
        let doubled = budget_advice(Some(&stats(20.0, 50)), &drain);
        assert!(
            doubled.reason.starts_with("twice the budget"),
            "{doubled:?}"
        );
    }

    #[test]
    fn fixed_recommends_nothing_and_only_auto_steers() {
        let mut drain = Drain {
            tuning: Tuning::Fixed,
            ..Drain::default()
        };
        assert_eq!(recommendations(&drain, None, None), None);
        drain.tuning = Tuning::Recommend;
        let found = recommendations(&drain, Some(&propagation(5, 0.2)), None).unwrap();
        assert_eq!(found.pre_stop_sleep_seconds.seconds, Some(4));
        assert_eq!(
            auto_values(&drain, Some(&found), None, None, &at(0)),
            None,
            "Recommend never steers"
        );
        drain.tuning = Tuning::Auto;
        let auto = auto_values(&drain, Some(&found), None, None, &at(0)).unwrap();
        assert_eq!(auto.pre_stop_sleep_seconds.unwrap().seconds, 4);
        assert_eq!(auto.shutdown_budget_seconds, None, "too few shutdowns");
    }

    #[test]
    fn the_first_step_acts_then_one_change_per_interval() {
        let first = step(None, &advice(Some(4)), CONTROL, &at(0)).unwrap();
        assert_eq!((first.seconds, first.changed_at.clone()), (4, at(0)));
        let soon = step(Some(&first), &advice(Some(9)), CONTROL, &at(599)).unwrap();
        assert_eq!(soon, first, "within the interval");
        let later = step(Some(&first), &advice(Some(9)), CONTROL, &at(600)).unwrap();
        assert_eq!((later.seconds, later.changed_at), (9, at(600)));
        assert_eq!(
            step(None, &advice(None), CONTROL, &at(0)),
            None,
            "nothing before enough was measured"
        );
    }

    #[test]
    fn down_only_past_the_dead_band_and_never_below_the_measured_need() {
        let current = step(None, &advice(Some(20)), CONTROL, &at(0)).unwrap();
        assert_eq!(band(20), 5);
        let kept = step(Some(&current), &advice(Some(15)), CONTROL, &at(600)).unwrap();
        assert_eq!(kept.seconds, 20, "15 is within the band of 20");
        let lowered = step(Some(&current), &advice(Some(14)), CONTROL, &at(600)).unwrap();
        assert_eq!(lowered.seconds, 14);
        let floored = Control {
            floor: 18,
            ..CONTROL
        };
        let needed = step(Some(&current), &advice(Some(2)), floored, &at(600)).unwrap();
        assert_eq!(
            needed.seconds, 20,
            "18 is what was measured, within the band"
        );
    }

    #[test]
    fn a_bound_clamps_and_says_so() {
        let value = step(None, &advice(Some(90)), CONTROL, &at(0)).unwrap();
        assert_eq!(value.seconds, 60);
        assert_eq!(value.reason, "measured; 90 s, bounded to 1-60 s");
    }

    #[test]
    fn pods_get_autos_values_with_a_line_each_and_only_in_auto() {
        let auto = AutoValues {
            pre_stop_sleep_seconds: Some(AutoValue {
                seconds: 4,
                changed_at: at(0),
                reason: "p95 ...".to_owned(),
            }),
            shutdown_budget_seconds: None,
        };
        let status = GracefulPolicyStatus {
            auto: Some(auto),
            ..GracefulPolicyStatus::default()
        };
        let mut drain = Drain {
            tuning: Tuning::Auto,
            ..Drain::default()
        };
        drain.budget.pre_stop_sleep_seconds = 0;
        let (effective_drain, lines) = effective(&drain, Some(&status));
        assert_eq!(effective_drain.budget.pre_stop_sleep_seconds, 4);
        assert_eq!(effective_drain.budget.shutdown_budget_seconds, 20);
        assert_eq!(
            lines,
            [
                "tuning Auto: preStopSleepSeconds 4 instead of the policy's 0, since 2027-01-15T08:00:00Z: p95 ..."
            ]
        );
        drain.tuning = Tuning::Recommend;
        let (fixed, lines) = effective(&drain, Some(&status));
        assert_eq!((fixed, lines), (drain, Vec::new()));
    }

    /// Recommendations (some missing) at increasing times.
    fn steps() -> impl Strategy<Value = Vec<(Option<i64>, i64)>> {
        prop::collection::vec((prop::option::weighted(0.9, 0..200i64), 0..400i64), 1..60)
    }

    fn run(control: Control, inputs: &[(Option<i64>, i64)]) -> Vec<AutoValue> {
        let mut now = 0;
        let mut value = None;
        let mut values = Vec::new();
        for (recommended, wait) in inputs {
            now += wait;
            value = step(value.as_ref(), &advice(*recommended), control, &at(now));
            values.extend(value.clone());
        }
        values
    }

    proptest! {
        #[test]
        fn bounded(inputs in steps(), min in 0..30i64, span in 0..60i64, floor in 0..100i64) {
            let control = Control { bounds: Bounds { min, max: min + span }, floor, ..CONTROL };
            for value in run(control, &inputs) {
                prop_assert!((min..=min + span).contains(&value.seconds), "{value:?}");
                prop_assert!(value.seconds >= floor.min(min + span));
            }
        }

        #[test]
        fn at_most_one_change_per_interval(inputs in steps(), interval in 0..1000i64) {
            let control = Control { interval_seconds: interval, ..CONTROL };
            let values = run(control, &inputs);
            let changes: Vec<i64> = values
                .windows(2)
                .filter(|pair| pair[0].seconds != pair[1].seconds)
                .map(|pair| pair[1].changed_at.0.as_second())
                .collect();
            let first = values.first().map(|v| v.changed_at.0.as_second());
            for pair in std::iter::once(first).flatten().chain(changes.iter().copied()).collect::<Vec<_>>().windows(2) {
                prop_assert!(pair[1] - pair[0] >= interval, "{pair:?}");
            }
        }

        #[test]
        fn stable_under_noise(level in 1..50i64, noise in prop::collection::vec((0.0..=1.0f64, 0..2000i64), 1..80)) {
            // Recommendations anywhere within [c, c + band(c)].
            let inputs: Vec<(Option<i64>, i64)> = noise
                .iter()
                .map(|(x, wait)| (Some(level + (x * band(level) as f64).floor() as i64), *wait))
                .collect();
            let values = run(CONTROL, &inputs);
            for pair in values.windows(2) {
                prop_assert!(pair[1].seconds >= pair[0].seconds, "never down: {pair:?}");
            }
            for value in &values {
                prop_assert!(value.seconds <= level + band(level));
            }
        }
    }
}
