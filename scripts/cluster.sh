#!/usr/bin/env bash
# `make cluster`: a whole crema cluster on this machine, on loopback:
# - three JetStream servers (scripts/nats-cluster.sh, ports 4222-4224);
# - `crema payment-sim` on :9090, the one payment gateway every node charges
#   through (so that a node taking a store over can settle a dead owner's charges);
# - three crema nodes a, b, c on :8081-8083 (store.durability = "replicated",
#   the chain of examples/chain.toml), sharing its stores: each store is
#   served by one node, and any node answers for any store.
# Their data dirs are caches of the journals and may be deleted at any time.
# Prints the URLs and, at the first start, an admin key (kept in DIR only as
# its hash); Ctrl-C stops everything. Try: kill -9 one node, and watch
# `GET /cluster` on another move its stores within 10 s.
#
#   scripts/cluster.sh [DIR]     (default ./cluster; JetStream data in DIR/nats)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$(realpath -m "${1:-./cluster}")"
mkdir -p "$dir"
binary="${CARGO_TARGET_DIR:-target}/release/crema"
[ -x "$binary" ] || { echo "cluster: build first ($binary is missing)" >&2; exit 1; }
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "$dir"/nats/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; done
    wait 2>/dev/null || true
}
# Ctrl-C stops everything; the JetStream data in DIR/nats stays for the next start.
trap cleanup EXIT INT TERM
./scripts/nats-cluster.sh "$dir/nats" 4222

# One admin key for every node (the same configuration file), made once.
if [ ! -f "$dir/keys.toml" ]; then
    made="$("$binary" keys new --role admin --name admin)"
    key="$(head -n 1 <<<"$made")"
    tail -n +2 <<<"$made" >"$dir/keys.toml"
    echo "cluster: the admin key (shown once, kept nowhere but as its hash in $dir/keys.toml):" >&2
    echo "$key"
fi
cat >"$dir/crema.toml" <<CONF
$(cat examples/chain.toml)

$(cat "$dir/keys.toml")

[payment]
gateway = "http"
url = "http://127.0.0.1:9090"

[store]
durability = "replicated"

[cluster]
nats = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
replicas = 3
CONF

"$binary" payment-sim --bind 127.0.0.1:9090 --data "$dir/ledger" >/dev/null &
pids+=($!)
for n in 1 2 3; do
    node="$(printf '%s' abc | cut -c "$n")"
    port=$((8080 + n))
    CREMA_CLUSTER__NODE="$node" CREMA_CLUSTER__ADVERTISE="http://127.0.0.1:$port" \
        "$binary" serve --bind "127.0.0.1:$port" --data "$dir/data-$node" --config "$dir/crema.toml" >/dev/null &
    pids+=($!)
done
echo "cluster: JetStream on nats://127.0.0.1:4222-4224; payment-sim on http://127.0.0.1:9090" >&2
echo "cluster: crema nodes a, b, c on http://127.0.0.1:8081, :8082, :8083 (config $dir/crema.toml); any of them answers for any store" >&2
echo "cluster: who owns what: curl -H 'Authorization: Bearer KEY' http://127.0.0.1:8081/cluster" >&2
echo "cluster: follow the event feed with: cargo run --release --example feed -- nats://127.0.0.1:4222" >&2
# Until Ctrl-C (a node killed by hand does not end the others).
wait "${pids[@]}"
