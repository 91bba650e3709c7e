#!/bin/bash
# What one order costs crema under load, from /proc (no tracing overhead):
# CPU µs, context switches, store-writer requests and groups (one WAL sync
# each) per order, plus CPU by
# thread. Loads crema with wrk (POST one americano) at CONNS connections.
#
# usage: scripts/per-order.sh [CREMA_BINARY] [SECONDS] [CONNS]
# Same configuration as scripts/ab.sh: durability sync, instant brews,
# simulated payment with no latency, 8 stations, caps raised.
# CREMA_CONFIG=examples/chain.toml WRK_LUA=benches/wrk/chain.lua: a chain's
# orders (three stores, options, two-kind orders) instead of one americano.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/crema}; secs=${2:-5}; conns=${3:-128}
port=$((18500 + RANDOM % 400))
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work" || true' EXIT
export CREMA_BARISTA__BREW_SCALE=0 CREMA_BARISTA__STATIONS=8 CREMA_BARISTA__MAX_QUEUE=1000000 \
  CREMA_ORDERS__MAX_LIVE=1000000 CREMA_ORDERS__MAX_PLACING=4096 CREMA_PAYMENT__BREAKER__MAX_CONCURRENT=4096 \
  CREMA_PAYMENT__SIMULATED__LATENCY_MS=0 CREMA_STORE__DURABILITY=${CREMA_STORE__DURABILITY:-sync} RUST_LOG=warn
config=(); [ -n "${CREMA_CONFIG:-}" ] && config=(--config "$CREMA_CONFIG")
"$bin" serve --bind 127.0.0.1:$port --data "$work/data" "${config[@]}" >"$work/log" 2>&1 & pid=$!
for _ in $(seq 300); do curl -fs http://127.0.0.1:$port/readyz >/dev/null 2>&1 && break; sleep 0.1; done
wrk -t2 -c"$conns" -d"$((secs + 4))s" -s "${WRK_LUA:-benches/wrk/order.lua}" http://127.0.0.1:$port/orders >"$work/wrk" &
sleep 2
hz=$(getconf CLK_TCK)
snapshot() { # ticks switches made writes, then "name ticks" per thread
  local ticks=0 switches=0
  for t in /proc/$pid/task/*; do
    f=($(cut -d')' -f2 "$t/stat")); ticks=$((ticks + f[11] + f[12]))
    switches=$((switches + $(awk '/ctxt_switches/ {s+=$2} END {print s}' "$t/status")))
  done
  # /stats with the admin key the first start printed (a build from before keys prints none and needs none).
  local key; key=$(grep -o 'crema_[0-9a-f]\{64\}' "$work/log" | head -1 || true)
  local stats; stats=$(curl -fs ${key:+-H "Authorization: Bearer $key"} http://127.0.0.1:$port/stats)
  echo "$ticks $switches $(grep -o '"ready":[0-9]*' <<<"$stats" | head -1 | cut -d: -f2) $(grep -o '"requests":[0-9]*' <<<"$stats" | cut -d: -f2) $(grep -o '"groups":[0-9]*' <<<"$stats" | cut -d: -f2)"
}
before=($(snapshot)); threads_before=$(for t in /proc/$pid/task/*; do f=($(cut -d')' -f2 "$t/stat")); echo "$(cat $t/comm | tr ' ' _)#${t##*/} $((f[11] + f[12]))"; done | sort)
sleep "$secs"
after=($(snapshot)); threads_after=$(for t in /proc/$pid/task/*; do f=($(cut -d')' -f2 "$t/stat")); echo "$(cat $t/comm | tr ' ' _)#${t##*/} $((f[11] + f[12]))"; done | sort)
orders=$((after[2] - before[2]))
awk -v t=$((after[0] - before[0])) -v s=$((after[1] - before[1])) -v w=$((after[3] - before[3])) -v g=$((after[4] - before[4])) -v n=$orders -v hz=$hz -v secs=$secs 'BEGIN {
  printf "orders/s            %10.0f\n", n / secs
  printf "CPU µs per order    %10.1f\n", t / hz * 1e6 / n
  printf "switches per order  %10.2f\n", s / n
  printf "writer requests per order %4.2f\n", w / n
  printf "WAL syncs per order  %9.3f\n", g / n }'
join <(echo "$threads_before") <(echo "$threads_after") | awk -v hz=$hz -v secs=$secs '{d = ($3 - $2) / hz / secs * 100; if (d > 0.5) printf "  %-24s %5.1f%% of a core\n", $1, d}'
wait %2 2>/dev/null || true
grep -E "Non-2xx" "$work/wrk" || true
