#!/usr/bin/env bash
# Embedding throughput of lmhost and llama.cpp's llama-embedding on the same
# synthesized file (minilm-l6 shape), the same input length and batch,
# interleaved in one run (the machine may be shared: only ratios from one run
# mean much).
#
#   bench/compare_embed.sh
#   LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin bench/compare_embed.sh
#
# Environment (defaults in brackets):
#   LMHOST         lmhost executable [build/lmhost next to this script's repo]
#   LLAMA_CPP_BIN  folder holding llama-embedding; unset = lmhost only
#   MODELS_DIR     cache of synthesized files [~/.cache/lmhost-bench]
#   SHAPE [minilm-l6]  TYPE [F16]  THREADS [2]  LEN (tokens per input incl. CLS/SEP) [128]
#   BATCH (inputs per call) [32]  REPS [3]  ROUNDS [2]
#
# Both sides time the encoder alone: lmhost bench's embed call, and
# llama-embedding's "prompt eval time" (llama_perf), over BATCH inputs of LEN
# tokens. llama-embedding is run twice per round: with the whole batch in one
# decode (-b LEN*BATCH, "same batch") and with one input per decode (-b LEN;
# llama.cpp attends over every token of a decode, so this is its faster
# setting for short inputs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
LMHOST=${LMHOST:-$here/../build/lmhost}
MODELS_DIR=${MODELS_DIR:-$HOME/.cache/lmhost-bench}
SHAPE=${SHAPE:-minilm-l6}
TYPE=${TYPE:-F16}
THREADS=${THREADS:-2}
LEN=${LEN:-128}
BATCH=${BATCH:-32}
REPS=${REPS:-3}
ROUNDS=${ROUNDS:-2}
OUT=$(mktemp -d /tmp/lmhost-compare-embed.XXXXXX)

[[ -x $LMHOST ]] || { echo "compare_embed.sh: lmhost not found at $LMHOST (set LMHOST)" >&2; exit 1; }
LLAMA_EMB=""
if [[ -n ${LLAMA_CPP_BIN:-} ]]; then
  for c in "$LLAMA_CPP_BIN/llama-embedding" "$LLAMA_CPP_BIN/bin/llama-embedding"; do
    [[ -x $c ]] && { LLAMA_EMB=$c; break; }
  done
  [[ -n $LLAMA_EMB ]] || { echo "compare_embed.sh: no llama-embedding in $LLAMA_CPP_BIN" >&2; exit 1; }
fi
mkdir -p "$MODELS_DIR"
f=$MODELS_DIR/$SHAPE-$TYPE.gguf
if [[ ! -s $f ]]; then
  echo "synthesizing $f" >&2
  "$LMHOST" synth --shape "$SHAPE" --type "$TYPE" -o "$f.tmp" >&2 && mv "$f.tmp" "$f"
fi

# BATCH lines of words that are one token each, LEN - 2 words a line (CLS and SEP make LEN).
prompts=$OUT/prompts.txt
words=()
for w in the of and to in is was for on as with by at from his her it he she they we you are be this have had \
         not but or an which one all were when there their can has more will would if out so what about up into \
         them some time only other new these two may first any like then its also than now after most made over; do
  n=$("$LMHOST" tokenize -m "$f" "$w" | tr -cd ',' | wc -c)
  [[ $n == 0 ]] && words+=("$w")
done
(( ${#words[@]} > 10 )) || { echo "compare_embed.sh: the model's vocabulary lacks plain English words" >&2; exit 1; }
python3 - "$prompts" "$BATCH" "$((LEN - 2))" "${words[@]}" <<'EOF'
import random, sys
path, batch, n, words = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
rng = random.Random(7)
with open(path, "w") as fh:
    for _ in range(batch):
        fh.write(" ".join(rng.choice(words) for _ in range(n)) + "\n")
EOF
got=$("$LMHOST" tokenize -m "$f" --add-special --file <(head -1 "$prompts" | tr -d '\n') | tr -cd ',' | wc -c)
(( got + 1 == LEN )) || echo "compare_embed.sh: warning: a prompt line is $((got + 1)) tokens, not $LEN" >&2

run_ours() {
  echo "lmhost          round $1" >&2
  "$LMHOST" bench -m "$f" -p "$LEN" -b "$BATCH" -t "$THREADS" -r "$REPS" --json > "$OUT/ours-$1.json"
}
run_llama() {  # round ubatch-tokens tag
  [[ -n $LLAMA_EMB ]] || return 0
  for ((i = 0; i < REPS; i++)); do
    echo "llama-embedding round $1 (-b $2) rep $i" >&2
    "$LLAMA_EMB" -m "$f" -f "$prompts" -t "$THREADS" -c "$2" -b "$2" -ub "$2" --pooling mean --embd-normalize 2 \
      --embd-output-format json > /dev/null 2> "$OUT/llama-$3-$1-$i.log" || { tail -5 "$OUT/llama-$3-$1-$i.log" >&2; exit 1; }
  done
}
for ((r = 1; r <= ROUNDS; r++)); do
  if (( r % 2 )); then run_ours "$r"; run_llama "$r" $((LEN * BATCH)) same; run_llama "$r" "$LEN" one
  else run_llama "$r" "$LEN" one; run_llama "$r" $((LEN * BATCH)) same; run_ours "$r"; fi
done

python3 - "$OUT" "$BATCH" "$LEN" "$THREADS" "$f" <<'EOF'
import glob, json, os, re, statistics, sys
out, batch, length, threads, model = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ours = [s for p in glob.glob(os.path.join(out, "ours-*.json")) for s in json.load(open(p))["embed_samples"]]
def llama(tag):
    v = []
    for p in glob.glob(os.path.join(out, f"llama-{tag}-*.log")):
        m = re.search(r"prompt eval time =\s*([0-9.]+) ms /\s*([0-9]+) tokens", open(p).read())
        if m: v.append(batch / (float(m.group(1)) / 1000.0))
    return statistics.median(v) if v else None
o = statistics.median(ours)
same, one = llama("same"), llama("one")
r = lambda a, b: "-" if b is None else f"{a / b:.2f}x"
f = lambda v: "-" if v is None else f"{v:.2f}"
print(f"model: {os.path.basename(model)}, {batch} inputs x {length} tokens, {threads} threads\n")
print("| lmhost emb/s | llama.cpp emb/s (whole batch in one decode) | ratio | llama.cpp emb/s (one input per decode) | ratio |")
print("|--:|--:|--:|--:|--:|")
print(f"| {o:.2f} | {f(same)} | {r(o, same)} | {f(one)} | {r(o, one)} |")
print(f"\nraw results: {out}")
EOF
