#!/usr/bin/env bash
# bench/io/run.sh FILE [PAIRS]: moepool's I/O engine (moepool-bench io) against fio
# (io_uring, O_DIRECT, fixed buffers, registered files) on the same reads, interleaved
# fio, ours, fio, ours ... (PAIRS pairs per pattern, default 3), page cache dropped before
# every run, each run on bytes no earlier run read (see region()). Patterns: 64 KiB QD64
# rand, 4 MiB QD8 seq, 256 KiB QD32 seq over FILE, and
# one token's routed experts (gate/up/down extents of 8 random experts in each layer of a
# synthetic DeepSeek-shaped Q4_K model, 1 MiB reads, QD32). Prints a markdown table
# (also written to $OUT when set). Needs root (drop_caches, apt-get).
#
# Environment: MOEPOOL_BENCH (default build/bin/moepool-bench), MOEPOOL_SYNTH (default
# next to it), BYTES (bytes per run of the FILE patterns, default min(1 GiB, file size)),
# CACHE_DIR (where the synthetic model and extents are kept, default
# /var/tmp/moepool-io-bench), LAYERS (MoE layers of that model, default 2: 6.1 GiB each),
# SEED (default 1), OUT (markdown table file), KEEP_LOGS (keep every run's output in
# $CACHE_DIR/logs).
set -euo pipefail

usage() { echo "usage: $0 FILE [PAIRS]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
FILE=$1
PAIRS=${2:-3}
[[ -f $FILE ]] || { echo "$0: $FILE: no such file" >&2; exit 2; }
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "$0: PAIRS must be a positive integer, got '$PAIRS'" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${MOEPOOL_BENCH:-$ROOT/build/bin/moepool-bench}
SYNTH=${MOEPOOL_SYNTH:-$(dirname "$BENCH")/moepool-synth}
[[ -x $BENCH ]] || { echo "$0: $BENCH is not built (set MOEPOOL_BENCH)" >&2; exit 1; }
CACHE_DIR=${CACHE_DIR:-/var/tmp/moepool-io-bench}
LAYERS=${LAYERS:-2}
SEED=${SEED:-1}
mkdir -p "$CACHE_DIR/logs"

if ! command -v fio >/dev/null; then
  echo "installing fio" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y fio >/dev/null
fi
command -v jq >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y jq >/dev/null
[[ -w /proc/sys/vm/drop_caches ]] || { echo "$0: cannot write /proc/sys/vm/drop_caches (root?)" >&2; exit 1; }

FILE_SIZE=$(stat -c %s "$FILE")
BYTES=${BYTES:-$(( FILE_SIZE < (1 << 30) ? FILE_SIZE : (1 << 30) ))}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# The expert-shaped pattern's model, made once.
MODEL=$CACHE_DIR/deepseek2-l$LAYERS.gguf
if [[ ! -f $MODEL ]]; then
  [[ -x $SYNTH ]] || { echo "$0: $SYNTH is not built (set MOEPOOL_SYNTH)" >&2; exit 1; }
  need=$("$SYNTH" --arch deepseek2 --layers "$LAYERS" --experts 256 --embd 7168 --ffn 2048 \
           --type q4_K --top-k 8 --seed 1 --out "$MODEL" --dry-run |
         sed -n 's/^Would write 1 file, .*(\([0-9]*\) bytes).*/\1/p')
  free=$(df --output=avail -B1 "$CACHE_DIR" | tail -1)
  (( need * 2 < free )) || { echo "$0: the model needs $need bytes, only $free free in $CACHE_DIR" >&2; exit 1; }
  echo "writing $MODEL ($need bytes)" >&2
  "$SYNTH" --arch deepseek2 --layers "$LAYERS" --experts 256 --embd 7168 --ffn 2048 \
    --type q4_K --top-k 8 --seed 1 --out "$MODEL.partial" >&2
  mv "$MODEL.partial" "$MODEL"
fi
# token_files SEED: one token's extents (8 random experts per layer, drawn with SEED) and
# fio's replay of them: each extent's 4 KiB-aligned superset (what O_DIRECT reads) in
# 1 MiB reads, in the order of the list (iolog v2). Made once per seed.
EXPERT_BLOCK=$((1 << 20))
token_files() {
  local seed=$1
  EXTENTS=$CACHE_DIR/token-l$LAYERS-seed$seed.extents
  IOLOG=$CACHE_DIR/token-l$LAYERS-seed$seed.iolog
  if [[ ! -f $EXTENTS ]]; then
    "$BENCH" io --print-extents "$MODEL" --layers "$LAYERS" --top-k 8 --seed "$seed" > "$EXTENTS.partial"
    mv "$EXTENTS.partial" "$EXTENTS"
  fi
  if [[ ! -f $IOLOG ]]; then
    awk -v f="$MODEL" -v b=$EXPERT_BLOCK '
      BEGIN { print "fio version 2 iolog"; print f " add"; print f " open" }
      /^[ \t]*#/ || NF == 0 { next }
      { s = $1 - $1 % 4096; e = $1 + $2; if (e % 4096) e += 4096 - e % 4096
        for (o = s; o < e; o += b) { n = e - o; if (n > b) n = b; printf "%s read %.0f %.0f\n", f, o, n } }
      END { print f " close" }' "$EXTENTS" > "$IOLOG.partial"
    mv "$IOLOG.partial" "$IOLOG"
  fi
}
token_files "$SEED"
EXPERT_BYTES=$(awk '!/^[ \t]*#/ && NF { s += $2 } END { printf "%.0f", s }' "$EXTENTS")

FIO_COMMON=(--ioengine=io_uring --direct=1 --fixedbufs --thread --output-format=json)
LOG=$CACHE_DIR/logs

# run_fio NAME ARGS...: prints fio's read GB/s.
run_fio() {
  local name=$1; shift
  drop_caches
  if ! fio --name="$name" "${FIO_COMMON[@]}" "$@" > "$LOG/fio.json" 2> "$LOG/fio.err"; then
    echo "$0: fio failed: fio --name=$name ${FIO_COMMON[*]} $*" >&2
    cat "$LOG/fio.err" >&2
    exit 1
  fi
  jq -r '.jobs[0].read | if .io_bytes > 0 then (.io_bytes / (.runtime / 1000) / 1e9) else 0 end' \
    "$LOG/fio.json" | awk '{ printf "%.3f", $1 }'
}
# run_ours ARGS...: prints moepool-bench io's GB/s (its last line).
run_ours() {
  drop_caches
  if ! "$BENCH" io --direct "$@" > "$LOG/ours.txt" 2>&1; then
    echo "$0: moepool-bench io failed: $BENCH io --direct $*" >&2
    cat "$LOG/ours.txt" >&2
    exit 1
  fi
  tail -1 "$LOG/ours.txt" | sed -n 's/^read [0-9]* bytes in [0-9.]* s, \([0-9.]*\) GB\/s$/\1/p'
}

# Every run reads bytes no run before it in this script read (the virtual disk's host
# caches re-reads: a second cold read of the same GiB ran ~1.7x faster here), so fio and
# ours meet the same cache state: run k (0-based, over all patterns) of a seq pattern
# reads BYTES from region k of the file, a rand run uses seed SEED+k, an experts run the
# token drawn with seed SEED+k.
RUN=0
region() {  # region K: a BYTES-long start offset, 4 MiB-aligned, wrapping inside the file
  local span=$(( FILE_SIZE - BYTES ))
  (( span > 0 )) || { echo 0; return; }
  echo $(( (K_REGION * BYTES) % span / (4 << 20) * (4 << 20) ))
}
set_args() {  # set_args PATTERN K: FIO_ARGS and OURS_ARGS of run K
  local k=$2 off
  case $1 in
    seq4|seq256)
      K_REGION=$k; off=$(region)
      local bs=$([[ $1 == seq4 ]] && echo 4m || echo 256k) qd=$([[ $1 == seq4 ]] && echo 8 || echo 32)
      FIO_ARGS=(--registerfiles --filename="$FILE" --rw=read --bs=$bs --iodepth=$qd
                --offset="$off" --size="$BYTES")
      OURS_ARGS=(--file "$FILE" --pattern seq --block ${bs^^} --qd $qd --offset "$off" --bytes "$BYTES") ;;
    rand)
      FIO_ARGS=(--registerfiles --filename="$FILE" --rw=randread --bs=64k --iodepth=64
                --size="$FILE_SIZE" --io_size="$BYTES" --norandommap --randseed=$((SEED + k)))
      OURS_ARGS=(--file "$FILE" --pattern rand --block 64K --qd 64 --bytes "$BYTES" --seed $((SEED + k))) ;;
    experts)
      token_files $((SEED + k))
      # fio refuses --registerfiles with --read_iolog ("io_uring registered files require
      # nr_files to be identical to open_files": the log adds the file after the engine's init).
      FIO_ARGS=(--read_iolog="$IOLOG" --bs=$EXPERT_BLOCK --iodepth=32)
      OURS_ARGS=(--file "$MODEL" --extents "$EXTENTS" --block 1M --qd 32) ;;
  esac
}

ROWS=()
run_pattern() {  # run_pattern LABEL PATTERN
  local label=$1 pattern=$2
  local cells="" ratios=() f o r
  for ((i = 1; i <= PAIRS; i++)); do
    set_args "$pattern" $RUN; RUN=$((RUN + 1))
    f=$(run_fio "$label" "${FIO_ARGS[@]}")
    [[ -n ${KEEP_LOGS:-} ]] && cp "$LOG/fio.json" "$LOG/$pattern-fio-$i.json"
    set_args "$pattern" $RUN; RUN=$((RUN + 1))
    o=$(run_ours "${OURS_ARGS[@]}")
    [[ -n ${KEEP_LOGS:-} ]] && cp "$LOG/ours.txt" "$LOG/$pattern-ours-$i.txt"
    [[ -n $o ]] || { echo "$0: no rate in moepool-bench io's last line:" >&2; cat "$LOG/ours.txt" >&2; exit 1; }
    r=$(awk -v a="$o" -v b="$f" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
    ratios+=("$r")
    cells+=" $f | $o | $r |"
    echo "$label pair $i: fio $f GB/s, ours $o GB/s, ratio $r" >&2
  done
  local median
  median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ a[NR] = $1 } END {
    printf "%.3f", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }')
  ROWS+=("| $label |$cells **$median** |")
}

echo "FILE $FILE ($FILE_SIZE bytes), $BYTES bytes per run; experts: $MODEL, ~$EXPERT_BYTES bytes per token; $PAIRS pairs" >&2
# rand first: its blocks are spread over the whole file, before the seq runs read regions.
run_pattern "rand 64 KiB QD64" rand
run_pattern "seq 4 MiB QD8" seq4
run_pattern "seq 256 KiB QD32" seq256
run_pattern "experts 1 MiB QD32" experts

header="| pattern |" sep="|---|"
for ((i = 1; i <= PAIRS; i++)); do
  header+=" fio $i GB/s | ours $i GB/s | ours/fio $i |"
  sep+="---:|---:|---:|"
done
header+=" median ours/fio |"
sep+="---:|"
{
  echo "$header"
  echo "$sep"
  printf '%s\n' "${ROWS[@]}"
} | tee "${OUT:-/dev/null}"
