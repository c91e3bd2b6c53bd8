#!/usr/bin/env bash
# Server throughput: lmhost serve and (when LLAMA_CPP_BIN has it) llama-server
# on the same synthesized file with the same number of parallel slots, each
# driven by bench/server_client.mjs (C concurrent streaming chat clients,
# ignore_eos, N tokens each), interleaved rounds in one run. Prints aggregate
# generated tokens/s and time-to-first-token p50/p99 for both, and the ratio.
#
#   bench/server_bench.sh
#   LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin bench/server_bench.sh
#
# Environment (defaults in brackets):
#   LMHOST [build/lmhost]  LLAMA_CPP_BIN (folder with llama-server; unset = lmhost only)
#   MODELS_DIR [~/.cache/lmhost-bench]  SHAPE [qwen2.5-0.5b]  TYPE [Q4_0]
#   THREADS [2]  SLOTS [8]  CLIENTS [8]  REQUESTS (per client per round) [3]
#   N (max_tokens) [128]  CTX (context per slot) [512]  ROUNDS [2]  PORT [18431]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
LMHOST=${LMHOST:-$here/../build/lmhost}
MODELS_DIR=${MODELS_DIR:-$HOME/.cache/lmhost-bench}
SHAPE=${SHAPE:-qwen2.5-0.5b}
TYPE=${TYPE:-Q4_0}
THREADS=${THREADS:-2}
SLOTS=${SLOTS:-8}
CLIENTS=${CLIENTS:-8}
REQUESTS=${REQUESTS:-3}
N=${N:-128}
CTX=${CTX:-512}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-18431}
OUT=$(mktemp -d /tmp/lmhost-server-bench.XXXXXX)

[[ -x $LMHOST ]] || { echo "server_bench.sh: lmhost not found at $LMHOST (set LMHOST)" >&2; exit 1; }
command -v node > /dev/null || { echo "server_bench.sh: node is required for the client" >&2; exit 1; }
LLAMA_SERVER=""
if [[ -n ${LLAMA_CPP_BIN:-} ]]; then
  for c in "$LLAMA_CPP_BIN/llama-server" "$LLAMA_CPP_BIN/bin/llama-server"; do
    [[ -x $c ]] && { LLAMA_SERVER=$c; break; }
  done
  [[ -n $LLAMA_SERVER ]] || echo "server_bench.sh: no llama-server in $LLAMA_CPP_BIN; lmhost only" >&2
fi
mkdir -p "$MODELS_DIR"
f=$MODELS_DIR/$SHAPE-$TYPE.gguf
if [[ ! -s $f ]]; then
  echo "synthesizing $f" >&2
  "$LMHOST" synth --shape "$SHAPE" --type "$TYPE" -o "$f.tmp" >&2 && mv "$f.tmp" "$f"
fi

pid=""
cleanup() { if [[ -n $pid ]]; then kill "$pid" 2> /dev/null; wait "$pid" 2> /dev/null || true; fi; pid=""; }
trap cleanup EXIT

wait_ready() {  # path
  for ((i = 0; i < 600; i++)); do
    curl -fs "http://127.0.0.1:$PORT$1" > /dev/null 2>&1 && return 0
    kill -0 "$pid" 2> /dev/null || { echo "server_bench.sh: the server exited" >&2; return 1; }
    sleep 0.1
  done
  echo "server_bench.sh: the server did not become ready" >&2
  return 1
}

client() {  # tag round [extra client flags]
  node "$here/server_client.mjs" --url "http://127.0.0.1:$PORT" --model bench --clients 1 --requests 1 \
    --max-tokens 8 "${@:3}" > /dev/null  # warm-up
  node "$here/server_client.mjs" --url "http://127.0.0.1:$PORT" --model bench --clients "$CLIENTS" \
    --requests "$REQUESTS" --max-tokens "$N" "${@:3}" > "$OUT/$1-$2.json"
  cat "$OUT/$1-$2.json" >&2
}

# A fresh port for every start: the streams' TIME-WAIT sockets can keep the
# previous one from being bound again right away.
next_port() { PORT=$((PORT + 1)); }

run_ours() {
  next_port
  echo "lmhost serve, round $1" >&2
  "$LMHOST" serve --port "$PORT" -m "bench=$f" --parallel "$SLOTS" -c "$CTX" -t "$THREADS" -q \
    > "$OUT/lmhost-$1.log" 2>&1 &
  pid=$!
  # --logprobs: lmhost sends no chunk for a token with empty text (most of a
  # synthesized vocabulary); with logprobs it does (costs it a log-sum-exp per token).
  wait_ready /ready && client ours "$1" --logprobs
  cleanup
}
run_llama() {
  [[ -n $LLAMA_SERVER ]] || return 0
  next_port
  echo "llama-server, round $1" >&2
  "$LLAMA_SERVER" --port "$PORT" -m "$f" -np "$SLOTS" -c $((CTX * SLOTS)) -t "$THREADS" -tb "$THREADS" \
    --alias bench > "$OUT/llama-$1.log" 2>&1 &
  pid=$!
  wait_ready /health && client llama "$1"
  cleanup
}
for ((r = 1; r <= ROUNDS; r++)); do
  if (( r % 2 )); then run_ours "$r"; run_llama "$r"; else run_llama "$r"; run_ours "$r"; fi
done

python3 - "$OUT" "$f" "$SLOTS" "$CLIENTS" "$N" "$THREADS" <<'EOF'
import glob, json, os, statistics, sys
out, model, slots, clients, n, threads = sys.argv[1:7]
def load(tag):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, f"{tag}-*.json")))]
def agg(rs):
    if not rs: return None
    return {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "stream_tokens_per_s_p50")} | {"errors": sum(r["errors"] for r in rs)}
o, l = agg(load("ours")), agg(load("llama"))
print(f"model: {os.path.basename(model)}, {slots} slots, {clients} concurrent streams, {n} tokens each, {threads} threads\n")
print("| server | generated tok/s | TTFT p50 ms | TTFT p99 ms | per-stream tok/s | errors |")
print("|---|--:|--:|--:|--:|--:|")
for name, a in (("lmhost", o), ("llama-server", l)):
    if a: print(f"| {name} | {a['tokens_per_s']:.1f} | {a['ttft_p50_ms']:.0f} | {a['ttft_p99_ms']:.0f} | {a['stream_tokens_per_s_p50']:.1f} | {a['errors']} |")
if o and l: print(f"\nthroughput ratio lmhost / llama-server: {o['tokens_per_s'] / l['tokens_per_s']:.2f}x")
print(f"\nraw results: {out}")
EOF
