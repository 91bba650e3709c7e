#!/usr/bin/env bash
# Installs what building and testing crema needs beyond the Rust toolchain:
# libclang for the rocksdb crate's bindgen, a C++ compiler for RocksDB itself,
# Chromium and Node.js for the browser tests, and Python with venv for
# schemathesis (scripts/schemathesis.sh installs it from PyPI into a virtualenv).
# Idempotent: does nothing when everything is already there.
set -euo pipefail

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
    exit 0
fi
echo "installing: ${need[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
