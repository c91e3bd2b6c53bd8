#!/usr/bin/env bash
# Debian 12 packages that only the tests need (on top of install-deps.sh):
# nginx (nginx -t on the generated site, the load balancer of the scale-out
# test) and chromium (the playground's browser test). Kept apart so the
# container build stage does not pull a browser. Called by `make test`.
set -euo pipefail

PKGS=(nginx chromium fonts-dejavu-core python3-yaml nodejs)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm may come with Debian's nodejs or a separately installed one.
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-test-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-test-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Installing nginx must not start a system nginx on port 80 (the tests run
# their own on loopback ports): where no policy-rc.d exists, add one for the
# duration of the install.
cleanup=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  cleanup=1
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
[ -n "$cleanup" ] && $SUDO rm -f /usr/sbin/policy-rc.d
exit "${status:-0}"
