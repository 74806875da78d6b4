# Shared set-up of the load benchmarks (sourced by bench/proxy.sh,
# bench/ab.sh and bench/instructions.sh): tools, a scratch directory cleaned up
# on exit, free ports, the CPU time of a process tree, the nginx upstream
# serving a 1 KiB file, the two usher configurations (signed out, and signed
# in through the sandbox Google) and the sign-in that yields a session cookie.
# Loopback only.

# Installs the Debian packages named (nginx-light or nginx, plus the rest) when
# a command of theirs is missing.
bench_install() { # command... (each command's package has the same name, nginx aside)
  local missing=0 c
  for c in nginx "$@"; do command -v "$c" >/dev/null 2>&1 || missing=1; done
  if [ "$missing" = 1 ]; then
    echo "installing nginx $* from Debian..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light "$@") >/dev/null 2>&1 \
      || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx "$@") >/dev/null
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# How servers are started. With the kernel's autogroup scheduling (on in most
# distributions), processes started from one terminal session share one
# scheduling group: the proxy, its upstream and wrk would compete thread by
# thread, which no deployment does (each service runs in its own cgroup).
# BENCH_GROUPS=own (the default) starts every server in a session of its own
# (setsid), so each gets a group as it would as a service; BENCH_GROUPS=shared
# keeps them all in the script's group (the set-up of the first six sessions).
# Either way every contender is started the same way.
case "${BENCH_GROUPS:-own}" in
  own) SERVICE=(setsid) ;;
  shared) SERVICE=() ;;
  *) echo "BENCH_GROUPS must be own or shared" >&2; exit 2 ;;
esac

# WORK: a fresh scratch directory; PIDS: processes to stop on exit.
bench_workdir() { # name
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Sum of on-CPU nanoseconds of a process tree (all threads of the process and its children).
cpu_ns() {
  local root=$1 total=0 pid t
  for pid in $root $(pgrep -P "$root" || true); do
    for t in /proc/$pid/task/*/schedstat; do
      [ -r "$t" ] && total=$(( total + $(cut -d' ' -f1 "$t") ))
    done
  done
  echo $total
}

# The sandbox's port: a multiple of 10 (its other services sit next to it).
sandbox_port() { python3 -c 'import random; print(random.randrange(20000, 60000, 10))'; }

# Waits up to 60 s (valgrind starts slowly) for a loopback port to accept.
wait_port() {
  for _ in $(seq 600); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 never opened" >&2
  exit 1
}

# The upstream: one nginx worker serving $WORK/www/1k.bin, no access log.
bench_upstream() { # port
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
    listen 127.0.0.1:$1 reuseport;
    location / { root $WORK/www; }
  }
}
CONF
  "${SERVICE[@]}" "$NGINX" -p "$WORK/up" -c "$WORK/up/nginx.conf" -e "$WORK/up/error.log" & PIDS+=($!)
}

# usher configs in front of the upstream, sharing one session secret.
# "usher.toml": every path public (no sign-in). "usher-auth.toml": every path
# needs a session and the IdP is the sandbox; public_url is the sandbox
# client's registered callback host (cookies are per host, not per port).
bench_usher_configs() { # usher-port auth-port upstream-port sandbox-port
  local secret
  secret=$(head -c 32 /dev/urandom | base64)
  cat > "$WORK/usher.toml" <<CONF
[server]
listen = "127.0.0.1:$1"
public_url = "http://127.0.0.1:$1"
[session]
secret = "$secret"
[[idp]]
name = "google"
kind = "google"
client_id = "bench"
client_secret = "bench"
allowed_domains = ["example.com"]
[[upstream]]
name = "bench"
host = "127.0.0.1"
url = "http://127.0.0.1:$3"
public = ["^/"]
[state]
dir = "$WORK/state-open"
CONF
  cat > "$WORK/usher-auth.toml" <<CONF
[server]
listen = "127.0.0.1:$2"
public_url = "http://127.0.0.1:8080"
[session]
secret = "$secret"
[[idp]]
name = "google"
kind = "google"
issuer = "http://127.0.0.1:$4"
client_id = "1081000000-usher-sandbox.apps.googleusercontent.com"
client_secret = "GOCSPX-usher-sandbox-secret"
allowed_domains = ["example.com"]
[[upstream]]
name = "bench"
host = "127.0.0.1"
url = "http://127.0.0.1:$3"
[state]
dir = "$WORK/state"
CONF
}

# Signs alice in through the sandbox Google's non-interactive path against the
# usher on `port`; prints the request header that carries her session.
sign_in() { # port
  local jar="$WORK/cookies.txt" auth_url callback session
  rm -f "$jar"
  auth_url=$(curl -s -o /dev/null -c "$jar" -w '%{redirect_url}' "http://127.0.0.1:$1/_usher/login?rd=/1k.bin")
  callback=$(curl -s -o /dev/null -w '%{redirect_url}' "$auth_url&login_hint=alice%40example.com&auto=1")
  curl -s -o /dev/null -b "$jar" -c "$jar" "http://127.0.0.1:$1/_usher/callback?${callback#*\?}"
  session=$(awk '$6 == "_usher" {print $7}' "$jar")
  [ -n "$session" ] || { echo "sign-in failed; see the usher log in $WORK" >&2; exit 1; }
  echo "Cookie: _usher=$session"
}
