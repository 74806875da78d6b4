#!/usr/bin/env bash
# Records pgo/usher.profdata, the profile of usher's own hot paths that
# deploy/build.sh builds the shipped binary with (profile-guided optimization),
# then runs deploy/build.sh. Re-run it after changing the request path or a
# dependency; commit the new profile and pgo/sources.sha256 with the change
# (deploy/build.sh warns about files changed since the recording).
#
# How: an instrumented build serves a loopback training load for about 30 s
# (signed in and signed out, small and 1 MiB bodies, redirects to sign-in,
# JSON 401s, real sign-ins through the sandbox Google), llvm-profdata merges
# the counts into a sparse profile (functions never run are left out: 1.5 MB
# instead of 9), and deploy/build.sh builds target/pgo/release/usher with it.
#
#   bash bench/pgo.sh                  # ~11 min on two cores
#
# llvm-profdata must read the raw profiles of rustc's own LLVM: taken from
# rustup's llvm-tools if installed, else Debian's llvm-19 (installed if missing;
# it reads rustc 1.95's LLVM 22 profiles).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

. bench/common.sh
bench_install wrk

find_profdata() {
  local sysroot c
  sysroot=$(rustc --print sysroot)
  for c in "$sysroot"/lib/rustlib/*/bin/llvm-profdata /usr/lib/llvm-2[0-9]/bin/llvm-profdata /usr/lib/llvm-19/bin/llvm-profdata; do
    [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}
PROFDATA=$(find_profdata || true)
if [ -z "$PROFDATA" ]; then
  echo "installing llvm-19 (llvm-profdata) from Debian..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends llvm-19) >/dev/null
  PROFDATA=$(find_profdata) || { echo "no llvm-profdata found; install rustup's llvm-tools or Debian's llvm-19" >&2; exit 1; }
fi

PROFILES=$ROOT/target/pgo-profiles
rm -rf "$PROFILES"; mkdir -p "$PROFILES"
echo "building the instrumented usher..." >&2
RUSTFLAGS="-Cprofile-generate=$PROFILES" cargo build --release --quiet --target-dir target/pgo-instrumented
TRAIN=$ROOT/target/pgo-instrumented/release/usher
# Build scripts ran instrumented too; only usher's serving counts.
rm -f "$PROFILES"/*.profraw

bench_workdir usher-pgo
UP_PORT=$(free_port); OPEN_PORT=$(free_port); AUTH_PORT=$(free_port); SBX_PORT=$(sandbox_port)
bench_upstream "$UP_PORT"
head -c 1048576 /dev/urandom > "$WORK/www/1m.bin"; chmod 644 "$WORK/www/1m.bin"
bench_usher_configs "$OPEN_PORT" "$AUTH_PORT" "$UP_PORT" "$SBX_PORT"
export LLVM_PROFILE_FILE="$PROFILES/usher-%p-%m.profraw"
"$TRAIN" sandbox --port "$SBX_PORT" > "$WORK/sandbox.log" 2>&1 & SBX_PID=$!; PIDS+=($SBX_PID)
RUST_LOG=info "$TRAIN" serve -c "$WORK/usher.toml" > "$WORK/usher.log" 2>&1 & OPEN_PID=$!; PIDS+=($OPEN_PID)
wait_port "$UP_PORT"; wait_port "$SBX_PORT"; wait_port "$OPEN_PORT"
RUST_LOG=info "$TRAIN" serve -c "$WORK/usher-auth.toml" > "$WORK/usher-auth.log" 2>&1 & AUTH_PID=$!; PIDS+=($AUTH_PID)
wait_port "$AUTH_PORT"

echo "training load..." >&2
for _ in 1 2 3 4 5; do sign_in "$AUTH_PORT" > /dev/null; done
COOKIE=$(sign_in "$AUTH_PORT")
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$COOKIE" "http://127.0.0.1:$AUTH_PORT/1k.bin")
[ "$code" = 200 ] || { echo "session cookie not accepted ($code); see $WORK" >&2; exit 1; }
auth=http://127.0.0.1:$AUTH_PORT open=http://127.0.0.1:$OPEN_PORT
wrk -t2 -c64 -d12s -H "$COOKIE" "$auth/1k.bin" > /dev/null
wrk -t2 -c64 -d6s "$open/1k.bin" > /dev/null
wrk -t2 -c16 -d4s -H "$COOKIE" "$auth/1m.bin" > /dev/null
wrk -t1 -c8 -d2s "$auth/1k.bin" > /dev/null                                  # 302 to sign-in
wrk -t1 -c8 -d2s -H 'Accept: application/json' "$auth/api/x" > /dev/null     # 401 JSON
wrk -t1 -c8 -d2s "$open/_usher/healthz" > /dev/null

# A clean stop writes the profiles.
kill -TERM "$OPEN_PID" "$AUTH_PID" "$SBX_PID"
wait "$OPEN_PID" "$AUTH_PID" "$SBX_PID" 2>/dev/null || true
ls "$PROFILES"/*.profraw > /dev/null 2>&1 || { echo "no profile was written; see $WORK" >&2; exit 1; }
# Sparse: only functions that ran; the rest are built as without a profile anyway.
mkdir -p pgo
"$PROFDATA" merge --sparse -o pgo/usher.profdata "$PROFILES"/*.profraw
bash deploy/pgo-sources.sh record
echo "recorded pgo/usher.profdata ($(du -h pgo/usher.profdata | cut -f1)) and the checksums of its sources (pgo/sources.sha256)" >&2

echo "building the optimized usher..." >&2
bash deploy/build.sh
