#!/usr/bin/env bash
# Schema fuzzing: starts the release `crema serve` on a free port with a
# throw-away data dir and runs schemathesis (from PyPI, in a virtualenv kept
# outside the clone) against its /openapi.json: no 5xx, and every answer must
# match the document (status codes, schemas, content types, headers).
#
#   scripts/schemathesis.sh [MAX_SECONDS]     (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
venv="${CREMA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/crema}/schemathesis-$version"
if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "schemathesis: installing $version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

binary="${CARGO_TARGET_DIR:-target}/release/crema"
[ -x "$binary" ] || { echo "schemathesis: build first ($binary is missing)" >&2; exit 1; }
data="$(mktemp -d)"
out="$(mktemp)"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$data" "$out"; }
trap cleanup EXIT
CREMA_BARISTA__BREW_SCALE=0 RUST_LOG=error "$binary" serve --bind 127.0.0.1:0 --data "$data" >"$out" &
pid=$!
for _ in $(seq 100); do
    base="$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$out")"
    [ -n "$base" ] && break
    sleep 0.1
done
[ -n "$base" ] || { echo "schemathesis: crema did not start" >&2; exit 1; }
# The admin key the first start printed: the staff routes are fuzzed too.
key="$(grep -o 'crema_[0-9a-f]\{64\}' "$out" | head -1)"
[ -n "$key" ] || { echo "schemathesis: crema printed no admin key" >&2; exit 1; }
echo "schemathesis: $base/openapi.json for at most ${1:-60} s" >&2
# /admin/backup is left out: it writes a copy of the data wherever it is told.
"$venv/bin/schemathesis" run "$base/openapi.json" --header "Authorization: Bearer $key" --exclude-path /admin/backup \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples 20 --max-time "${1:-60}" --seed 1 --generation-database none --suppress-health-check all
