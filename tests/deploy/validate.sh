#!/usr/bin/env bash
# Validates the deployment artefacts in deploy/ without building or running them.
#   - Kubernetes manifests: strict schema validation with kubernetes-validate (JSON
#     schemas bundled in the PyPI package, so it works offline once installed into
#     target/deploy-venv), the kustomize rendering too when kubectl is present, and
#     wiring/hardening checks (tests/deploy/check_manifests.py);
#   - deploy/Dockerfile: structural checks (tests/deploy/check_dockerfile.py);
#   - deploy/usher.service: `systemd-analyze verify` when systemd-analyze exists;
#   - the ConfigMap's usher.toml: `usher check-config` with the container's
#     environment, and a runtime smoke (usher serve against `usher sandbox` and a
#     local redis-server, as uid 10001 on a read-only root when run as root:
#     healthz, readyz, jwks 200, clean exit on SIGTERM), when
#     ${USHER_BIN:-target/release/usher} exists.
# Each checker first proves on broken input that it can fail (--self-test).
# Idempotent (re-uses the venv), bounded (every external step under `timeout`),
# exits non-zero on any problem. Usage: bash tests/deploy/validate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

K8S_VALIDATE_VERSION=1.37.0
VENV=target/deploy-venv
USHER_BIN=${USHER_BIN:-target/release/usher}
failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
step() { echo; echo "== $*"; }

step "kubernetes-validate $K8S_VALIDATE_VERSION in $VENV"
if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$K8S_VALIDATE_VERSION"; then
  timeout 120 python3 -m venv "$VENV"
  timeout 600 "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$K8S_VALIDATE_VERSION"
fi
"$VENV/bin/kubernetes-validate" --version
PY="$VENV/bin/python"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# kubernetes-validate prints WARN (exit 0) for a kind it has no schema for: treat as failure.
k8s_validate() { # FILE...
  local out rc=0
  out=$(timeout 120 "$VENV/bin/kubernetes-validate" --strict --kubernetes-version 1.30 "$@" 2>&1) || rc=$?
  echo "$out"
  [ "$rc" -eq 0 ] && ! grep -qE '^(WARN|ERROR)' <<<"$out"
}

step "the validator rejects an unknown field (strict mode works)"
printf 'apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n' >"$tmp/bad.yaml"
if k8s_validate "$tmp/bad.yaml" >/dev/null; then fail "kubernetes-validate accepted an unknown field"; else echo "rejected, as expected"; fi

step "manifests in deploy/kubernetes (strict schemas, Kubernetes 1.30 and $K8S_VALIDATE_VERSION)"
manifests=()
for f in deploy/kubernetes/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
k8s_validate "${manifests[@]}" || fail "schema validation (1.30)"
out=$(timeout 120 "$VENV/bin/kubernetes-validate" --strict "${manifests[@]}" 2>&1) && ! grep -qE '^(WARN|ERROR)' <<<"$out" \
  || { echo "$out"; fail "schema validation ($K8S_VALIDATE_VERSION)"; }

step "kustomize rendering"
if command -v kubectl >/dev/null 2>&1 && timeout 60 kubectl kustomize deploy/kubernetes >"$tmp/rendered.yaml" 2>"$tmp/kustomize.err"; then
  k8s_validate "$tmp/rendered.yaml" | sed 's/^/  /' || fail "rendered kustomization does not validate"
else
  if command -v kubectl >/dev/null 2>&1; then cat "$tmp/kustomize.err"; fail "kubectl kustomize failed"; else echo "skipped: kubectl not installed"; fi
fi

step "wiring and hardening (check_manifests.py)"
"$PY" tests/deploy/check_manifests.py . --self-test || fail "check_manifests self-test"
"$PY" tests/deploy/check_manifests.py . || fail "deploy/kubernetes wiring/hardening"

step "deploy/Dockerfile (check_dockerfile.py)"
python3 tests/deploy/check_dockerfile.py --self-test || fail "check_dockerfile self-test"
python3 tests/deploy/check_dockerfile.py deploy/Dockerfile || fail "deploy/Dockerfile"
[ -f deploy/Dockerfile.dockerignore ] && grep -qx '\*\*/target' deploy/Dockerfile.dockerignore \
  || fail "deploy/Dockerfile.dockerignore missing or does not exclude target/"

step "deploy/pgo-sources.sh (which files changed since the PGO profile was recorded)"
pgo_root="$tmp/pgo-root"
failed_before=$failed
mkdir -p "$pgo_root/src/proxy"
echo 'fn hot() {}' >"$pgo_root/src/proxy/hot.rs"
echo 'fn cold() {}' >"$pgo_root/src/cold.rs"
echo 'lock v1' >"$pgo_root/Cargo.lock"
pgo_check() { # EXPECTED_RC EXPECTED_OUTPUT (one file per line, sorted)
  local out rc
  out=$(bash deploy/pgo-sources.sh check "$pgo_root" 2>/dev/null) && rc=0 || rc=$?
  out=$(LC_ALL=C sort <<<"$out" | sed '/^$/d')
  if [ "$rc" -ne "$1" ] || [ "$out" != "$2" ]; then
    fail "pgo-sources.sh check: exit $rc, listed [$out]; wanted exit $1, [$2]"
  fi
}
pgo_check 2 ""
bash deploy/pgo-sources.sh record "$pgo_root"
pgo_check 0 ""
echo '// edited' >>"$pgo_root/src/proxy/hot.rs"
echo 'fn new() {}' >"$pgo_root/src/proxy/new.rs"
echo 'lock v2' >"$pgo_root/Cargo.lock"
pgo_check 1 "$(printf 'Cargo.lock\nsrc/proxy/hot.rs\nsrc/proxy/new.rs')"
rm "$pgo_root/src/cold.rs"
pgo_check 1 "$(printf 'Cargo.lock\nsrc/cold.rs\nsrc/proxy/hot.rs\nsrc/proxy/new.rs')"
bash deploy/pgo-sources.sh record "$pgo_root"
pgo_check 0 ""
[ "$failed" -eq "$failed_before" ] && echo "stale files listed, a current profile passes"

step "deploy/usher.service (systemd-analyze verify)"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart's binary exists: point it at usher when built,
  # else at /bin/true (the unit's own directives are what is checked).
  exe=/bin/true
  [ -x "$USHER_BIN" ] && exe=$(readlink -f "$USHER_BIN")
  sed "s#/usr/local/bin/usher#$exe#g" deploy/usher.service >"$tmp/usher.service"
  if out=$(timeout 60 systemd-analyze verify "$tmp/usher.service" 2>&1) && [ -z "$out" ]; then
    echo "verified (ExecStart binary: $exe)"
    timeout 60 systemd-analyze security --offline=true "$tmp/usher.service" 2>/dev/null | tail -1 || true
  else
    echo "$out"; fail "systemd-analyze verify deploy/usher.service"
  fi
else
  echo "skipped: systemd-analyze not installed"
fi

step "usher check-config on the ConfigMap's usher.toml"
if [ -x "$USHER_BIN" ]; then
  "$PY" tests/deploy/check_manifests.py . --check-config "$USHER_BIN" || fail "usher check-config"
else
  echo "skipped: $USHER_BIN not built (set USHER_BIN=path/to/usher)"
fi

step "runtime smoke: usher serve with the ConfigMap's usher.toml (smoke_serve.py)"
if [ ! -x "$USHER_BIN" ]; then
  echo "skipped: $USHER_BIN not built"
elif ! command -v redis-server >/dev/null 2>&1; then
  echo "skipped: redis-server not installed (apt-get install redis-server)"
else
  timeout 180 "$PY" tests/deploy/smoke_serve.py . "$USHER_BIN" || fail "runtime smoke"
fi

echo
if [ "$failed" -ne 0 ]; then
  echo "deploy validation: $failed problem(s)"
  exit 1
fi
echo "deploy validation: all checks passed"
