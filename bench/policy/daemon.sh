#!/usr/bin/env bash
# The residency policy in the real daemon, not the simulator: moepool-bench workers replay
# the real gpt-oss-20b trace against moepoold on a synthetic model of gpt-oss-20b's shape
# (24 x 32 experts, top-4, Q4_K), with the pool at 12.5% and 25% of the experts, 1 and 3
# workers, under three settings run one after the other for each case:
#   lru       policy.name = "lru", no daemon prefetch (the v0 daemon),
#   adaptive  policy.name = "default", prefetch.predictor = false,
#   +predict  policy.name = "default", prefetch.predictor = true (the shipped default).
# Each run starts a fresh daemon (empty pool, no saved popularity). The hit rate is the
# daemon's: an expert still loading from a prefetch counts as a hit (the acquire waits for
# that read rather than starting its own), so it is not the simulator's stall-free rate.
# Usage: bench/policy/daemon.sh [BUILD_DIR] [WORK_DIR]  (prints a Markdown table; about
# 20 minutes on the 2-core VM with MOEPOOL_BENCH_STEPS=1000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo="$(pwd)"
bin="$repo/${1:-build}/bin"
work="${2:-/var/tmp/moepool-policy-daemon}"
traces="$repo/../shared/traces"
steps="${MOEPOOL_BENCH_STEPS:-1000}"
[[ -f "$traces/gpt-oss-20b.json" ]] || { echo "no traces in $traces" >&2; exit 1; }
mkdir -p "$work"
daemon_pid=""
trap '[[ -n "$daemon_pid" ]] && kill -TERM "$daemon_pid" 2>/dev/null; wait 2>/dev/null || true' EXIT

model="$work/gpt-oss-20b-shape.gguf"
[[ -f "$model" ]] || "$bin/moepool-synth" --out "$model" --layers 24 --experts 32 --top-k 4 \
  --embd 512 --ffn 512 --type q4_K --seed 20 >/dev/null
expert_bytes=$("$bin/moepool-synth" --inspect "$model" --json | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const m = JSON.parse(s);
    console.log(m.layers.reduce((a, l) => a + l.n_experts * l.expert_bytes, 0)); });')

# run SETTING FRACTION WORKERS: one fresh daemon, one bench; prints "hit_rate mib_read".
run() {
  local setting=$1 fraction=$2 workers=$3 policy=default predictor=true
  [[ $setting == lru ]] && { policy=lru; predictor=false; }
  [[ $setting == adaptive ]] && predictor=false
  printf '[policy]\nname = "%s"\n[prefetch]\npredictor = %s\n' "$policy" "$predictor" \
    >"$work/moepoold.toml"
  local pool_mib
  pool_mib=$(node -e "console.log(Math.ceil($expert_bytes * $fraction / 1048576))")
  rm -rf "$work/state"
  "$bin/moepoold" --config "$work/moepoold.toml" --socket "$work/s.sock" \
    --pool-size "${pool_mib}M" --model-root "$work" --state-dir "$work/state" \
    --log-level warn >"$work/moepoold.log" 2>&1 &
  daemon_pid=$!
  until "$bin/moepoolctl" --socket "$work/s.sock" status >/dev/null 2>&1; do
    kill -0 "$daemon_pid" || { cat "$work/moepoold.log" >&2; exit 1; }
    sleep 0.1
  done
  "$bin/moepool-bench" --socket "$work/s.sock" --model "$model" --trace "$traces/gpt-oss-20b" \
    --workers "$workers" --steps "$steps" --json 2>/dev/null >"$work/bench.json"
  "$bin/moepoolctl" --socket "$work/s.sock" --json stats >"$work/stats.json"
  kill -TERM "$daemon_pid"
  wait "$daemon_pid"
  daemon_pid=""
  node -e '
    const st = require(process.argv[1]);
    const m = st.models[0];
    console.log((m.hits / (m.hits + m.misses)).toFixed(4), (m.bytes_read / 1048576).toFixed(0));
  ' "$work/stats.json"
}

echo "gpt-oss-20b trace on a 24 x 32 Q4_K model ($((expert_bytes / 1048576)) MiB of experts)," \
     "$steps steps per worker, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| pool | workers | lru hit rate | adaptive | adaptive + predictor | MiB read (lru / adaptive / +predictor) |"
echo "|---|---|---|---|---|---|"
for fraction in 0.125 0.25; do
  for workers in 1 3; do
    read -r h_lru b_lru < <(run lru "$fraction" "$workers")
    read -r h_ad b_ad < <(run adaptive "$fraction" "$workers")
    read -r h_pr b_pr < <(run predict "$fraction" "$workers")
    echo "| $(node -e "console.log(($fraction * 100).toFixed(1))")% | $workers | $h_lru | $h_ad | $h_pr | $b_lru / $b_ad / $b_pr |"
  done
done
