#!/usr/bin/env bash
# Reproduces issue 3's figures: tokens/s of stock llama.cpp (mmap; page cache warm, and
# dropped before every run) against llama.cpp + moepool (pool holding 100% and 25% of the
# experts), on a synthetic qwen3moe big enough that I/O matters, plus the per-layer cost
# of the eval-callback round trip. Prints one Markdown table; bench/llama/RESULTS.md
# quotes it.
#
# Usage: bench/llama/run.sh [BUILD_DIR] [WORK_DIR]
# Environment: LAYERS (12: 4.09 GiB, 3.80 GiB of Q4_K experts), RUNS (3, medians),
#   TOKENS (64 greedy steps after an 8-token prompt), THREADS (nproc).
# Needs root (drop_caches) and a tree built with the llama.cpp adapter (scripts/setup).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo="$(pwd)"
bin="$repo/${1:-build}/bin"
work="${2:-/var/tmp/moepool-llama-bench}"
layers="${LAYERS:-12}" runs="${RUNS:-3}" tokens="${TOKENS:-64}" threads="${THREADS:-$(nproc)}"
prompt="11,42,7,199,3,64,128,5"
for tool in moepoold moepoolctl moepool-synth moepool-llama; do
  [[ -x "$bin/$tool" ]] || { echo "$bin/$tool is not built (scripts/setup)"; exit 1; }
done
[[ $EUID -eq 0 ]] || { echo "run as root: the cold runs drop the page cache"; exit 1; }
mkdir -p "$work"

model="$work/qwen3moe-${layers}x128-q4_K-s5.gguf"
# Qwen3-30B-A3B's expert shape (128 experts, top-8, embd 2048, expert ffn 768, Q4_K).
spec=(--arch qwen3moe --type q4_K --embd 2048 --ffn 768 --experts 128 --top-k 8
      --layers "$layers" --seed 5)  # seed 5: greedy decoding does not settle on one token
if [[ ! -f "$model" ]]; then
  "$bin/moepool-synth" --out "$model" "${spec[@]}" >/dev/null
fi
expert_bytes=$("$bin/moepool-synth" --dry-run --out "$model" "${spec[@]}" |
  sed -n 's/.*(\([0-9]*\) bytes) per expert per layer.*/\1/p')
# One slot: three projections, each in whole 4 KiB pages (+1 page of alignment slack).
slot=$(( (expert_bytes / 3 + 4095) / 4096 * 4096 * 3 + 3 * 4096 ))
n_experts=$(( layers * 128 ))

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# start_daemon NAME POOL_BYTES: a moepoold on $work/NAME.sock; its pid in pids[NAME].
declare -A pids
start_daemon() {
  "$bin/moepoold" --socket "$work/$1.sock" --pool-size "$2" --model-root "$work" \
    --state-dir "$work/state-$1" --log-level warn >"$work/moepoold-$1.log" 2>&1 &
  pids[$1]=$!
  until "$bin/moepoolctl" --socket "$work/$1.sock" status >/dev/null 2>&1; do
    kill -0 "${pids[$1]}" || { cat "$work/moepoold-$1.log"; exit 1; }
    sleep 0.2
  done
}

# decode LABEL [moepool-llama flags...]: one run, its JSON appended to $work/LABEL.jsonl.
decode() {
  local label=$1; shift
  "$bin/moepool-llama" "$model" --prompt "$prompt" -n "$tokens" -t "$threads" --json "$@" \
    >>"$work/$label.jsonl"
}

rm -f "$work"/*.jsonl "$work"/*.bin
sync  # the model was just written: no writeback during the runs
echo "model: $model ($(( $(stat -c %s "$model") >> 20 )) MiB, $n_experts experts of $expert_bytes bytes)" >&2

# Both daemons run side by side and the cases are interleaved run by run, so drift of
# this shared machine hits every case alike.
start_daemon full $(( slot * n_experts ))
start_daemon quarter $(( slot * n_experts / 4 ))
trap 'kill -TERM ${pids[full]} ${pids[quarter]} 2>/dev/null; wait 2>/dev/null || true' EXIT
echo "warm-up: page cache, and the full pool's first run (every expert read once)" >&2
decode warmup
decode pool100_first --moepool "$work/full.sock"
for ((i = 0; i < runs; ++i)); do
  echo "round $((i + 1)) of $runs: stock warm, stock cold, pool 100%, pool 25% cold cache" >&2
  cat "$model" >/dev/null  # warm again: the previous round dropped the cache
  decode stock_warm --dump-logits "$work/stock.bin"
  drop_caches; decode stock_cold
  decode pool100 --moepool "$work/full.sock" --dump-logits "$work/pool100.bin"
  drop_caches; decode pool25 --moepool "$work/quarter.sock" --dump-logits "$work/pool25.bin"
done

same100=$(cmp -s "$work/stock.bin" "$work/pool100.bin" && echo yes || echo NO)
same25=$(cmp -s "$work/stock.bin" "$work/pool25.bin" && echo yes || echo NO)

node - "$work" "$layers" "$same100" "$same25" "$threads" "$tokens" <<'EOF'
const fs = require('fs');
const [work, layers, same100, same25, threads, tokens] = process.argv.slice(2);
const load = (l) => fs.readFileSync(`${work}/${l}.jsonl`, 'utf8').trim().split('\n').map(JSON.parse);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const f = (x, d = 2) => x.toFixed(d);
const rows = [
  ['stock llama.cpp, mmap, page cache warm', 'stock_warm'],
  ['stock llama.cpp, mmap, page cache dropped', 'stock_cold'],
  ['llama.cpp + moepool, pool 100% (first run: empty pool)', 'pool100_first'],
  ['llama.cpp + moepool, pool 100%', 'pool100'],
  ['llama.cpp + moepool, pool 25% (its first round starts empty), page cache dropped', 'pool25'],
];
const warm = median(load('stock_warm').map((r) => r.tokens_per_s));
console.log(`| run | tokens/s (median) | vs stock warm | load s | prefill s | hit rate | acquire us/layer | release us/layer | callback us/layer |`);
console.log(`|---|---|---|---|---|---|---|---|---|`);
for (const [name, label] of rows) {
  const rs = load(label);
  const tps = median(rs.map((r) => r.tokens_per_s));
  const m = rs[0].moepool;
  const per = (k) => m ? f(median(rs.map((r) => r.moepool[k] / 1e3 / Math.max(r.moepool.layers, 1))), 0) : '';
  const hit = m ? f(100 * median(rs.map((r) => r.moepool.hits / Math.max(r.moepool.experts, 1))), 1) + '%' : '';
  console.log(`| ${name} | ${f(tps)} | ${f(tps / warm)} | ${f(median(rs.map((r) => r.load_s)))} | ` +
              `${f(median(rs.map((r) => r.prefill_s)), 3)} | ${hit} | ${per('acquire_ns')} | ${per('release_ns')} | ${per('callback_ns')} |`);
}
const p100 = median(load('pool100').map((r) => r.tokens_per_s));
const evals = Number(layers) * Number(tokens);
console.log(`\nExtra time per MoE layer evaluation with every expert resident: ` +
            `${f((Number(tokens) / p100 - Number(tokens) / warm) / evals * 1e6, 0)} us ` +
            `((1/tps_pool100 - 1/tps_stock_warm) x tokens / (${layers} layers x ${tokens} tokens)).`);
console.log(`Logits bit-identical to stock: pool 100% ${same100}, pool 25% ${same25}. ` +
            `${threads} threads, ${tokens} tokens after an 8-token prompt, medians of ${load('stock_warm').length} runs.`);
EOF
