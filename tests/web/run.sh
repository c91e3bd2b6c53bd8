#!/usr/bin/env bash
# ctest wrapper: run.sh LMHOST_BINARY SOURCE_DIR OUT_DIR TEST.mjs
# Installs the npm packages of package.json into tests/web/node_modules on
# first use (from the npm registry; the lock file pins versions) and runs one
# node:test file. Exit 77 (ctest: skipped) when the packages cannot be
# installed (no registry) or a required program is missing.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export LMHOST_BINARY="$(realpath "$1")" LMHOST_SOURCE_DIR="$(realpath "$2")" LMHOST_TEST_OUT="$(realpath -m "$3")"
test_file="$4"
mkdir -p "$LMHOST_TEST_OUT"
command -v node >/dev/null || { echo "SKIP: node is not installed (scripts/install-test-deps.sh)"; exit 77; }
if [ "$test_file" = playground.test.mjs ] && [ ! -x "${LMHOST_CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "SKIP: no Chromium at ${LMHOST_CHROMIUM:-/usr/bin/chromium} (Debian package chromium; scripts/install-test-deps.sh)"
  exit 77
fi
(
  flock 9
  if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
    echo "installing npm packages into $here/node_modules"
    (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) || exit 77
  fi
) 9>"$here/.npm-install.lock"
status=$?
if [ $status -eq 77 ]; then
  echo "SKIP: could not install the npm packages (@apidevtools/swagger-parser, playwright-core): is the npm registry reachable?"
  exit 77
fi
cd "$here" && exec node --test --test-reporter=spec "$test_file"
