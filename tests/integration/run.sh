#!/usr/bin/env bash
# Integration tests against the real `lmhost serve` binary, driven by node's
# built-in test runner (node --test).
#
#   run.sh LMHOST_BINARY SHARED_DIR SUITE
#
# SUITE:
#   clients  the official `openai` and `ollama` npm packages (installed here
#            into node_modules with npm when missing) against one server
#   greedy   temperature-0 completions over HTTP == `lmhost logits --greedy`
#   serve    the binary itself: flags, HOST/PORT, several models, exit codes,
#            graceful shutdown on SIGTERM (these tests start their own servers)
#   install  only installs the npm packages (a ctest fixture: the gtest that
#            runs toolcalls_client.mjs against a scripted server needs them)
#
# The server serves the golden qwen2 and llama models when SHARED_DIR/golden
# exists, the built-in demo model otherwise. Exit code 77 = skipped (no node,
# or for `clients` no npm / registry unreachable); ctest maps it to SKIP.
set -u
BIN=${1:?usage: run.sh LMHOST_BINARY SHARED_DIR SUITE}
SHARED=${2:?}
SUITE=${3:?}
HERE=$(cd "$(dirname "$0")" && pwd)
SKIP=77

if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: node is not installed (apt-get install nodejs npm)"
  exit $SKIP
fi
[ -x "$BIN" ] || { echo "FAIL: lmhost binary not found at $BIN"; exit 1; }

if [ "$SUITE" = clients ] || [ "$SUITE" = install ]; then
  if [ ! -d "$HERE/node_modules/openai" ] || [ ! -d "$HERE/node_modules/ollama" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "SKIP: npm is not installed, cannot install the openai/ollama client packages"
      exit $SKIP
    fi
    echo "installing the openai and ollama npm packages into $HERE/node_modules ..."
    if ! (cd "$HERE" && timeout 300 npm install --no-audit --no-fund --loglevel=error 2>&1); then
      if ! (cd "$HERE" && timeout 20 npm ping >/dev/null 2>&1); then
        echo "SKIP: the npm registry is unreachable, cannot install the openai/ollama client packages"
        exit $SKIP
      fi
      echo "FAIL: npm install failed although the registry answers"
      exit 1
    fi
  fi
fi

[ "$SUITE" = install ] && exit 0

# Models: the golden ones when ../shared exists (qwen2, llama for chat, bert
# for embeddings), else the demo models (demo, demo-embed).
MODEL_ARGS=()
MODEL_FILES=""
if [ -f "$SHARED/golden/models/qwen2-tiny-q8_0.gguf" ]; then
  MODEL_FILES="qwen2-tiny=$SHARED/golden/models/qwen2-tiny-q8_0.gguf,llama-spm-tiny=$SHARED/golden/models/llama-spm-tiny-f32.gguf"
  MODEL_ARGS=(--model "qwen2-tiny=$SHARED/golden/models/qwen2-tiny-q8_0.gguf"
              --model "llama-spm-tiny=$SHARED/golden/models/llama-spm-tiny-f32.gguf")
  # An embedding model too (listed last; the demo set has demo-embed).
  if [ -f "$SHARED/golden/models/bert-tiny-f32.gguf" ]; then
    MODEL_ARGS+=(--model "bert-tiny=$SHARED/golden/models/bert-tiny-f32.gguf")
  fi
fi

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

export LMHOST_BINARY="$BIN" LMHOST_SHARED_DIR="$SHARED" LMHOST_MODEL_FILES="$MODEL_FILES"
# Keep the demo model out of the user's cache.
export XDG_CACHE_HOME="${TMPDIR:-/tmp}/lmhost-integration-cache-$(id -u)"
mkdir -p "$XDG_CACHE_HOME"

if [ "$SUITE" = serve ]; then
  exec node --test --test-concurrency=1 "$HERE/serve_binary.test.mjs"
fi

PORT=$(free_port)
LOG=$(mktemp "${TMPDIR:-/tmp}/lmhost-integration-XXXXXX.log")
"$BIN" serve --host 127.0.0.1 --port "$PORT" --parallel 4 --ctx 1024 -t 1 "${MODEL_ARGS[@]}" >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
  kill -TERM "$SERVER" 2>/dev/null
  wait "$SERVER" 2>/dev/null
  rm -f "$LOG"
}
trap cleanup EXIT

# Wait for the models (health 200).
for _ in $(seq 1 300); do
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "FAIL: lmhost serve exited during start-up:"; cat "$LOG"; exit 1
  fi
  code=$(node -e "fetch('http://127.0.0.1:$PORT/health').then(r=>console.log(r.status)).catch(()=>console.log(0))")
  [ "$code" = 200 ] && break
  sleep 0.1
done
[ "$code" = 200 ] || { echo "FAIL: the server did not become healthy:"; cat "$LOG"; exit 1; }

export LMHOST_URL="http://127.0.0.1:$PORT"
case "$SUITE" in
  clients) node --test --test-concurrency=1 "$HERE/openai_client.test.mjs" "$HERE/ollama_client.test.mjs" ;;
  greedy) node --test "$HERE/greedy.test.mjs" ;;
  *) echo "unknown suite $SUITE"; exit 2 ;;
esac
rc=$?
if [ $rc -ne 0 ]; then echo "--- server log (tail) ---"; tail -50 "$LOG"; fi
exit $rc
