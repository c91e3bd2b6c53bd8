#!/usr/bin/env bash
# Side-by-side speed of lmhost and llama.cpp on the same synthesized GGUF
# files, in one run, interleaved (the machine may be shared: only the ratios
# from one run mean much).
#
#   bench/compare.sh                       # lmhost only
#   LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin bench/compare.sh
#
# Environment (defaults in brackets):
#   LMHOST         lmhost executable [build/lmhost next to this script's repo]
#   LLAMA_CPP_BIN  folder holding llama-bench (a llama.cpp build); unset = skip
#   LMHOST_BASE    optional second lmhost (e.g. an older build): extra "before" columns
#   MODELS_DIR     cache of synthesized files [~/.cache/lmhost-bench]
#   SHAPES         [qwen2.5-0.5b llama-3.2-1b]
#   TYPES          [Q4_0 Q8_0 Q4_K_M]
#   THREADS [2]  P (prompt tokens) [512]  N (generated tokens) [128]
#   REPS (repetitions per run) [3]  ROUNDS (interleaved rounds) [1]
#   OUT            folder for the raw JSON results [a new temp folder]
#
# Prints a markdown table: pp/tg tokens/s of both (median of all samples),
# the ratios ours / llama.cpp, and each decode figure as a fraction of the
# memory read bandwidth (weight bytes per token x tokens/s / bandwidth), two
# ways:
#   paired: our bench runs with --membw, which precedes every generated token
#           with a plain read of that token's weights on the same threads, so
#           the bandwidth is read at the same moment as the decode (this
#           host's bandwidth moves by half within minutes); llama.cpp's figure
#           is taken against the median of those paired reads of the file.
#   best:   against the best pass of `lmhost bench --membw` alone, run before
#           and after the whole comparison (the machine's peak).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
LMHOST=${LMHOST:-$here/../build/lmhost}
MODELS_DIR=${MODELS_DIR:-$HOME/.cache/lmhost-bench}
SHAPES=${SHAPES:-"qwen2.5-0.5b llama-3.2-1b"}
TYPES=${TYPES:-"Q4_0 Q8_0 Q4_K_M"}
THREADS=${THREADS:-2}
P=${P:-512}
N=${N:-128}
REPS=${REPS:-3}
ROUNDS=${ROUNDS:-1}
OUT=${OUT:-$(mktemp -d /tmp/lmhost-compare.XXXXXX)}

[[ -x $LMHOST ]] || { echo "compare.sh: lmhost not found at $LMHOST (set LMHOST)" >&2; exit 1; }
LLAMA_BENCH=""
if [[ -n ${LLAMA_CPP_BIN:-} ]]; then
  for c in "$LLAMA_CPP_BIN/llama-bench" "$LLAMA_CPP_BIN/bin/llama-bench"; do
    [[ -x $c ]] && { LLAMA_BENCH=$c; break; }
  done
  [[ -n $LLAMA_BENCH ]] || { echo "compare.sh: no llama-bench in $LLAMA_CPP_BIN" >&2; exit 1; }
fi
mkdir -p "$MODELS_DIR" "$OUT"

files=()
for s in $SHAPES; do
  for t in $TYPES; do
    f=$MODELS_DIR/$s-$t.gguf
    if [[ ! -s $f ]]; then
      echo "synthesizing $f" >&2
      "$LMHOST" synth --shape "$s" --type "$t" -o "$f.tmp" >&2 && mv "$f.tmp" "$f"
    fi
    files+=("$f")
  done
done

echo "measuring memory read bandwidth ($THREADS threads)" >&2
"$LMHOST" bench --membw -t "$THREADS" --json > "$OUT/membw-0.json"

run_ours() {  # file round
  local name; name=$(basename "$1" .gguf)
  echo "lmhost      $name (round $2)" >&2
  "$LMHOST" bench -m "$1" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" --membw --json > "$OUT/ours-$name-$2.json"
}
run_base() {  # file round
  [[ -n ${LMHOST_BASE:-} ]] || return 0
  local name; name=$(basename "$1" .gguf)
  echo "lmhost base $name (round $2)" >&2
  "$LMHOST_BASE" bench -m "$1" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" --json > "$OUT/base-$name-$2.json"
}
run_llama() {  # file round
  [[ -n $LLAMA_BENCH ]] || return 0
  local name; name=$(basename "$1" .gguf)
  echo "llama-bench $name (round $2)" >&2
  "$LLAMA_BENCH" -m "$1" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" -o json > "$OUT/llama-$name-$2.json" 2>/dev/null
}

for ((r = 1; r <= ROUNDS; r++)); do
  for f in "${files[@]}"; do
    if (( r % 2 )); then run_ours "$f" "$r"; run_llama "$f" "$r"; run_base "$f" "$r"
    else run_base "$f" "$r"; run_llama "$f" "$r"; run_ours "$f" "$r"; fi
  done
done
"$LMHOST" bench --membw -t "$THREADS" --json > "$OUT/membw-1.json"

python3 - "$OUT" "$THREADS" "$P" "$N" "${files[@]}" <<'EOF'
import glob, json, os, statistics, sys
out, threads, P, N = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
files = sys.argv[5:]
bw = max(json.load(open(f))["membw_gb_per_s"] for f in glob.glob(os.path.join(out, "membw-*.json")))
def med(v): return statistics.median(v) if v else None
def fmt(v, d=1): return "-" if v is None else f"{v:.{d}f}"
def ratio(a, b): return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"
print(f"memory read bandwidth: {bw:.1f} GB/s ({threads} threads, best pass)\n")
has_base = bool(glob.glob(os.path.join(out, "base-*.json")))
extra_h = f" pp{P} before | tg{N} before |" if has_base else ""
extra_s = "--:|--:|" if has_base else ""
print(f"| model | type | MiB | pp{P} lmhost | pp{P} llama.cpp | pp ratio | tg{N} lmhost | tg{N} llama.cpp | tg ratio | paired read GB/s | lmhost % bw paired | llama.cpp % bw paired | lmhost % bw best | llama.cpp % bw best |{extra_h}")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + extra_s)
for f in files:
    name = os.path.basename(f)[:-5]
    ours = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, f"ours-{name}-*.json")))]
    if not ours: continue
    pp = med([s for o in ours for s in o.get("pp_samples", [])])
    tg = med([s for o in ours for s in o.get("tg_samples", [])])
    lpp, ltg = [], []
    for p in glob.glob(os.path.join(out, f"llama-{name}-*.json")):
        try: rows = json.load(open(p))
        except Exception: continue
        for row in rows:
            (lpp if row["n_gen"] == 0 else ltg).extend(row["samples_ts"])
    lpp, ltg = med(lpp), med(ltg)
    bpt = ours[0]["weight_bytes_per_token"]
    frac = lambda t: "-" if t is None else f"{100 * t * bpt / 1e9 / bw:.0f}%"
    pread = med([o["tg_paired_read_gb_per_s"] for o in ours if "tg_paired_read_gb_per_s" in o])
    pfrac = med([s for o in ours for s in o.get("tg_paired_fraction_samples", [])])
    pf = "-" if pfrac is None else f"{100 * pfrac:.0f}%"
    lpf = "-" if ltg is None or pread is None else f"{100 * ltg * bpt / 1e9 / pread:.0f}%"
    shape, typ = name.split("-Q", 1) if "-Q" in name else name.rsplit("-", 1)
    typ = "Q" + typ if "-Q" in name else typ
    extra = ""
    if has_base:
        base = [json.load(open(p)) for p in glob.glob(os.path.join(out, f"base-{name}-*.json"))]
        extra = (f" {fmt(med([s for o in base for s in o.get('pp_samples', [])]))} |"
                 f" {fmt(med([s for o in base for s in o.get('tg_samples', [])]))} |")
    print(f"| {shape} | {typ} | {ours[0]['file_size'] / 2**20:.0f} | {fmt(pp)} | {fmt(lpp)} | {ratio(pp, lpp)} | "
          f"{fmt(tg)} | {fmt(ltg)} | {ratio(tg, ltg)} | {fmt(pread)} | {pf} | {lpf} | {frac(tg)} | {frac(ltg)} |{extra}")
print(f"\nraw results: {out}")
EOF
