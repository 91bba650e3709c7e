#!/usr/bin/env bash
# `make cluster`: three JetStream servers on loopback (scripts/nats-cluster.sh,
# ports 4222-4224) and crema on them with store.durability = "replicated"
# (node "a", http://127.0.0.1:8080, the chain of examples/chain.toml), its
# data in a folder that may be deleted at any time: it is only a cache of the
# journals. Prints the URLs (and, at the first start, the admin key); Ctrl-C
# stops everything. One crema node for now: spreading stores over several
# nodes (leases, handover) is issue 19.
#
#   scripts/cluster.sh [DIR]     (default ./cluster; JetStream data in DIR/nats)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$(realpath -m "${1:-./cluster}")"
mkdir -p "$dir"
binary="${CARGO_TARGET_DIR:-target}/release/crema"
[ -x "$binary" ] || { echo "cluster: build first ($binary is missing)" >&2; exit 1; }
cleanup() {
    [ -n "${crema:-}" ] && kill "$crema" 2>/dev/null
    for pid in "$dir"/nats/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; done
    wait 2>/dev/null || true
}
# Ctrl-C stops everything; the JetStream data in DIR/nats stays for the next start.
trap cleanup EXIT INT TERM
./scripts/nats-cluster.sh "$dir/nats" 4222
cat >"$dir/crema.toml" <<CONF
$(cat examples/chain.toml)

[store]
durability = "replicated"

[cluster]
node = "a"
advertise = "http://127.0.0.1:8080"
nats = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
replicas = 3
CONF
echo "cluster: JetStream on nats://127.0.0.1:4222-4224; crema node a on http://127.0.0.1:8080 (config $dir/crema.toml)" >&2
echo "cluster: follow the event feed with: cargo run --release --example feed -- nats://127.0.0.1:4222" >&2
"$binary" serve --bind 127.0.0.1:8080 --data "$dir/data-a" --config "$dir/crema.toml" &
crema=$!
wait "$crema"
