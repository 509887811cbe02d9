#!/usr/bin/env bash
# Load benchmark of the webhook over TLS on loopback with keep-alive, side by side with
# the limit of its stack (examples/fixed_review_server.rs: axum + rustls answering a
# fixed AdmissionReview). Each server is pinned to one core, the load generator (oha)
# to the other. The highest throughput with 16 connections, in RUNS rounds of the limit
# then graceful, and the ratio of each round's pair (their median is the result); then
# each server's latency at a fixed 1,000 reviews/s, the median of RUNS runs. Each run
# lasts DURATION seconds, after a one-second warm-up run whose figures are dropped.
#
# Needs oha (`cargo install oha --locked`) and the local control plane of e2e/ (or
# GRACEFUL_TEST_KUBECONFIG naming a running cluster), since `graceful run` watches it.
#
#   benches/admission-load.sh            # DURATION=15 RUNS=3 RATE=1000 CONNECTIONS=16
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
RUNS=${RUNS:-3}
RATE=${RATE:-1000}
CONNECTIONS=${CONNECTIONS:-16}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
GRACEFUL_PORT=${GRACEFUL_PORT:-18443}
ADMIN_PORT=${ADMIN_PORT:-18080}
FIXED_PORT=${FIXED_PORT:-18444}

command -v oha >/dev/null || { echo "needs oha: cargo install oha --locked" >&2; exit 1; }
cargo build --release --quiet --bin graceful --example fixed_review_server
graceful=${CARGO_TARGET_DIR:-target}/release/graceful
fixed=${CARGO_TARGET_DIR:-target}/release/examples/fixed_review_server

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -n "${GRACEFUL_TEST_KUBECONFIG:-}" ]]; then
    kubeconfig=$GRACEFUL_TEST_KUBECONFIG
else
    out=$(e2e/cluster up --name "bench-$$" --owner-pid $$)
    kubeconfig=${out##*KUBECONFIG=}
fi
kubectl() { e2e/bin/kubectl --kubeconfig "$kubeconfig" "$@"; }

# The review's pod is in namespace shop, owned by ReplicaSet checkout-7d9f8b6c5, which
# names policy web: every review walks the owner cache and is patched.
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/gracefulpolicies.graceful.dev >/dev/null
kubectl create namespace shop --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n shop -f - >/dev/null <<'YAML'
apiVersion: graceful.dev/v1alpha1
kind: GracefulPolicy
metadata: {name: web}
spec:
  readiness: {periodSeconds: 2, failureThreshold: 1, timeoutSeconds: 1}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: checkout-7d9f8b6c5
  annotations: {graceful.dev/policy: web}
spec:
  replicas: 0
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec: {containers: [{name: app, image: registry.example/app:1.0}]}
YAML

"$fixed" cert "$work"
"$fixed" review >"$work/review.json"

KUBECONFIG=$kubeconfig RUST_LOG=warn taskset -c "$SERVER_CPU" "$graceful" run \
    --webhook-addr "127.0.0.1:$GRACEFUL_PORT" --admin-addr "127.0.0.1:$ADMIN_PORT" \
    --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key" &
pids+=($!)
taskset -c "$SERVER_CPU" "$fixed" serve "127.0.0.1:$FIXED_PORT" "$work/tls.crt" "$work/tls.key" &
pids+=($!)

admin_get() {
    exec 3<>"/dev/tcp/127.0.0.1/$ADMIN_PORT" || return 1
    printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&3
    cat <&3
    exec 3<&-
}
for _ in $(seq 100); do
    admin_get /readyz 2>/dev/null | grep -q '^HTTP/1.0 200' && break
    sleep 0.2
done
admin_get /readyz | grep -q '^HTTP/1.0 200' || { echo "graceful run is not ready" >&2; exit 1; }

# oha's JSON summary: requests/s, p50 and p99 in ms.
load() { # URL SECONDS [oha options...]
    local url=$1 seconds=$2
    shift 2
    taskset -c "$LOAD_CPU" oha --no-tui --insecure --output-format json -z "${seconds}s" \
        -m POST -H 'content-type: application/json' -D "$work/review.json" "$@" "$url" |
        python3 -c 'import json,sys; s=json.load(sys.stdin); p=s["latencyPercentiles"]; print("%.0f %.3f %.3f" % (s["summary"]["requestsPerSec"], p["p50"]*1e3, p["p99"]*1e3))'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The highest throughput: RUNS rounds, each measuring the limit and graceful one after
# the other (in turn first), so that each ratio compares two runs taken seconds apart:
# this machine's speed drifts by several percent within minutes.
max_runs() { # URL
    load "$1" 1 -c "$CONNECTIONS" >/dev/null
    load "$1" "$DURATION" -c "$CONNECTIONS" | awk '{print $1}'
}
fixed_url="https://127.0.0.1:$FIXED_PORT/mutate"
graceful_url="https://127.0.0.1:$GRACEFUL_PORT/mutate"
: >"$work/ratios"
for round in $(seq "$RUNS"); do
    if ((round % 2)); then
        f=$(max_runs "$fixed_url")
        g=$(max_runs "$graceful_url")
    else
        g=$(max_runs "$graceful_url")
        f=$(max_runs "$fixed_url")
    fi
    echo "$f" >>"$work/fixed-review.rps"
    echo "$g" >>"$work/graceful.rps"
    awk -v g="$g" -v f="$f" 'BEGIN {printf "%.4f\n", g / f}' >>"$work/ratios"
    printf 'round %s: limit %s, graceful %s reviews/s\n' "$round" "$f" "$g"
done

# The latency at a fixed rate, RUNS runs a server.
rated() { # URL
    local url=$1 runs=()
    for _ in $(seq "$RUNS"); do
        load "$url" 1 -c "$CONNECTIONS" -q "$RATE" >/dev/null
        runs+=("$(load "$url" "$DURATION" -c "$CONNECTIONS" -q "$RATE")")
    done
    printf '%s\n' "${runs[@]}" | awk '{print $2}' | median
    printf '%s\n' "${runs[@]}" | awk '{print $3}' | median
}

printf '%-28s %12s %14s %14s\n' server "max reviews/s" "p50 ms @$RATE/s" "p99 ms @$RATE/s"
for pair in "fixed-review $fixed_url" "graceful $graceful_url"; do
    read -r server url <<<"$pair"
    mapfile -t latency < <(rated "$url")
    printf '%-28s %12s %14s %14s\n' "$server" "$(median <"$work/$server.rps")" "${latency[0]}" "${latency[1]}"
done
printf 'graceful against the limit, round by round: %s\n' \
    "$(awk '{printf "%.0f%% ", 100 * $1}' "$work/ratios")"
median <"$work/ratios" | awk '{printf "graceful reaches %.0f%% of the limit'"'"'s throughput (the median round)\n", 100 * $1}'

# Every review must have been patched, none admitted unchanged by an error.
metrics=$(admin_get /metrics)
echo "$metrics" | grep -E '^graceful_admissions_total' || true
if echo "$metrics" | grep -qE '^graceful_admission_fail_open_total'; then
    echo "some reviews failed open" >&2
    exit 1
fi
