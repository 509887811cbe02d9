#!/usr/bin/env bash
# The reconciler at 10,000 governed pods (benches/reconcile_scale.rs): graceful's RSS
# after the initial list and settled, the time to that list, and the time from a pod
# status change to the policy condition showing it (p50/p95/p99/max).
#
# Builds first, then runs under the lock the other benchmarks take, so that no two
# measurements share the machine. Starts a control plane from e2e/ (or uses the one
# GRACEFUL_TEST_KUBECONFIG names) and stops it at the end.
#
#   benches/reconcile-scale.sh     # GRACEFUL_SCALE_PODS=10000 GRACEFUL_SCALE_SAMPLES=100
#                                  # GRACEFUL_SCALE_REPLICASETS=0
#                                  # GRACEFUL_SCALE_CONCURRENCY=32 GRACEFUL_BENCH_LOCK=...
set -euo pipefail
cd "$(dirname "$0")/.."

LOCK=${GRACEFUL_BENCH_LOCK:-/tmp/graceful-bench.lock}

[[ -n "${GRACEFUL_TEST_KUBECONFIG:-}" ]] || e2e/cluster build
cargo bench --bench reconcile_scale --no-run --quiet
echo "waiting for $LOCK" >&2
exec flock "$LOCK" cargo bench --bench reconcile_scale --quiet
