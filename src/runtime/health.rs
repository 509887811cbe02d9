//! The registry `/readyz` reads: each component (a watch, the certificate) registers
//! itself, starts as not ready, and reports when it is ready or has failed. A failed
//! component stays failed: the process is on its way out (see [`super::tasks`]).

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Starting,
    Ready,
    Failed(String),
}

#[derive(Debug)]
struct Entry {
    name: String,
    state: State,
}

/// Every component, and whether the process is shutting down.
#[derive(Debug)]
pub struct Health {
    entries: Mutex<Vec<Entry>>,
    draining: Mutex<bool>,
    /// Bumped on every change, for [`Health::until_ready`].
    changed: watch::Sender<()>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            draining: Mutex::new(false),
            changed: watch::channel(()).0,
        }
    }
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ready,
    /// One line per reason: a component not ready yet or failed, or the shutdown.
    NotReady(Vec<String>),
}

impl Health {
    /// A new component, not ready until it says so.
    pub fn register(self: &Arc<Self>, name: impl Into<String>) -> Component {
        let name = name.into();
        self.entries().push(Entry {
            name: name.clone(),
            state: State::Starting,
        });
        self.changed.send_replace(());
        Component {
            health: self.clone(),
            name,
        }
    }

    /// Not ready from now on, whatever the components say.
    pub fn drain(&self) {
        *self.draining.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.send_replace(());
    }

    pub fn answer(&self) -> Answer {
        let mut reasons: Vec<String> = self
            .entries()
            .iter()
            .filter_map(|entry| match &entry.state {
                State::Ready => None,
                State::Starting => Some(format!("{}: not ready yet", entry.name)),
                State::Failed(why) => Some(format!("{}: failed: {why}", entry.name)),
            })
            .collect();
        if *self.draining.lock().unwrap_or_else(PoisonError::into_inner) {
            reasons.push("shutting down".to_owned());
        }
        if reasons.is_empty() {
            Answer::Ready
        } else {
            Answer::NotReady(reasons)
        }
    }

    pub fn state(&self, name: &str) -> Option<State> {
        self.entries()
            .iter()
            .find(|entry| entry.name == name)
            .map(|entry| entry.state.clone())
    }

    /// Waits until the component `name` is ready (forever if it never is).
    pub async fn until_ready(&self, name: &str) {
        let mut changes = self.changed.subscribe();
        while self.state(name) != Some(State::Ready) {
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    fn set(&self, name: &str, state: State) {
        let mut entries = self.entries();
        if let Some(entry) = entries.iter_mut().find(|entry| entry.name == name) {
            // A failure is final.
            if !matches!(entry.state, State::Failed(_)) {
                entry.state = state;
            }
        }
        drop(entries);
        self.changed.send_replace(());
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One component's handle on the registry.
#[derive(Debug, Clone)]
pub struct Component {
    health: Arc<Health>,
    name: String,
}

impl Component {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ready(&self) {
        self.health.set(&self.name, State::Ready);
    }

    pub fn failed(&self, why: impl std::fmt::Display) {
        self.health.set(&self.name, State::Failed(why.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_when_every_component_is_and_failures_are_final() {
        let health = Arc::new(Health::default());
        assert_eq!(health.answer(), Answer::Ready);
        let watch = health.register("watch");
        let certificate = health.register("certificate");
        assert_eq!(
            health.answer(),
            Answer::NotReady(vec![
                "watch: not ready yet".to_owned(),
                "certificate: not ready yet".to_owned()
            ])
        );
        watch.ready();
        certificate.ready();
        health.until_ready("watch").await;
        assert_eq!(health.answer(), Answer::Ready);
        watch.failed("the stream ended");
        watch.ready();
        assert_eq!(
            health.answer(),
            Answer::NotReady(vec!["watch: failed: the stream ended".to_owned()])
        );
        health.drain();
        let Answer::NotReady(reasons) = health.answer() else {
            panic!("ready while draining");
        };
        assert_eq!(reasons.last().map(String::as_str), Some("shutting down"));
    }
}
