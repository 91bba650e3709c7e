#!/bin/bash
# How long crema takes from process start to /readyz 200 on an existing data
# directory (manual stations, so queued orders stay queued), and the
# recovery's own `took_ms` from its log line. Compare builds on the same data:
#   scripts/recovery-time.sh DATA_DIR BIN [BIN...]     (e.g. target/rush-bench/data-million)
# Recovery writes only tickets that were being made; a data dir left by
# `make rush-bench` has none, so runs on it are repeatable.
set -euo pipefail
data=$1; shift
[ -d "$data" ] || { echo "no data directory $data" >&2; exit 2; }
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for bin in "$@"; do
  port=$((19100 + RANDOM % 300))
  start=$(date +%s%N)
  CREMA_BARISTA__MODE=manual CREMA_AUTH__ENABLED=false RUST_LOG=info "$bin" serve --bind 127.0.0.1:$port --data "$data" >/dev/null 2>"$work/log" & pid=$!
  until curl -fs http://127.0.0.1:$port/readyz >/dev/null 2>&1; do
    kill -0 $pid 2>/dev/null || { echo "$bin exited; its log:" >&2; cat "$work/log" >&2; exit 1; }
    sleep 0.02
  done
  end=$(date +%s%N)
  printf '%s: ready in %.2f s, %s\n' "$bin" "$(echo "($end - $start) / 1000000000" | bc -l)" "$(grep -o 'took_ms=[0-9]*' "$work/log" || echo 'took_ms=?')"
  kill $pid; wait $pid 2>/dev/null || true
done
