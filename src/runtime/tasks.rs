//! Every long-running task of `graceful run`, joined. Each is meant to run until the
//! process stops, so one that returns, fails or panics is the process failing: the
//! caller fails `/readyz`, shuts down as on SIGTERM and exits non-zero, and the
//! kubelet restarts it (as controller-rs joins its tasks and operator-rs `try_join!`s
//! them, rather than leave a detached task to die unnoticed).

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};

/// The tasks, by name.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<anyhow::Result<()>>,
    names: HashMap<Id, String>,
}

impl Tasks {
    pub fn spawn<F>(&mut self, name: impl Into<String>, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name.into());
    }

    /// Waits for the first task to end, and says which and how; pending forever when
    /// there are none.
    pub async fn first_ended(&mut self) -> anyhow::Error {
        let Some(joined) = self.set.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, outcome) = match joined {
            Ok((id, Ok(()))) => (id, "ended".to_owned()),
            Ok((id, Err(error))) => (id, format!("failed: {error:#}")),
            Err(error) if error.is_panic() => {
                let id = error.id();
                let message = panic_message(error.into_panic().as_ref());
                (id, format!("panicked: {message}"))
            }
            Err(error) => (error.id(), "was cancelled".to_owned()),
        };
        let name = self
            .names
            .remove(&id)
            .unwrap_or_else(|| "a task".to_owned());
        anyhow::anyhow!("{name} {outcome}")
    }
}

/// What a panic said, when it said it with a string.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_task_to_end_is_named_with_how() {
        let mut tasks = Tasks::default();
        tasks.spawn("forever", std::future::pending());
        tasks.spawn("crashes", async { panic!("boom") });
        let error = tasks.first_ended().await;
        assert_eq!(error.to_string(), "crashes panicked: boom");

        let mut tasks = Tasks::default();
        tasks.spawn("forever", std::future::pending());
        tasks.spawn("fails", async { Err(anyhow::anyhow!("forbidden")) });
        assert_eq!(
            tasks.first_ended().await.to_string(),
            "fails failed: forbidden"
        );

        let mut tasks = Tasks::default();
        tasks.spawn("returns", async { Ok(()) });
        assert_eq!(tasks.first_ended().await.to_string(), "returns ended");
    }
}
