# Entry points; README.md names the two that matter: the demo and `make test`.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# A CI checkout is built once: incremental caches would only take disk.
ifdef CI
export CARGO_INCREMENTAL := 0
endif

.PHONY: demo test lint build cluster-build crds bench fuzz

# graceful's main job, shown end to end: a local cluster with a real node, graceful
# installed, an app rolled under load without and with a policy. Leaves the cluster up.
demo:
	e2e/demo

# Everything CI runs: formatting, lints, unit, property, golden and integration tests,
# the latter against a real kube-apiserver built from Go modules (e2e/) and a real
# node (kubelet, kube-proxy, containerd built from its module; Debian packages installed
# when missing).
test: lint cluster-build
	mkdir -p target
	tests/with-cluster cargo test --workspace --all-targets 2>&1 | tee target/test.log
	e2e/demo --check --quick 2>&1 | tee target/demo.log
	@awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "%d passed, %d failed\n", passed, failed }' target/test.log

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

build:
	cargo build --release

cluster-build:
	e2e/cluster deps
	e2e/cluster build

# Regenerate crds/ and the chart's copy after changing src/api (a test fails while they
# differ).
crds:
	cargo run -- crd > crds/graceful.dev_gracefulpolicies.yaml
	cp crds/graceful.dev_gracefulpolicies.yaml charts/graceful/crds/

bench:
	cargo bench --bench mutation

# The fuzz targets of tests/fuzz.rs at length (make test runs 1,500 cases of each).
FUZZ_CASES ?= 100000
fuzz:
	GRACEFUL_FUZZ_RANDOM=1 GRACEFUL_FUZZ_CASES=$(FUZZ_CASES) cargo test --release --test fuzz -- --nocapture
