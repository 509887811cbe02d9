//! The variables that tell governed containers their shutdown budget. Pure.

use crate::api::{GracefulPolicySpec, PreStopAction};

pub const SLEEP: &str = "GRACEFUL_PRESTOP_SLEEP_SECONDS";
pub const BUDGET: &str = "GRACEFUL_SHUTDOWN_BUDGET_SECONDS";
pub const GRACE: &str = "GRACEFUL_TERMINATION_GRACE_PERIOD_SECONDS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub value: String,
}

/// The variables `spec` gives a governed container of a pod whose grace period will be
/// `grace`; none unless the policy asks.
pub fn wanted(spec: &GracefulPolicySpec, grace: i64) -> Vec<Variable> {
    let Some(env) = &spec.env else {
        return Vec::new();
    };
    let budget = spec.drain.budget;
    let sleep = match spec.drain.pre_stop {
        PreStopAction::None => 0,
        _ => budget.pre_stop_sleep_seconds,
    };
    let standard = [
        (SLEEP, sleep),
        (BUDGET, budget.shutdown_budget_seconds),
        (GRACE, grace),
    ];
    let standard = standard
        .into_iter()
        .filter(|_| env.standard)
        .map(|(name, seconds)| Variable {
            name: name.to_owned(),
            value: seconds.to_string(),
        });
    let extra = env.budget.iter().map(|variable| Variable {
        name: variable.name.clone(),
        value: variable.format.write(budget.shutdown_budget_seconds),
    });
    standard.chain(extra).collect()
}
