#!/usr/bin/env bash
# Installs the Debian 12 packages lmhost needs to build and test, skipping what is present.
# Called by `make build`, `make test` and `make serve`; safe to run repeatedly.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build ccache pkg-config clang
  nlohmann-json3-dev libpcre2-dev libutf8proc-dev libcli11-dev libboost1.81-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libhiredis-dev redis-server
  libyaml-cpp-dev libssl-dev libcurl4-openssl-dev prometheus wrk
  python3
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
