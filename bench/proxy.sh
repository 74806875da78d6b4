#!/usr/bin/env bash
# Load benchmark: usher vs nginx as reverse proxies in front of the same nginx
# upstream (1 KiB file), wrk -t2 -c64 --latency, rounds interleaved. Prints per
# proxy requests/s, p50, p99, CPU time per request (all threads, from
# /proc/PID/task/*/schedstat) and usher's RSS, then the median ratios usher/nginx.
# Loopback only; bounded in time (ROUNDS x DURATION x 4 + start-up).
#
# A third contender, "usher-auth", is the same usher with a signed-in session:
# every request carries a real session cookie (signed in through the sandbox
# Google provider), and usher decodes it and injects the identity headers and the
# signed assertion. It is compared with unauthenticated nginx proxy_pass.
#
# A fourth, "floor", is examples/hyper_floor.rs: the least a proxy on usher's
# stack (hyper 1, tokio, one runtime per core, pooled keep-alive upstreams) can
# do, with none of usher's work. usher minus floor is usher's own cost; floor
# against nginx is the stack's.
#
#   bash bench/proxy.sh                 # 5 rounds of 10 s
#   ROUNDS=7 DURATION=15 bash bench/proxy.sh
#   USHER_BIN=target/release/usher bash bench/proxy.sh   # the plain release build
#   BENCH_GROUPS=shared bash bench/proxy.sh   # all in one scheduling group (bench/common.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}

. bench/common.sh
bench_install wrk

# The shipped build (deploy/build.sh: release + the committed PGO profile) unless
# USHER_BIN names another, e.g. USHER_BIN=target/release/usher for the plain one.
USHER=${USHER_BIN:-target/pgo/release/usher}
[ -n "${USHER_BIN:-}" ] || bash deploy/build.sh > /dev/null
[ -x "$USHER" ] || { echo "no usher binary at $USHER" >&2; exit 1; }
cargo build --release --quiet --example hyper_floor
echo "usher binary: $USHER" >&2
FLOOR=target/release/examples/hyper_floor

bench_workdir usher-bench
UP_PORT=$(free_port); NGX_PORT=$(free_port); USH_PORT=$(free_port); AUTH_PORT=$(free_port); FLR_PORT=$(free_port)
SBX_PORT=$(sandbox_port)
mkdir -p "$WORK/ngx"
bench_upstream "$UP_PORT"

cat > "$WORK/ngx/nginx.conf" <<CONF
daemon off;
worker_processes auto;
pid $WORK/ngx/nginx.pid;
error_log $WORK/ngx/error.log warn;
events { worker_connections 4096; }
http {
  access_log $WORK/ngx/access.log;
  upstream backend { server 127.0.0.1:$UP_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGX_PORT reuseport;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
CONF

bench_usher_configs "$USH_PORT" "$AUTH_PORT" "$UP_PORT" "$SBX_PORT"

"${SERVICE[@]}" "$NGINX" -p "$WORK/ngx" -c "$WORK/ngx/nginx.conf" -e "$WORK/ngx/error.log" & NGX_PID=$!; PIDS+=($NGX_PID)
# The access log goes to a file, as nginx's does.
RUST_LOG=info "${SERVICE[@]}" "$USHER" serve -c "$WORK/usher.toml" > "$WORK/usher.log" 2>&1 & USH_PID=$!; PIDS+=($USH_PID)
"${SERVICE[@]}" "$USHER" sandbox --port "$SBX_PORT" > "$WORK/sandbox.log" 2>&1 & PIDS+=($!)
"${SERVICE[@]}" "$FLOOR" "127.0.0.1:$FLR_PORT" "127.0.0.1:$UP_PORT" > "$WORK/floor.log" 2>&1 & FLR_PID=$!; PIDS+=($FLR_PID)

wait_port "$UP_PORT"; wait_port "$NGX_PORT"; wait_port "$USH_PORT"; wait_port "$SBX_PORT"; wait_port "$FLR_PORT"
RUST_LOG=info "${SERVICE[@]}" "$USHER" serve -c "$WORK/usher-auth.toml" > "$WORK/usher-auth.log" 2>&1 & AUTH_PID=$!; PIDS+=($AUTH_PID)
wait_port "$AUTH_PORT"

# Sign in through the sandbox Google (non-interactive path) to get a session cookie.
# A browser stores the refreshed cookie usher sends about once a minute; wrk does
# not, so each authenticated round starts from a fresh sign-in (rounds are shorter
# than the refresh step) and measures the browser's steady state.
fresh_cookie() { COOKIE=$(sign_in "$AUTH_PORT"); }
fresh_cookie
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$COOKIE" "http://127.0.0.1:$AUTH_PORT/1k.bin")
[ "$code" = 200 ] || { echo "session cookie not accepted ($code)" >&2; exit 1; }

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
run_one() { # name port pid [header]
  local name=$1 port=$2 pid=$3 before after out
  local hdr=(); [ -n "${4:-}" ] && hdr=(-H "$4")
  before=$(cpu_ns "$pid")
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "http://127.0.0.1:$port/1k.bin")
  after=$(cpu_ns "$pid")
  python3 - "$name" "$before" "$after" "$out" >> "$RESULTS" <<'PY'
import re, sys
name, before, after, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def lat(label):
    m = re.search(r'^\s*' + label + r'\s+([\d.]+)(us|ms|s)\s*$', out, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == 'us' else v * 1000 if u == 's' else v
reqs = int(re.search(r'(\d+) requests in', out).group(1))
rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
errs = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
if errs: sys.exit(f"{name}: {errs.group(1)} non-2xx responses; the benchmark is invalid")
print(f"{name}\t{rps:.0f}\t{lat('50%'):.3f}\t{lat('99%'):.3f}\t{(after-before)/reqs/1000:.2f}")
PY
}

# Warm-up (pools, page cache), not recorded.
wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$NGX_PORT/1k.bin" >/dev/null
wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$USH_PORT/1k.bin" >/dev/null
wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$FLR_PORT/1k.bin" >/dev/null
wrk -t2 -c"$CONNS" -d2s -H "$COOKIE" "http://127.0.0.1:$AUTH_PORT/1k.bin" >/dev/null

for r in $(seq "$ROUNDS"); do
  if (( r % 2 )); then
    run_one nginx "$NGX_PORT" "$NGX_PID"; run_one usher "$USH_PORT" "$USH_PID"
    fresh_cookie; run_one usher-auth "$AUTH_PORT" "$AUTH_PID" "$COOKIE"
    run_one floor "$FLR_PORT" "$FLR_PID"
  else
    run_one floor "$FLR_PORT" "$FLR_PID"
    fresh_cookie; run_one usher-auth "$AUTH_PORT" "$AUTH_PID" "$COOKIE"
    run_one usher "$USH_PORT" "$USH_PID"; run_one nginx "$NGX_PORT" "$NGX_PID"
  fi
  echo "round $r/$ROUNDS done" >&2
done
RSS=$(awk '/VmRSS/{print $2}' /proc/$USH_PID/status)
HWM=$(awk '/VmHWM/{print $2}' /proc/$USH_PID/status)
AUTH_HWM=$(awk '/VmHWM/{print $2}' /proc/$AUTH_PID/status)

python3 - "$RESULTS" "$RSS" "$HWM" "$ROUNDS" "$DURATION" "$CONNS" "$AUTH_HWM" <<'PY'
import statistics, sys
path, rss, hwm, rounds, dur, conns, auth_hwm = sys.argv[1:]
rows = [l.split('\t') for l in open(path).read().split('\n') if l.strip()]
by = {}
for name, rps, p50, p99, cpu in rows:
    by.setdefault(name, []).append((float(rps), float(p50), float(p99), float(cpu)))
print(f"wrk -t2 -c{conns} -d{dur}s --latency, {rounds} interleaved rounds, 1 KiB file, nginx upstream")
print(f"{'proxy':<11}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU us/req':>12}   (medians; per round below)")
med = {}
for name in ('nginx', 'usher', 'usher-auth', 'floor'):
    v = by[name]
    m = tuple(statistics.median(x[i] for x in v) for i in range(4))
    med[name] = m
    print(f"{name:<11}{m[0]:>10.0f}{m[1]:>10.3f}{m[2]:>10.3f}{m[3]:>12.2f}")
    for x in v:
        print(f"{'':<11}{x[0]:>10.0f}{x[1]:>10.3f}{x[2]:>10.3f}{x[3]:>12.2f}")
n = med['nginx']
for name in ('usher', 'usher-auth', 'floor'):
    u = med[name]
    print(f"ratio {name}/nginx: req/s {u[0]/n[0]:.2f}  p99 {u[2]/n[2]:.2f}  CPU/req {u[3]/n[3]:.2f}")
f = med['floor']
for name in ('usher', 'usher-auth'):
    print(f"{name} over the floor: {med[name][3] - f[3]:.2f} us of CPU per request")
print(f"usher RSS {int(rss)/1024:.1f} MiB (peak {int(hwm)/1024:.1f} MiB); usher-auth peak {int(auth_hwm)/1024:.1f} MiB")
PY
