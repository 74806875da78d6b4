#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's callgrind
# on a live proxy under wrk: usher signed out, usher signed in, and the hyper
# floor (examples/hyper_floor.rs), all in front of the same nginx upstream.
#
# Why: CPU time per request moves 2-3% from run to run on a shared 2-core
# machine, more than most single optimizations are worth. An instruction count
# repeats to about 0.1% whatever else the machine is doing, so it tells whether
# a change removed work; bench/proxy.sh then tells what that is worth in time.
# It does not see cache misses, contention between cores or the kernel.
#
#   bash bench/instructions.sh              # 8 s measured per contender
#   DURATION=15 bash bench/instructions.sh
#
# Loopback only; bounded in time (3 x (start-up + 4 s warm-up + DURATION)).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}

. bench/common.sh
bench_install wrk valgrind

# The plain release build unless USHER_BIN names another (the shipped one:
# USHER_BIN=target/pgo/release/usher after bash deploy/build.sh).
[ -n "${USHER_BIN:-}" ] || cargo build --release --quiet
cargo build --release --quiet --example hyper_floor
USHER=$(realpath "${USHER_BIN:-target/release/usher}")
FLOOR=$PWD/target/release/examples/hyper_floor

bench_workdir usher-instr
# Each contender listens on the same port in turn.
UP_PORT=$(free_port); PX_PORT=$(free_port); SBX_PORT=$(sandbox_port)
bench_upstream "$UP_PORT"
"$USHER" sandbox --port "$SBX_PORT" > "$WORK/sandbox.log" 2>&1 & PIDS+=($!)
wait_port "$UP_PORT"; wait_port "$SBX_PORT"
bench_usher_configs "$PX_PORT" "$PX_PORT" "$UP_PORT" "$SBX_PORT"

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
measure() { # name command...
  local name=$1; shift
  local out="$WORK/cg-$name.out"
  RUST_LOG=info valgrind --tool=callgrind --callgrind-out-file="$out" "$@" > "$WORK/$name.log" 2>&1 &
  local pid=$!
  wait_port "$PX_PORT"
  local hdr=() cookie
  if [ "$name" = usher-auth ]; then cookie=$(sign_in "$PX_PORT"); hdr=(-H "$cookie"); fi
  code=$(curl -s -o /dev/null -w '%{http_code}' "${hdr[@]}" "http://127.0.0.1:$PX_PORT/1k.bin")
  [ "$code" = 200 ] || { echo "$name answered $code; see $WORK/$name.log" >&2; exit 1; }
  wrk -t1 -c8 -d4s "${hdr[@]}" "http://127.0.0.1:$PX_PORT/1k.bin" > /dev/null
  callgrind_control -z "$pid" > /dev/null 2>&1
  local res
  res=$(wrk -t1 -c8 -d"${DURATION}s" "${hdr[@]}" "http://127.0.0.1:$PX_PORT/1k.bin")
  callgrind_control -d "$pid" > /dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local reqs dump ir
  reqs=$(echo "$res" | grep -o '[0-9]* requests in' | cut -d' ' -f1)
  # The dump made after zeroing holds exactly the measured window.
  dump=$(ls "$out".* | sort -t. -k3 -n | head -1)
  ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
  echo -e "$name\t$reqs\t$ir" >> "$RESULTS"
  echo "$name done" >&2
}

measure usher "$USHER" serve -c "$WORK/usher.toml"
measure usher-auth "$USHER" serve -c "$WORK/usher-auth.toml"
measure floor "$FLOOR" "127.0.0.1:$PX_PORT" "127.0.0.1:$UP_PORT"

python3 - "$RESULTS" "$DURATION" <<'PY'
import sys
path, dur = sys.argv[1:]
rows = {n: (int(r), int(i)) for n, r, i in (l.split('\t') for l in open(path).read().split('\n') if l.strip())}
print(f"callgrind, wrk -t1 -c8, {dur} s measured after a 4 s warm-up, 1 KiB file, nginx upstream")
print(f"{'proxy':<12}{'requests':>10}{'instructions/request':>22}")
for name, (reqs, ir) in rows.items():
    print(f"{name:<12}{reqs:>10}{ir / reqs:>22,.0f}")
f = rows['floor'][1] / rows['floor'][0]
for name in ('usher', 'usher-auth'):
    per = rows[name][1] / rows[name][0]
    print(f"{name} over the floor: {per - f:,.0f} instructions per request ({per / f:.2f}x)")
PY
