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

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk || ! need valgrind; then
  echo "installing nginx, wrk and valgrind from Debian..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light wrk valgrind) >/dev/null 2>&1 \
    || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx wrk valgrind) >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet
cargo build --release --quiet --example hyper_floor
USHER=$PWD/target/release/usher
FLOOR=$PWD/target/release/examples/hyper_floor

WORK=$(mktemp -d /tmp/usher-instr.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
UP_PORT=$(free_port); PX_PORT=$(free_port)
SBX_PORT=$(python3 -c 'import random; print(random.randrange(20000, 60000, 10))')
wait_port() { for _ in $(seq 600); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

mkdir -p "$WORK/www" "$WORK/up"
chmod 755 "$WORK" "$WORK/www"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$WORK/www/1k.bin"
chmod 644 "$WORK/www/1k.bin"
cat > "$WORK/up/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP_PORT reuseport;
    location / { root $WORK/www; }
  }
}
CONF
"$NGINX" -p "$WORK/up" -c "$WORK/up/nginx.conf" -e "$WORK/up/error.log" & PIDS+=($!)
"$USHER" sandbox --port "$SBX_PORT" > "$WORK/sandbox.log" 2>&1 & PIDS+=($!)
wait_port "$UP_PORT"; wait_port "$SBX_PORT"

SECRET=$(head -c 32 /dev/urandom | base64)
cat > "$WORK/usher.toml" <<CONF
[server]
listen = "127.0.0.1:$PX_PORT"
public_url = "http://127.0.0.1:$PX_PORT"
[session]
secret = "$SECRET"
[[idp]]
name = "google"
kind = "google"
client_id = "bench"
client_secret = "bench"
allowed_domains = ["example.com"]
[[upstream]]
name = "bench"
host = "127.0.0.1"
url = "http://127.0.0.1:$UP_PORT"
public = ["^/"]
[state]
dir = "$WORK/state"
CONF
# Signed in: every path needs a session; the IdP is the sandbox (public_url is
# the sandbox client's registered callback host; cookies are per host, not port).
cat > "$WORK/usher-auth.toml" <<CONF
[server]
listen = "127.0.0.1:$PX_PORT"
public_url = "http://127.0.0.1:8080"
[session]
secret = "$SECRET"
[[idp]]
name = "google"
kind = "google"
issuer = "http://127.0.0.1:$SBX_PORT"
client_id = "1081000000-usher-sandbox.apps.googleusercontent.com"
client_secret = "GOCSPX-usher-sandbox-secret"
allowed_domains = ["example.com"]
[[upstream]]
name = "bench"
host = "127.0.0.1"
url = "http://127.0.0.1:$UP_PORT"
[state]
dir = "$WORK/state"
CONF

sign_in() { # -> prints "Cookie: _usher=..."
  local jar="$WORK/cookies.txt" auth_url callback session
  rm -f "$jar"
  auth_url=$(curl -s -o /dev/null -c "$jar" -w '%{redirect_url}' "http://127.0.0.1:$PX_PORT/_usher/login?rd=/1k.bin")
  callback=$(curl -s -o /dev/null -w '%{redirect_url}' "$auth_url&login_hint=alice%40example.com&auto=1")
  curl -s -o /dev/null -b "$jar" -c "$jar" "http://127.0.0.1:$PX_PORT/_usher/callback?${callback#*\?}"
  session=$(awk '$6 == "_usher" {print $7}' "$jar")
  [ -n "$session" ] || { echo "sign-in failed" >&2; exit 1; }
  echo "Cookie: _usher=$session"
}

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
measure() { # name command...
  local name=$1; shift
  local out="$WORK/cg-$name.out"
  RUST_LOG=info valgrind --tool=callgrind --callgrind-out-file="$out" "$@" > "$WORK/$name.log" 2>&1 &
  local pid=$!
  wait_port "$PX_PORT"
  local hdr=()
  if [ "$name" = usher-auth ]; then hdr=(-H "$(sign_in)"); fi
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
