#!/bin/bash
# Checks GET /metrics with promtool (Prometheus' own linter): a chain of three
# stores (examples/chain.toml), a few orders made (each with two tickets),
# then `promtool check metrics`, and every family an operator's dashboard and
# alerts use must be there; then the alert rules (`promtool check config`,
# `promtool test rules`) and the Grafana dashboard (JSON, and every series it
# queries exported). Run by `make test`; needs the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/release/crema
command -v promtool >/dev/null || { echo "promtool is missing: scripts/install-deps.sh installs Debian's prometheus" >&2; exit 2; }
port=$((18600 + RANDOM % 300))
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work" || true' EXIT
CREMA_BARISTA__BREW_SCALE=0 RUST_LOG=warn "$bin" serve --bind 127.0.0.1:$port --data "$work/data" --config examples/chain.toml >"$work/log" 2>&1 &
for _ in $(seq 300); do curl -fs http://127.0.0.1:$port/readyz >/dev/null 2>&1 && break; sleep 0.1; done
for store in gangnam hongdae seongsu; do
  curl -fs -XPOST -H 'content-type: application/json' http://127.0.0.1:$port/orders \
    -d "{\"store\":\"$store\",\"items\":[{\"menu_id\":\"latte\",\"qty\":1,\"options\":{\"milk\":\"oat\"}},{\"menu_id\":\"croissant\",\"qty\":1}]}" >/dev/null
done
sleep 1
# /metrics is an admin's: refused without a key, served with the key the first start printed.
status=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/metrics)
[ "$status" = 401 ] || { echo "GET /metrics without a key answered $status, not 401" >&2; exit 1; }
key=$(grep -o 'crema_[0-9a-f]\{64\}' "$work/log" | head -1)
[ -n "$key" ] || { echo "the first start printed no admin key" >&2; cat "$work/log" >&2; exit 1; }
printf '%s' "$key" >"$work/key"
curl -fs -H "Authorization: Bearer $key" http://127.0.0.1:$port/metrics >"$work/metrics"
promtool check metrics <"$work/metrics"
missing=0
for family in process_resident_memory_bytes process_cpu_seconds_total process_open_fds crema_build_info \
  crema_orders_total crema_http_request_duration_seconds crema_order_lead_time_seconds crema_queue_wait_seconds \
  crema_brew_seconds crema_store_orders_total crema_store_revenue crema_store_ready_orders \
  crema_store_oldest_ready_seconds crema_store_refunds_pending crema_station_state crema_station_made_total \
  crema_station_restarts_total crema_payment_breaker_state crema_queue_depth crema_last_backup_timestamp_seconds; do
  grep -q "^$family[{ _]" "$work/metrics" || { echo "missing metric family: $family" >&2; missing=1; }
done
grep -q '^crema_order_lead_time_seconds_count{store="gangnam"} 1$' "$work/metrics" || { echo "gangnam's order was not counted as made" >&2; missing=1; }
grep -q '^crema_brew_seconds_count{store="hongdae",kind="kitchen"} 1$' "$work/metrics" || { echo "hongdae's kitchen ticket was not timed" >&2; missing=1; }
# The ready-made dashboard and alert rules: valid, and every series they
# query is one crema exports (a renamed metric would leave a panel empty).
mkdir "$work/prometheus" && cp ops/prometheus/*.yml "$work/prometheus/" && cp "$work/key" "$work/prometheus/crema.key"
promtool check config "$work/prometheus/prometheus.yml" >/dev/null
(cd ops/prometheus && promtool test rules alerts.test.yml >/dev/null)
python3 -m json.tool ops/grafana/crema.json >/dev/null
# Families only a replicated node (a cluster) exports: this single node has
# none of them, so they are looked for in the code that writes /metrics (the
# cluster test reads them from a replicated node's /metrics).
replicated_only=" crema_cluster_store_has_owner crema_journal_connected crema_journal_quorum "
for name in $(grep -ohE '\b(crema|process)_[a-z_]+' ops/grafana/crema.json ops/prometheus/alerts.yml | sed -E 's/_(bucket|sum|count)$//' | sort -u); do
  if [[ "$replicated_only" == *" $name "* ]]; then
    grep -q "$name" src/http/handlers.rs || { echo "an alert queries $name, which no replicated node exports" >&2; missing=1; }
    continue
  fi
  grep -q "^$name[{ _]" "$work/metrics" || { echo "the dashboard or an alert queries $name, which /metrics does not have" >&2; missing=1; }
done
[ $missing = 0 ] && echo "metrics: promtool check passed ($(grep -c '^[a-z]' "$work/metrics") samples, every family present); alert rules and their tests pass; the dashboard queries only exported series"
exit $missing
