#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the real peers the tests
# talk to (loopback only), then runs every unit and integration test.
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Peers: each install step is idempotent and bounded; tests that need a peer
# run only when USHER_PEERS=1 says the peers are installed.
bash tests/peers/install.sh
export USHER_PEERS=1

# Deployment artefacts: Kubernetes manifests against their schemas (offline),
# Dockerfile and systemd unit properties, and the shipped usher.toml through
# `usher check-config` and a short `usher serve` smoke run.
cargo build --quiet
USHER_BIN=target/debug/usher bash tests/deploy/validate.sh

# Benches are built by `cargo clippy --all-targets` in CI and run by hand (BENCHMARKS.md);
# they are not part of the test run (full-size workloads in a debug build).
cargo test --lib --bins --tests --no-fail-fast
