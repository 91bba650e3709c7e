#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time (default 60 s each)
# on the nightly toolchain, installing cargo-fuzz if it is missing. A crash
# leaves its input in fuzz/artifacts/TARGET/ and stops the run; turn it into
# a regression test beside the code it broke.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(snapshot_codec order_request idempotency_key)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

for target in "${targets[@]}"; do
    echo "fuzz: $target for $seconds s" >&2
    mkdir -p "corpus/$target"
    cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1
done
