#!/usr/bin/env bash
# Start-up time and resident memory of `lmhost serve` for one model:
#   - start-up: from spawning the process to the first 200 from /ready, on a
#     warm page cache (the file is read once first), median of RUNS starts;
#   - memory: VmRSS (and its anonymous / file-backed parts) after the model is
#     loaded and one chat request of 32 tokens has run, against the target
#     file size + KV cache + 64 MiB (the KV cache from the model's shape and
#     the serve settings: layers x (K + V widths) x 2 bytes x context x slots).
#
#   bench/mem_startup.sh
# Environment (defaults in brackets):
#   LMHOST [build/lmhost]  MODEL (a GGUF file) [~/.cache/lmhost-bench/qwen2.5-0.5b-Q4_0.gguf, synthesized if absent]
#   PARALLEL [4]  CTX (per slot; 0 = the model's, at most 4096) [0]  THREADS [2]  RUNS [5]  PORT [18441]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
LMHOST=${LMHOST:-$here/../build/lmhost}
MODELS_DIR=${MODELS_DIR:-$HOME/.cache/lmhost-bench}
MODEL=${MODEL:-$MODELS_DIR/qwen2.5-0.5b-Q4_0.gguf}
PARALLEL=${PARALLEL:-4}
CTX=${CTX:-0}
THREADS=${THREADS:-2}
RUNS=${RUNS:-5}
PORT=${PORT:-18441}

[[ -x $LMHOST ]] || { echo "mem_startup.sh: lmhost not found at $LMHOST (set LMHOST)" >&2; exit 1; }
if [[ ! -s $MODEL ]]; then
  mkdir -p "$(dirname "$MODEL")"
  echo "synthesizing $MODEL" >&2
  "$LMHOST" synth --shape qwen2.5-0.5b --type Q4_0 -o "$MODEL.tmp" >&2 && mv "$MODEL.tmp" "$MODEL"
fi
cat "$MODEL" > /dev/null  # warm the page cache

pid=""
cleanup() { if [[ -n $pid ]]; then kill "$pid" 2> /dev/null; wait "$pid" 2> /dev/null || true; fi; pid=""; }
trap cleanup EXIT

start() {  # appends the seconds to /ready to $times (runs in this shell: $pid stays set)
  local t0 t1
  t0=$(date +%s.%N)
  "$LMHOST" serve --port "$PORT" -m "bench=$MODEL" --parallel "$PARALLEL" -c "$CTX" -t "$THREADS" -q > /dev/null 2>&1 &
  pid=$!
  for ((i = 0; i < 3000; i++)); do
    if curl -fs -o /dev/null "http://127.0.0.1:$PORT/ready"; then
      t1=$(date +%s.%N)
      times+=("$(python3 -c "print(f'{$t1 - $t0:.3f}')")")
      return 0
    fi
    kill -0 "$pid" 2> /dev/null || { echo "mem_startup.sh: lmhost serve exited" >&2; return 1; }
    sleep 0.005
  done
  echo "mem_startup.sh: not ready after 15 s" >&2
  return 1
}

times=()
for ((r = 0; r < RUNS; r++)); do
  start
  if (( r + 1 < RUNS )); then cleanup; fi
done
curl -fs -o /dev/null "http://127.0.0.1:$PORT/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"bench","max_tokens":32,"ignore_eos":true,"messages":[{"role":"user","content":"Say something."}]}'
status=$(cat "/proc/$pid/status")
cleanup

python3 - "$MODEL" "$PARALLEL" "$CTX" "$LMHOST" "${times[*]}" "$status" <<'EOF'
import json, os, statistics, subprocess, sys
model, parallel, ctx, lmhost, times, status = sys.argv[1:7]
times = [float(t) for t in times.split()]
kb = {l.split(":")[0]: int(l.split()[1]) for l in status.splitlines() if l.endswith(" kB")}
show = json.loads(subprocess.run([lmhost, "show", "-m", model, "--json"], capture_output=True, text=True, check=True).stdout)
md, arch = show["metadata"], show["architecture"]
n_layer = md[f"{arch}.block_count"]
n_embd = md[f"{arch}.embedding_length"]
n_head = md[f"{arch}.attention.head_count"]
n_kv = md.get(f"{arch}.attention.head_count_kv", n_head)
hd = md.get(f"{arch}.attention.key_length", n_embd // n_head)
n_ctx = int(ctx) or min(md.get(f"{arch}.context_length", 4096), 4096)
kv = n_layer * 2 * n_kv * hd * 2 * n_ctx * int(parallel)
size = os.path.getsize(model)
rss = kb["VmRSS"] * 1024
target = size + kv + (64 << 20)
mib = lambda b: b / 2**20
print(f"model: {os.path.basename(model)} ({mib(size):.1f} MiB), {parallel} slots x {n_ctx} context, KV cache {mib(kv):.1f} MiB (F16)")
print(f"start-up to /ready (warm page cache): median {statistics.median(times):.3f} s, min {min(times):.3f} s over {len(times)} starts (target < 1 s)")
print(f"resident after load + one request: {mib(rss):.1f} MiB (anon {kb.get('RssAnon', 0) / 1024:.1f}, file {kb.get('RssFile', 0) / 1024:.1f}); "
      f"target <= file + KV + 64 MiB = {mib(target):.1f} MiB: {'met' if rss <= target else 'MISSED by %.1f MiB' % mib(rss - target)}")
EOF
