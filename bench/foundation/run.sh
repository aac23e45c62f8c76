#!/usr/bin/env bash
# Reproduces the foundation issue's figures: moepool-bench --verify with 3 workers on
#   (a) the real gpt-oss-20b routing trace, on a synthetic model of its shape (24 x 32
#       experts, top-4, Q4_K), pool = 25% of its experts, 2,000 steps per worker, and
#       the same with 1 worker (the LRU reference point of ../shared/traces/README.md);
#   (b) a synthetic DeepSeek-shaped trace (58 layers x 256 experts, top-8) on a synthetic
#       deepseek2 model of that shape (widths scaled down), pool = 25% of its experts.
# Usage: bench/foundation/run.sh [BUILD_DIR] [WORK_DIR]   (writes bench/foundation/RESULTS.md)
# Needs a built tree (scripts/setup) and ../shared/traces beside the repo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo="$(pwd)"
bin="$repo/${1:-build}/bin"
work="${2:-/var/tmp/moepool-foundation-bench}"
traces="$repo/../shared/traces"
steps="${MOEPOOL_BENCH_STEPS:-2000}"
out="$repo/bench/foundation/RESULTS.md"
mkdir -p "$work"
daemon_pid=""
trap '[[ -n "$daemon_pid" ]] && kill -TERM "$daemon_pid" 2>/dev/null; wait 2>/dev/null || true' EXIT

# Starts moepoold with a pool of $1 over $work and waits until it answers.
start_daemon() {
  "$bin/moepoold" --socket "$work/s.sock" --pool-size "$1" --model-root "$work" \
    --state-dir "$work/state" --log-level warn >"$work/moepoold.log" 2>&1 &
  daemon_pid=$!
  until "$bin/moepoolctl" --socket "$work/s.sock" status >/dev/null 2>&1; do
    kill -0 "$daemon_pid" || { cat "$work/moepoold.log"; exit 1; }
    sleep 0.1
  done
}
stop_daemon() { kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=""; }

# Bytes of a quarter of a model's experts, rounded up to MiB.
quarter_pool() {
  "$bin/moepool-synth" --inspect "$1" --json | node -e '
    let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
      const m = JSON.parse(s);
      const b = m.layers.reduce((a, l) => a + l.n_experts * l.expert_bytes, 0) / 4;
      console.log(Math.ceil(b / 1048576) + "M"); });'
}

run_case() {  # title, pool, bench args...
  local title="$1" pool="$2"; shift 2
  start_daemon "$pool"
  {
    echo "### $title"
    echo
    echo '```'
    echo "\$ moepool-bench $*"
    "$bin/moepool-bench" --socket "$work/s.sock" "$@" 2>&1
    echo "\$ moepoolctl stats"
    "$bin/moepoolctl" --socket "$work/s.sock" stats
    echo '```'
    echo
  } >>"$out.tmp"
  stop_daemon
}

gpt="$work/gpt-oss-20b-shape.gguf"
[[ -f "$gpt" ]] || "$bin/moepool-synth" --out "$gpt" --layers 24 --experts 32 --top-k 4 \
  --embd 512 --ffn 512 --type q4_K --seed 20 >/dev/null
ds="$work/deepseek-shape.gguf"
[[ -f "$ds" ]] || "$bin/moepool-synth" --out "$ds" --arch deepseek2 --layers 58 --experts 256 \
  --top-k 8 --embd 256 --ffn 256 --type q4_K --seed 58 >/dev/null

{
  echo "# Foundation figures: moepool-bench --verify"
  echo
  echo "Produced by \`bench/foundation/run.sh\` on $(date -u +%Y-%m-%d) on $(nproc) cores,"
  echo "$(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr), model files on" \
       "$(findmnt -no FSTYPE -T "$work") ($work). Reads are O_DIRECT through io_uring."
  echo "Pool = 25% of the model's expert bytes; slots are a little larger than experts"
  echo "(each projection's region holds the 4 KiB-aligned superset), so slightly fewer"
  echo "than 25% of the experts fit."
  echo
} >"$out.tmp"
pool_gpt="$(quarter_pool "$gpt")"
pool_ds="$(quarter_pool "$ds")"
run_case "gpt-oss-20b trace, 3 workers x $steps steps, pool $pool_gpt" "$pool_gpt" \
  --model "$gpt" --trace "$traces/gpt-oss-20b" --workers 3 --steps "$steps" --verify
run_case "gpt-oss-20b trace, 1 worker x $steps steps, pool $pool_gpt" "$pool_gpt" \
  --model "$gpt" --trace "$traces/gpt-oss-20b" --workers 1 --steps "$steps" --verify
run_case "synthetic DeepSeek-shaped trace (58 x 256, top-8), 3 workers x 300 steps, pool $pool_ds" \
  "$pool_ds" --model "$ds" --synthetic deepseek --workers 3 --steps 300 --verify
mv "$out.tmp" "$out"
echo "wrote $out"
