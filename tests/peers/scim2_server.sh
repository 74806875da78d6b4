#!/usr/bin/env bash
# Installs the SCIM peers (scim2-server, scim2-tester, scim2-cli) into a venv under
# target/peers-venv, or starts scim2-server in the foreground for manual checks.
#   tests/peers/scim2_server.sh install
#   tests/peers/scim2_server.sh serve PORT TOKEN
# The Rust peer tests (src/target/peers.rs) start and stop the server themselves.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${USHER_PEERS_VENV:-$root/target/peers-venv}"
case "${1:-install}" in
  install)
    if [ ! -x "$venv/bin/scim2-server" ] || [ ! -x "$venv/bin/scim2" ]; then
      python3 -m venv "$venv"
      "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'scim2-server==0.8.3' 'scim2-tester[httpx2]==0.5.2' 'scim2-cli==0.6.0'
    fi
    "$venv/bin/scim2-server" --help >/dev/null
    echo "scim peers ready in $venv"
    ;;
  serve)
    exec "$venv/bin/scim2-server" --hostname 127.0.0.1 --port "${2:?port}" --bearer-token "${3:?token}"
    ;;
  *)
    echo "usage: $0 install | serve PORT TOKEN" >&2
    exit 64
    ;;
esac
