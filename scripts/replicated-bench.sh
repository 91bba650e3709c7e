#!/usr/bin/env bash
# Replicated vs sync, side by side in one run (BENCHMARKS.md, issue 18): three
# JetStream servers on loopback (scripts/nats-cluster.sh, sync_interval:
# always), then, alternating for ROUNDS rounds, crema `sync` and crema
# `replicated` (fresh data dirs, examples/chain.toml, simulated payment with no
# latency, instant brews), each loaded
#   1. at saturation: wrk -t2 -c64 for SECONDS with benches/wrk/chain.lua (2xx/s);
#   2. at a fixed rate: `crema rush --profile constant --rate RATE` for SECONDS
#      (p50/p99 of POST /orders, as the rush measures it).
# Ratios are what to read: this machine is shared and noisy.
#
#   scripts/replicated-bench.sh [ROUNDS] [SECONDS] [RATE]     (default 2 10 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}; secs=${2:-10}; rate=${3:-1000}
binary="${CARGO_TARGET_DIR:-target}/release/crema"
[ -x "$binary" ] || { echo "build first ($binary is missing)" >&2; exit 2; }
work=$(mktemp -d)
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    for pid in "$work"/nats/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; done
    wait 2>/dev/null || true
    # The servers are not this shell's children: wait for them to go before removing their data.
    for pid in "$work"/nats/*.pid; do
        [ -f "$pid" ] || continue
        for _ in $(seq 50); do kill -0 "$(cat "$pid")" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$work"
}
trap cleanup EXIT
./scripts/nats-cluster.sh "$work/nats" 14222 2>/dev/null
cat examples/chain.toml >"$work/sync.toml"
cat examples/chain.toml - >"$work/replicated.toml" <<CONF

[store]
durability = "replicated"
[cluster]
node = "bench"
nats = ["nats://127.0.0.1:14222", "nats://127.0.0.1:14223", "nats://127.0.0.1:14224"]
replicas = 3
CONF
export CREMA_BARISTA__BREW_SCALE=0 CREMA_BARISTA__MAX_QUEUE=1000000 CREMA_ORDERS__MAX_LIVE=1000000 \
  CREMA_ORDERS__MAX_PLACING=4096 CREMA_PAYMENT__BREAKER__MAX_CONCURRENT=4096 CREMA_PAYMENT__SIMULATED__LATENCY_MS=0 \
  CREMA_AUTH__ENABLED=false RUST_LOG=warn
port=18290
printf "%-12s %-6s %12s %10s %10s %10s\n" mode round "sat 2xx/s" "p50 ms" "p99 ms" "at rate/s" >&2
for round in $(seq "$rounds"); do
    for mode in sync replicated; do
        port=$((port + 1))
        rm -rf "$work/data-$mode"
        "$binary" serve --bind "127.0.0.1:$port" --data "$work/data-$mode" --config "$work/$mode.toml" >/dev/null 2>"$work/$mode.log" &
        pid=$!
        for _ in $(seq 300); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
        out=$(wrk -t2 -c64 -d"${secs}s" -s benches/wrk/chain.lua "http://127.0.0.1:$port/orders")
        total=$(awk '/requests in/ {print $1}' <<<"$out")
        took=$(awk '/requests in/ {sub(/s,/, "", $4); print $4}' <<<"$out")
        non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out"); non2xx=${non2xx:-0}
        sat=$(echo "($total - $non2xx) / $took" | bc -l)
        json=$("$binary" rush --target "http://127.0.0.1:$port" --profile constant --rate "$rate" --duration "${secs}s" --json 2>/dev/null)
        read -r p50 p99 accepted < <(python3 -c '
import json, sys
report = json.load(sys.stdin)
post = next(e for e in report["endpoints"] if e["endpoint"].startswith("POST /orders"))
lat = post["latency_ms"]
print(lat["p50"], lat["p99"], report.get("accepted_per_s", report.get("orders_per_s", 0)))' <<<"$json")
        printf "%-12s %-6s %12.0f %10s %10s %10s\n" "$mode" "$round" "$sat" "$p50" "$p99" "$accepted" >&2
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
done
