//! graceful: a Kubernetes admission webhook and operator that makes pods shut down
//! without dropping requests, and names the ones that still do not.
//!
//! Pure decisions live in [`api`], [`resolve`], [`mutate`] and [`manifest`]; the
//! command line in [`cli`] is a thin edge around them.

pub mod api;
pub mod cli;
pub mod govern;
pub mod install;
pub mod json;
pub mod kinds;
pub mod lease;
pub mod manifest;
pub mod metrics;
pub mod mutate;
pub mod recommend;
pub mod reconcile;
pub mod resolve;
pub mod runtime;
pub mod shutdown;
pub mod stats;
pub mod tls;
pub mod tuning;
pub mod webhook;

/// mimalloc, not the system's malloc: an admission makes about 145 small allocations, and
/// glibc's took a sixth of its instructions (BENCHMARKS.md, "Admission"). Declared here,
/// not in `main`, so that the tests and benchmarks run with the allocator that ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
