#!/usr/bin/env bash
# Builds the usher that ships: the release build optimized with the committed
# profile of usher's own hot paths, pgo/usher.profdata (profile-guided
# optimization). Output: target/pgo/release/usher. The container image
# (deploy/Dockerfile) and bench/proxy.sh use it.
#
# Why: the request path crosses hyper, http, tokio and usher; laid out by the
# profile, its hot code fits the instruction cache about twice as well. Per
# signed-in request that was 25% fewer instructions and 12-14% less CPU than the
# plain `cargo build --release` (BENCHMARKS.md), which stays what the tests and
# `cargo run --release -- demo` use.
#
# The profile outlives code changes: a function changed since it was recorded
# loses its profile (rustc warns "hash mismatch") and is built as in a plain
# release build; everything else, dependencies included, keeps it. Re-record it
# with `bash bench/pgo.sh` after changing the request path or a dependency.
#
#   bash deploy/build.sh                  # ~5 min on two cores
#   cargo build flags pass through:       bash deploy/build.sh --locked
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=$PWD/pgo/usher.profdata
[ -s "$PROFILE" ] || { echo "no profile at $PROFILE; record one with: bash bench/pgo.sh" >&2; exit 1; }
# A stale profile still builds; say which files lost their profile guidance.
stale_rc=0
stale=$(bash deploy/pgo-sources.sh check 2>/dev/null) || stale_rc=$?
case $stale_rc in
  0) ;;
  1)
    echo "warning: pgo/usher.profdata was recorded before these files changed; their" >&2
    echo "functions build without profile guidance (re-record: bash bench/pgo.sh):" >&2
    echo "$stale" | sed 's/^/  /' >&2
    ;;
  *) echo "warning: no pgo/sources.sha256, so whether pgo/usher.profdata is current is unknown (re-record: bash bench/pgo.sh)" >&2 ;;
esac
# A stale profile is expected between recordings; its per-function notes are noise.
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PROFILE -Cllvm-args=-no-pgo-warn-mismatch" \
  cargo build --release --quiet --bin usher --target-dir target/pgo "$@"
echo "target/pgo/release/usher"
