#!/usr/bin/env bash
# Installs the real peers the tests use (see shared/reference/peers.md):
# Debian packages and a Python venv under target/peers-venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

APT_PKGS=()
command -v redis-server >/dev/null 2>&1 || APT_PKGS+=(redis-server)
if [ ${#APT_PKGS[@]} -gt 0 ]; then
  echo "installing ${APT_PKGS[*]} from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PKGS[@]}" >/dev/null
fi
