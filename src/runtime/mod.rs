//! The shape every long-running part of `graceful run` shares: each kind is watched
//! once by [`watch::drive`] and its events are fanned out to every [`watch::Index`]
//! that needs them; every task runs under [`tasks::Tasks`], which turns a task that
//! ends or panics into a failure the process acts on; and `/readyz` reads the
//! [`health::Health`] registry those parts report to.

pub mod health;
pub mod memory;
pub mod tasks;
pub mod watch;
