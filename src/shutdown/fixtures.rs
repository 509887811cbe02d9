//! Container statuses as the kubelet reports them, for the tests of what reads them.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// `seconds` after a fixed moment (when a deletion began, in the shutdown tests).
pub fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(1_000_000 + seconds).expect("a valid time"))
}

pub fn terminated(exit_code: i32, reason: &str, finished: i64) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            reason: Some(reason.into()),
            finished_at: Some(at(finished)),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    }
}

pub fn running() -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning::default()),
        ..ContainerState::default()
    }
}

/// The status of container `app`.
pub fn status(
    state: ContainerState,
    last: Option<ContainerState>,
    restarts: i32,
) -> ContainerStatus {
    ContainerStatus {
        name: "app".into(),
        state: Some(state),
        last_state: last,
        restart_count: restarts,
        ..ContainerStatus::default()
    }
}
