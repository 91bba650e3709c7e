#!/bin/bash
# Side-by-side throughput of crema against the ceiling (a trivial warp server
# that parses the same order JSON), alternating, in one run: the ratio is what
# to read, not the absolute figures (the machine is shared and noisy).
#
# usage: scripts/ab.sh [ROUNDS] [SECONDS] [CONNECTIONS] [CREMA_BINARY...]
#   default: 2 rounds, 10 s, 64 connections, target/release/crema.
# Several crema binaries (e.g. an old build and a new one) are measured in turn.
# AB_PIN=1 pins every server to CPU 1 and wrk to CPU 0 (figures per server core).
# Configuration: durability sync, simulated payment with no latency, instant
# brews, 8 stations, caps raised so that only the hot path limits.
# CREMA_CONFIG=examples/chain.toml WRK_LUA=benches/wrk/chain.lua: a chain's
# orders (three stores, options, two-kind orders) instead of one americano.
set -euo pipefail
cd "$(dirname "$0")/.."
server_pin=(); client_pin=()
if [ "${AB_PIN:-0}" = 1 ]; then server_pin=(taskset -c 1); client_pin=(taskset -c 0); fi
rounds=${1:-2}; secs=${2:-10}; conns=${3:-64}; shift 3 2>/dev/null || shift $#
binaries=("$@"); [ ${#binaries[@]} -gt 0 ] || binaries=(target/release/crema)
target=${CARGO_TARGET_DIR:-target}
ceiling=$(ls -t "$target"/release/deps/ceiling-* 2>/dev/null | grep -v '\.d$' | head -1)
[ -x "$ceiling" ] || { echo "build the ceiling first: cargo bench --bench ceiling --no-run" >&2; exit 2; }
lua=${WRK_LUA:-benches/wrk/order.lua}
config=(); [ -n "${CREMA_CONFIG:-}" ] && config=(--config "$CREMA_CONFIG")
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work" || true' EXIT
export CREMA_BARISTA__BREW_SCALE=0 CREMA_BARISTA__STATIONS=8 CREMA_BARISTA__MAX_QUEUE=1000000 \
  CREMA_ORDERS__MAX_LIVE=1000000 CREMA_ORDERS__MAX_PLACING=4096 CREMA_PAYMENT__BREAKER__MAX_CONCURRENT=4096 CREMA_PAYMENT__SIMULATED__LATENCY_MS=0 CREMA_STORE__DURABILITY=${CREMA_STORE__DURABILITY:-sync} \
  RUST_LOG=warn
wait_up() { for _ in $(seq 100); do curl -fs "$1/healthz" >/dev/null 2>&1 && return; curl -fs "$1/menu" >/dev/null 2>&1 && return; sleep 0.1; done; echo "$1 did not come up" >&2; exit 1; }
run() { # name url -> prints the 2xx answers per second
  local out; out=$("${client_pin[@]}" wrk -t2 -c"$conns" -d"${secs}s" -s "$lua" "$2/orders")
  local total; total=$(awk '/requests in/ {print $1}' <<<"$out")
  local took; took=$(awk '/requests in/ {sub(/s,/, "", $4); print $4}' <<<"$out")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out"); non2xx=${non2xx:-0}
  local ok; ok=$(echo "($total - $non2xx) / $took" | bc -l)
  printf "%-28s %10.0f 2xx/s  %s non2xx %s\n" "$1" "$ok" "$(grep p50_ms <<<"$out")" "$non2xx" >&2
  echo "$ok"
}
port=18190
declare -A sum
for round in $(seq "$rounds"); do
  "${server_pin[@]}" "$ceiling" 127.0.0.1:$port >/dev/null & pid=$!; wait_up http://127.0.0.1:$port
  c=$(run "round $round ceiling" http://127.0.0.1:$port); kill $pid; wait $pid 2>/dev/null || true
  for bin in "${binaries[@]}"; do
    port=$((port + 1)); rm -rf "$work/data"
    "${server_pin[@]}" "$bin" serve --bind 127.0.0.1:$port --data "$work/data" "${config[@]}" >"$work/log" 2>&1 & pid=$!
    for _ in $(seq 300); do curl -fs http://127.0.0.1:$port/readyz >/dev/null 2>&1 && break; sleep 0.1; done
    r=$(run "round $round $(basename "$(dirname "$bin")")/$(basename "$bin")" http://127.0.0.1:$port)
    kill $pid; wait $pid 2>/dev/null || true
    printf "round %s %s / ceiling = %.3f\n" "$round" "$bin" "$(echo "$r / $c" | bc -l)"
  done
  port=$((port + 1))
done
