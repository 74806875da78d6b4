#!/usr/bin/env bash
# Side-by-side CPU per request of two usher builds, or of one build under two
# environments. Both serve at once in front of the same nginx upstream; wrk
# rounds alternate between them, and the order flips every round. The script
# prints the medians of CPU time per request and of requests/s, and B/A.
# BENCHMARKS.md's "side by side" figures are measured this way. A change of
# 1-2% shows here, where bench/proxy.sh's run-to-run noise would hide it;
# swapping A and B in a second run tells a real difference from an ordering
# effect. Loopback only; bounded (ROUNDS x DURATION x 2 s + start-up).
#
#   bash bench/ab.sh A_BIN B_BIN                # signed in (MODE=auth, the default)
#   MODE=open bash bench/ab.sh A_BIN B_BIN      # signed out, every path public
#   ENV_B="RUST_LOG=info,usher::access=off" bash bench/ab.sh BIN BIN
#   ROUNDS=8 DURATION=5 CONNS=64                # the defaults
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] && [ -x "$1" ] && [ -x "$2" ] || {
  echo "usage: bash bench/ab.sh A_BIN B_BIN (two usher executables; ENV_A/ENV_B add environment)" >&2
  exit 64
}
A_BIN=$(readlink -f "$1"); B_BIN=$(readlink -f "$2")
ROUNDS=${ROUNDS:-8}; DURATION=${DURATION:-5}; CONNS=${CONNS:-64}; MODE=${MODE:-auth}
case "$MODE" in auth | open) ;; *) echo "MODE must be auth or open" >&2; exit 64 ;; esac
(( DURATION * 2 < 55 )) || { echo "DURATION must be under 28 s: both halves of a round must end before the session cookie's refresh is due" >&2; exit 64; }

. bench/common.sh
bench_install wrk

bench_workdir usher-ab
UP_PORT=$(free_port); A_PORT=$(free_port); B_PORT=$(free_port); OTHER=$(free_port)
SBX_PORT=$(sandbox_port)
bench_upstream "$UP_PORT"
if [ "$MODE" = auth ]; then
  bench_usher_configs "$OTHER" "$A_PORT" "$UP_PORT" "$SBX_PORT"; BASE=$WORK/usher-auth.toml
else
  bench_usher_configs "$A_PORT" "$OTHER" "$UP_PORT" "$SBX_PORT"; BASE=$WORK/usher.toml
fi
# B: the same config on its own port and state directory.
sed "s/127.0.0.1:$A_PORT\"/127.0.0.1:$B_PORT\"/; s|^dir = \"\\(.*\\)\"|dir = \"\\1-b\"|" "$BASE" > "$WORK/b.toml"

"${SERVICE[@]}" "$A_BIN" sandbox --port "$SBX_PORT" > "$WORK/sandbox.log" 2>&1 & PIDS+=($!)
wait_port "$UP_PORT"; wait_port "$SBX_PORT"
# shellcheck disable=SC2086 # ENV_A/ENV_B are lists of VAR=value words.
env RUST_LOG=info ${ENV_A:-} "${SERVICE[@]}" "$A_BIN" serve -c "$BASE" > "$WORK/a.log" 2>&1 & A_PID=$!; PIDS+=($A_PID)
# shellcheck disable=SC2086
env RUST_LOG=info ${ENV_B:-} "${SERVICE[@]}" "$B_BIN" serve -c "$WORK/b.toml" > "$WORK/b.log" 2>&1 & B_PID=$!; PIDS+=($B_PID)
wait_port "$A_PORT"; wait_port "$B_PORT"

# One session cookie serves both: same secret, stateless cookie store. A browser
# stores the refreshed cookie usher sends about once a minute; wrk does not, and
# with a cookie older than that every request would re-issue it. So each round
# (A and B) starts from a fresh sign-in, as in bench/proxy.sh.
HDR=()
fresh_cookie() {
  if [ "$MODE" = auth ]; then
    local cookie
    cookie=$(sign_in "$A_PORT")
    HDR=(-H "$cookie")
  fi
}
fresh_cookie
for port in "$A_PORT" "$B_PORT"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "${HDR[@]}" "http://127.0.0.1:$port/1k.bin")
  [ "$code" = 200 ] || { echo "usher on $port answered $code, not 200; see $WORK" >&2; exit 1; }
  wrk -t2 -c"$CONNS" -d2s "${HDR[@]}" "http://127.0.0.1:$port/1k.bin" > /dev/null
done

RESULTS="$WORK/ab.tsv"
: > "$RESULTS"
run_one() { # name port pid
  local before after out
  before=$(cpu_ns "$3")
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" "${HDR[@]}" "http://127.0.0.1:$2/1k.bin")
  after=$(cpu_ns "$3")
  python3 - "$1" "$before" "$after" "$out" >> "$RESULTS" <<'PY'
import re, sys
name, before, after, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
errs = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
if errs: sys.exit(f"{name}: {errs.group(1)} non-2xx responses; the comparison is invalid")
reqs = int(re.search(r'(\d+) requests in', out).group(1))
rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
print(f"{name}\t{rps:.0f}\t{(after - before) / reqs / 1000:.3f}")
PY
}

for r in $(seq "$ROUNDS"); do
  fresh_cookie
  if (( r % 2 )); then run_one A "$A_PORT" "$A_PID"; run_one B "$B_PORT" "$B_PID"
  else run_one B "$B_PORT" "$B_PID"; run_one A "$A_PORT" "$A_PID"; fi
  echo "round $r/$ROUNDS done" >&2
done

echo "A: $A_BIN ${ENV_A:-}"
echo "B: $B_BIN ${ENV_B:-}"
python3 - "$RESULTS" "$MODE" "$ROUNDS" "$DURATION" <<'PY'
import statistics, sys
rows = [l.split('\t') for l in open(sys.argv[1]).read().splitlines() if l]
print(f"{sys.argv[2]}, {sys.argv[3]} rounds of {sys.argv[4]} s each, alternating")
med = {}
for n in 'AB':
    cpu = [float(r[2]) for r in rows if r[0] == n]
    rps = [float(r[1]) for r in rows if r[0] == n]
    med[n] = (statistics.median(cpu), statistics.median(rps))
    print(f"{n}: CPU {med[n][0]:.2f} us/req (rounds {', '.join(f'{c:.2f}' for c in cpu)}), {med[n][1]:.0f} req/s")
print(f"B/A: CPU/req {med['B'][0] / med['A'][0]:.3f}, req/s {med['B'][1] / med['A'][1]:.3f}")
PY
