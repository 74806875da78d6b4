#!/usr/bin/env bash
# Tells whether pgo/usher.profdata still matches the sources it was recorded
# from. A profile-guided build never fails on a stale profile: functions that
# changed since the recording just build without profile guidance, which is
# how the request path quietly loses its speed-up. So bench/pgo.sh records a
# checksum of every source file (and Cargo.lock, for dependency changes) next
# to the profile, and deploy/build.sh warns about the files that differ.
#
#   bash deploy/pgo-sources.sh record [ROOT]   # write ROOT/pgo/sources.sha256
#   bash deploy/pgo-sources.sh check [ROOT]    # list changed, new and removed files
#
# check exits 0 when the profile is current, 1 when files changed (they are
# listed on stdout, one per line), 2 when no checksums were recorded.
set -euo pipefail
MODE=${1:-check}
ROOT=${2:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$ROOT"
SUMS=pgo/sources.sha256

sources() {
  { find src -name '*.rs' -type f; [ -f Cargo.lock ] && echo Cargo.lock; } | LC_ALL=C sort
}

case "$MODE" in
  record)
    mkdir -p pgo
    sources | tr '\n' '\0' | xargs -0 sha256sum > "$SUMS"
    ;;
  check)
    [ -s "$SUMS" ] || { echo "no $SUMS: record one with bash bench/pgo.sh" >&2; exit 2; }
    # Changed or removed files, then files the recording did not know.
    changed=$( (sha256sum --quiet -c "$SUMS" 2>/dev/null || true) | sed -n 's/: FAILED.*$//p')
    new=$(comm -13 <(awk '{print $2}' "$SUMS" | LC_ALL=C sort) <(sources))
    stale=$(printf '%s\n%s\n' "$changed" "$new" | sed '/^$/d')
    [ -z "$stale" ] && exit 0
    echo "$stale"
    exit 1
    ;;
  *)
    echo "usage: $0 record|check [ROOT]" >&2
    exit 64
    ;;
esac
