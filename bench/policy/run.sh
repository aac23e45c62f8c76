#!/usr/bin/env bash
# Issue 4's policy figures: moepool-sim replays routing traces through daemon/policy.*
# and reports, per capacity, the demand hit rate, the stall-free rate and the bytes read
# per step of the default policy, LRU and Belady's MIN (computed by the simulator).
# Writes bench/policy/results.tsv and bench/policy/hit_rate.png and prints Markdown
# tables that bench/policy/RESULTS.md quotes.
#
# Usage: bench/policy/run.sh [BUILD_DIR]   (about 15 minutes on the 2-core VM)
# Set POLICY_COST=1 to also time each policy's calls (moepool-sim --cost-runs) into
# cost.txt; timings are not in results.tsv, which holds only deterministic counts.
# Needs a built tree (scripts/setup), ../shared/traces beside the repo, node (for the
# JSON) and gnuplot (installed from Debian, gnuplot-nox, when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo="$(pwd)"
sim="$repo/${1:-build}/bin/moepool-sim"
traces="$repo/../shared/traces"
out="$repo/bench/policy"
[[ -x "$sim" ]] || { echo "$sim is not built (scripts/setup)"; exit 1; }
[[ -f "$traces/gpt-oss-20b.json" ]] || { echo "no traces in $traces"; exit 1; }
if ! command -v gnuplot >/dev/null; then
  apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends gnuplot-nox >/dev/null
fi

tsv="$out/results.tsv"
printf 'case\tcapacity\tpolicy\thit_rate\tstall_free_rate\tmib_per_step\n' >"$tsv"

# run CASE CAPACITY SIM_ARGS...: one simulation, its policies appended to results.tsv.
run() {
  local name=$1 cap=$2; shift 2
  "$sim" --capacity "$cap" --json "$@" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const r = JSON.parse(s), [name, cap] = process.argv.slice(1);
      for (const [p, v] of Object.entries(r.policies))
        console.log([name, cap, p, v.hit_rate.toFixed(4), v.stall_free_rate.toFixed(4),
                     (v.bytes_per_step / 1048576).toFixed(1)].join("\t"));
    });' "$name" "$cap" >>"$tsv"
}

gpt="$traces/gpt-oss-20b"
mix="$traces/mixtral-8x7b-humaneval"
# The real traces replay all their sequences; the synthetic shapes are limited to the
# steps in their case names. Held out by sequence id (RESULTS.md says what looked at
# what): gpt-oss-20b's second half (263-525), and 402-525, which no development run read.
for cap in 0.125 0.25 0.5; do
  echo "capacity $cap" >&2
  run "gpt-oss-20b, all 526 sequences, 1 worker" "$cap" --trace "$gpt"
  run "gpt-oss-20b held out: sequences 263-525, 1 worker" "$cap" --trace "$gpt" --sequences 263-525
  run "gpt-oss-20b held out: sequences 402-525, 1 worker" "$cap" --trace "$gpt" --sequences 402-525
  run "gpt-oss-20b, all sequences, 4 workers on different sequences" "$cap" --trace "$gpt" --workers 4
  run "mixtral-8x7b-humaneval, all, 1 worker" "$cap" --trace "$mix"
  run "mixtral-8x7b-humaneval, all, 2 workers" "$cap" --trace "$mix" --workers 2
  run "synthetic DeepSeek shape (256 x top-8 x 58), 400 steps" "$cap" --synthetic deepseek --steps 400
  run "synthetic Qwen3 shape (128 x top-8 x 94), 400 steps" "$cap" --synthetic qwen3 --steps 400
done
# Three models on one byte budget, each with its own expert size: gpt-oss-20b MXFP4,
# Mixtral-8x7B FP8, Qwen3-235B Q4 (synthetic).
run "3 models, one byte budget, 300 steps each" 0.25 --trace "$gpt:13219200" \
  --trace "$mix:176160768" --synthetic "qwen3:10616832" --steps 300

# Tables: one per case, capacities 12.5/25/50%, stall-free (hit) and MiB per step.
node - "$tsv" <<'EOF'
const fs = require('fs');
const rows = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t'));
const cases = [...new Set(rows.map((r) => r[0]))];
for (const c of cases) {
  console.log(`\n### ${c}\n`);
  console.log('| capacity | policy | stall-free rate | hit rate | MiB read per step |');
  console.log('|---|---|---|---|---|');
  for (const r of rows.filter((r) => r[0] === c && ['0.125', '0.25', '0.5'].includes(r[1])))
    console.log(`| ${(100 * r[1]).toFixed(1)}% | ${r[2]} | ${r[4]} | ${r[3]} | ${r[5]} |`);
}
EOF

# Plot: hit rate (stall-free for default) vs capacity, per policy, all sequences.
for p in default lru belady; do
  awk -F'\t' -v p="$p" '$1 ~ /all 526 sequences/ && $3 == p { print $2 * 100, $5 }' "$tsv" >"$out/.$p.dat"
done
gnuplot <<EOF
set terminal pngcairo size 900,560 font ",11"
set output "$out/hit_rate.png"
set title "gpt-oss-20b routing, all 526 sequences, one worker (moepool-sim)"
set xlabel "capacity (% of the model's 768 experts)"
set ylabel "stall-free rate (= hit rate without prefetch)"
set key bottom right
set grid
set yrange [0:1]
plot "$out/.default.dat" with linespoints lw 2 title "default (adaptive least-stale frequency, prefetch 3 layers ahead)", \
     "$out/.lru.dat" with linespoints lw 2 title "LRU", \
     "$out/.belady.dat" with linespoints lw 2 dt 2 title "Belady MIN (offline optimum, demand)"
EOF
rm -f "$out"/.*.dat
echo "wrote $tsv and $out/hit_rate.png" >&2

# Optional: CPU cost per demanded expert as the daemon pays it (on_access; on a miss
# victim + erase + insert), median of 5 timed replays of the recorded calls.
if [[ "${POLICY_COST:-0}" == 1 ]]; then
  {
    for cap in 0.125 0.25 0.5; do
      "$sim" --trace "$gpt" --steps 5000 --capacity "$cap" --cost-runs 5 --policy adaptive-full
    done
    "$sim" --synthetic qwen3 --steps 300 --capacity 0.25 --cost-runs 5 --policy adaptive-full
  } >"$out/cost.txt"
  echo "wrote $out/cost.txt" >&2
fi
