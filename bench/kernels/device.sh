#!/usr/bin/env bash
# The GPU-machine half of bench/kernels/RESULTS.md: run on the machine the device tool
# lends (one NVIDIA H100), from the repository root, with the binaries and Debian
# libraries packed by bench/kernels/devpack.sh in .devpack/ and the Vulkan loader debs in
# .gl/ (see RESULTS.md for the exact devpack and run lines). Writes into $OUT:
#   tests.txt   the Vulkan tests (kernels vs CPU reference, imports, end to end) on the GPU
#   vram.txt    the VRAM backend's upload rate: a cold Qwen3-30B-A3B-shaped model read
#               into a pool.backend = "vulkan" pool, next to the same run on a host pool
#   cuda.txt    the CUDA import test (nvcc there, against the packed libmoepool.so)
# Usage: bench/kernels/device.sh [tests] [vram] [cuda]   (default: all three)
# WARM=1: the vram part reads through the page cache (moepoold --no-direct, caches kept,
# the file read once beforehand), so the disk drops out and the pipeline's own rate shows.
set -uo pipefail
repo="$PWD"
out="${OUT:-/tmp/moepool-device-out}"
mkdir -p "$out"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
pack="${DEVPACK:-$repo/.devpack}"
B="$pack/bin"
export LD_LIBRARY_PATH="$pack/lib"
# The tests look for the binaries where they were built (build-lead/bin, build-lead/tests).
mkdir -p /work/main/build-lead
ln -sfn "$B" /work/main/build-lead/bin
ln -sfn "$B" /work/main/build-lead/tests
parts=("$@")
((${#parts[@]})) || parts=(tests vram cuda)
M=/tmp/moepool-device
mkdir -p "$M/models" "$M/state"
model="$M/models/qwen3-shape.gguf"
[[ -f "$model" ]] || "$B/moepool-synth" --out "$model" --layers 12 --experts 128 --top-k 8 \
  --embd 2048 --ffn 768 --type q4_K --seed 5 >/dev/null

daemon_pid=""
start_daemon() {  # backend pool-size
  rm -rf "$M/state" "$M/s.sock"; mkdir -p "$M/state"
  printf '[pool]\nbackend = "%s"\n' "$1" >"$M/$1.toml"
  local direct=()
  [[ "${WARM:-0}" == 1 ]] && direct=(--no-direct)
  "$B/moepoold" --config "$M/$1.toml" --socket "$M/s.sock" --pool-size "$2" --segment-size 1G \
    "${direct[@]}" \
    --model-root "$M/models" --state-dir "$M/state" --log-level info >"$M/moepoold-$1.log" 2>&1 &
  daemon_pid=$!
  until "$B/moepoolctl" --socket "$M/s.sock" status >/dev/null 2>&1; do
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$M/moepoold-$1.log"; return 1; }
    sleep 0.1
  done
}
stop_daemon() { kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=""; }

for part in "${parts[@]}"; do
  case "$part" in
  tests)
    {
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
      for t in vk_device_test moe_gpu_test vk_memory_import_test vk_buffer_test \
               vk_pipelines_test vk_pipelines_stats_test gpu_read_ceiling_test kernels_daemon_test \
               vram_backend_test; do
        [[ -x "$B/$t" ]] || continue
        echo "== $t"
        "$B/$t" 2>&1 | grep -E '^device|NMSE|OK \]|FAILED|SKIPPED|PASSED|Skipped|error'
      done
    } >"$out/tests.txt" 2>&1
    ;;
  vram)
    {
      echo "model: $model ($(du -h "$model" | cut -f1)), Qwen3-30B-A3B expert shape, 12 layers"
      for backend in vulkan host; do
        start_daemon "$backend" 6G || continue
        echo "== pool.backend = $backend, pool 6 GiB, cold pool: every expert of every layer once" \
             "($([[ "${WARM:-0}" == 1 ]] && echo "file in the page cache, buffered reads" || echo "page cache dropped, O_DIRECT"))"
        if [[ "${WARM:-0}" == 1 ]]; then cat "$model" >/dev/null
        else sync; echo 3 >/proc/sys/vm/drop_caches; fi
        start=$(date +%s%N)
        "$B/moepool-bench" --socket "$M/s.sock" --model "$model" \
          --synthetic "layers=12,experts=128,top_k=8,skew=0,reuse=0,seed=3" --steps 400 2>&1 | tail -4
        end=$(date +%s%N)
        echo "wall $(( (end - start) / 1000000 )) ms (moepool-bench start to end)"
        "$B/moepoolctl" --socket "$M/s.sock" stats | sed -n 1,20p
        grep -iE 'upload|staging|vulkan' "$M/moepoold-$backend.log" | tail -5
        stop_daemon
      done
    } >"$out/vram$([[ "${WARM:-0}" == 1 ]] && echo -warm).txt" 2>&1
    ;;
  cuda)
    {
      mkdir -p "$M/lib"
      ln -sfn "$pack/lib/libmoepool.so.0" "$M/lib/libmoepool.so"
      nvcc -std=c++20 -O2 -I"$repo" -I"$repo/client/include" -L"$M/lib" -L"$pack/lib" \
        -lmoepool -Xlinker -rpath="$pack/lib" -o "$M/cuda_import_test" \
        "$repo/tests/cuda/cuda_import_test.cu" && {
        start_daemon vulkan 6G && {
          "$M/cuda_import_test" "$M/s.sock" "$model"; echo "exit $?"
          "$B/moepoolctl" --socket "$M/s.sock" stats | grep -iE 'backend|upload'
          stop_daemon
        }
      }
    } >"$out/cuda.txt" 2>&1
    ;;
  esac
done
cat "$out"/*.txt
