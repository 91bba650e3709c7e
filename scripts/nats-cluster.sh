#!/usr/bin/env bash
# Starts three JetStream servers on loopback as one cluster, each with
# `sync_interval: always` (every write fsynced before it is acknowledged; see
# ../shared/DESIGN.md), and waits until JetStream answers. For `make cluster`
# and by hand; the Rust tests start their own (tests/api/cluster.rs).
#
#   scripts/nats-cluster.sh DIR [FIRST_CLIENT_PORT]   (default 4222: 4222-4224, routes 6222-6224)
#
# Writes DIR/n{1,2,3}.conf, their JetStream data in DIR/n{1,2,3}/, logs in
# DIR/n{1,2,3}.log and pids in DIR/n{1,2,3}.pid. Stop them with
# `kill $(cat DIR/*.pid)`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:?usage: scripts/nats-cluster.sh DIR [FIRST_CLIENT_PORT]}"
port="${2:-4222}"
route=$((port + 2000))
tools="${CREMA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/crema}"
server="${NATS_SERVER:-$tools/nats-server-2.15.1/bin/nats-server}"
[ -x "$server" ] || { echo "nats-cluster: $server is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
mkdir -p "$dir"
routes="nats-route://127.0.0.1:$route, nats-route://127.0.0.1:$((route + 1)), nats-route://127.0.0.1:$((route + 2))"
for n in 1 2 3; do
    cat >"$dir/n$n.conf" <<CONF
server_name: n$n
listen: 127.0.0.1:$((port + n - 1))
jetstream {
    store_dir: "$dir/n$n"
    sync_interval: always
}
cluster {
    name: crema
    listen: 127.0.0.1:$((route + n - 1))
    routes: [$routes]
}
CONF
    "$server" -c "$dir/n$n.conf" >"$dir/n$n.log" 2>&1 &
    echo $! >"$dir/n$n.pid"
done
for _ in $(seq 100); do
    if grep -q "JetStream cluster new metadata leader\|Server is ready" "$dir/n1.log" 2>/dev/null \
        && grep -q "metadata leader" "$dir"/n*.log 2>/dev/null; then
        echo "nats-cluster: nats://127.0.0.1:$port, :$((port + 1)), :$((port + 2)) (logs in $dir)" >&2
        exit 0
    fi
    sleep 0.2
done
echo "nats-cluster: no JetStream metadata leader after 20 s; see $dir/n*.log" >&2
exit 1
