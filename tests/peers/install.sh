#!/usr/bin/env bash
# Installs the real peers the tests use (see shared/reference/peers.md):
# Debian packages and a Python venv under target/peers-venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

# True when Debian package $1 is installed.
deb_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

APT_PKGS=()
command -v redis-server >/dev/null 2>&1 || APT_PKGS+=(redis-server)

# --- sign-in peers (branch peers): Chromium + panva oidc-provider + playwright-core ---
# Headless Chromium for tests/browser/login.mjs; fonts so pages render text.
[ -x /usr/bin/chromium ] || APT_PKGS+=(chromium)
deb_installed fonts-dejavu-core || APT_PKGS+=(fonts-dejavu-core)
# --- end sign-in peers (apt) ---

if [ ${#APT_PKGS[@]} -gt 0 ]; then
  echo "installing ${APT_PKGS[*]} from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PKGS[@]}" >/dev/null
fi

# --- sign-in peers (branch peers): npm packages, exactly as locked ---
# `npm ci` in each directory whose node_modules does not match its package-lock.json
# (a stamp of the lock's hash). playwright-core downloads no browser; never run
# `npx playwright install` (there is no internet): the tests use /usr/bin/chromium.
npm_ci() {
  local dir=$1 stamp="$1/node_modules/.usher-lock-sha256" want
  command -v npm >/dev/null 2>&1 || { echo "install.sh: npm is missing (needed for $dir)" >&2; exit 1; }
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "installing npm packages in $dir" >&2
  local log
  log=$(mktemp)
  if ! (cd "$dir" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    echo "install.sh: npm ci failed in $dir:" >&2
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
}
npm_ci tests/peers/oidc-provider
npm_ci tests/browser
[ -x /usr/bin/chromium ] || { echo "install.sh: /usr/bin/chromium is missing after install" >&2; exit 1; }
# --- end sign-in peers (npm) ---

# --- SCIM peers (branch targets): scim2-server, scim2-tester, scim2-cli in target/peers-venv ---
timeout 300 bash tests/peers/scim2_server.sh install
# --- end SCIM peers ---

# --- inbound SCIM tests (branch scim): scim2-client and scim2-tester importable in the same
# venv (tests/scim/*.py drive usher's /_usher/scim/v2/ with them) ---
scim_venv="${USHER_PEERS_VENV:-target/peers-venv}"
if ! "$scim_venv/bin/python" -c 'import scim2_client, scim2_tester, httpx2' 2>/dev/null; then
  echo "installing scim2-client and scim2-tester into $scim_venv" >&2
  timeout 300 "$scim_venv/bin/pip" install --quiet --disable-pip-version-check \
    'scim2-client==0.13.2' 'scim2-tester[httpx2]==0.5.2'
fi
# --- end inbound SCIM tests ---
