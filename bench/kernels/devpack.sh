#!/usr/bin/env bash
# Packs built binaries and the Debian shared libraries they need into .devpack/ (bin/,
# lib/), stripped, so they run on the GPU machine the device tool lends (Ubuntu 24.04,
# no gRPC there). glibc, libstdc++ and libgcc_s come from that machine (newer, compatible).
# Usage: [DEVPACK_OUT=DIR] bench/kernels/devpack.sh BUILD_DIR BINARY...   (binary paths relative
# to BUILD_DIR; DIR defaults to .devpack in the repo root)
# On the GPU machine: export LD_LIBRARY_PATH=$PWD/.devpack/lib; .devpack/bin/<binary>
set -euo pipefail
build="$1"; shift
out="${DEVPACK_OUT:-$(dirname "${BASH_SOURCE[0]}")/../../.devpack}"
rm -rf "$out"; mkdir -p "$out/bin" "$out/lib"
skip='^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux-x86-64|libvulkan)\.so'
for b in "$@"; do
  cp "$build/$b" "$out/bin/"
  strip "$out/bin/$(basename "$b")"
  ldd "$build/$b" | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
    name="$(basename "$lib")"
    [[ "$name" =~ $skip ]] && continue
    [[ -f "$out/lib/$name" ]] || { cp -L "$lib" "$out/lib/$name"; strip --strip-unneeded "$out/lib/$name"; }
  done
done
du -sh "$out/bin" "$out/lib"
