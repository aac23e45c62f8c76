#!/usr/bin/env bash
# Cross-checks moepool-synth models and moepool's Catalog (`moepool-synth --inspect --json`)
# against an independent GGUF parser, @huggingface/gguf (pinned in package.json/-lock.json).
# usage: tests/gguf_js/run.sh BUILD_DIR
# Exit: 0 all matched, 1 a mismatch or a failure (npm ci included), 77 node/npm missing (CTest skip).
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run.sh BUILD_DIR}
synth="$build/bin/moepool-synth"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: node and npm are needed for the @huggingface/gguf cross-check (apt install nodejs npm)"
  exit 77
fi
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "SKIP: @huggingface/gguf needs node >= 20, found $(node --version)"
  exit 77
fi
if [ ! -x "$synth" ]; then
  echo "FAIL: $synth is not built (ninja -C $build moepool-synth)"
  exit 1
fi

# Install the pinned parser once; serialize concurrent runs from several build trees.
pinned=$(node -e 'console.log(require(process.argv[1]).dependencies["@huggingface/gguf"])' "$here/package.json")
installed=$(node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("none") }' \
  "$here/node_modules/@huggingface/gguf/package.json")
if [ "$installed" != "$pinned" ]; then
  exec 9>"${TMPDIR:-/tmp}/moepool-gguf-js-npm.lock"
  flock 9 2>/dev/null || true
  echo "npm ci @huggingface/gguf@$pinned into $here/node_modules (installed: $installed)"
  if ! (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund); then
    echo "FAIL: npm ci failed in $here (offline? the registry must be reachable once to install" \
         "@huggingface/gguf@$pinned); not skipping, the cross-check did not run"
    exit 1
  fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gguf_js.XXXXXX")
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
failures=()

# case NAME OPEN_FILE -- SYNTH_ARGS...: synthesize, inspect OPEN_FILE, cross-check it.
case_() {
  local name=$1 open=$2
  shift 3
  local dir="$work/$name"
  mkdir -p "$dir"
  echo "== $name: moepool-synth $*"
  if ! "$synth" --out "$dir/model.gguf" "$@" >"$dir/synth.log" 2>&1; then
    echo "FAIL $name: moepool-synth failed:"; sed 's/^/  /' "$dir/synth.log"
    failed=$((failed + 1)); failures+=("$name"); return
  fi
  if ! "$synth" --inspect "$dir/$open" --json >"$dir/ours.json" 2>"$dir/inspect.log"; then
    echo "FAIL $name: moepool-synth --inspect failed:"; sed 's/^/  /' "$dir/inspect.log"
    failed=$((failed + 1)); failures+=("$name"); return
  fi
  if (cd "$here" && node crosscheck.mjs "$dir/$open" "$dir/ours.json"); then
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    failed=$((failed + 1)); failures+=("$name")
  fi
}

common=(--layers 3 --experts 8 --embd 256 --ffn 512 --seed 11)
case_ q4_K      model.gguf -- "${common[@]}" --type q4_K
case_ q8_0      model.gguf -- --layers 2 --experts 16 --embd 128 --ffn 96 --type q8_0
case_ f16       model.gguf -- --layers 2 --experts 4 --embd 64 --ffn 40 --type f16
case_ split3    model-00002-of-00003.gguf -- "${common[@]}" --type q4_K --split 3
case_ deepseek2 model.gguf -- --arch deepseek2 --layers 2 --experts 16 --top-k 6 --embd 512 --ffn 256 --type q6_K
case_ fused     model.gguf -- --fused --layers 2 --experts 8 --embd 128 --ffn 64 --type mxfp4
case_ ds2_fused_split model-00001-of-00002.gguf -- --arch deepseek2 --fused --split 2 --layers 2 --experts 4 --embd 256 --ffn 256 --type iq2_xxs
case_ bf16      model.gguf -- --layers 1 --experts 2 --embd 32 --ffn 32 --type bf16
case_ tq1_0     model.gguf -- --layers 2 --experts 4 --embd 256 --ffn 256 --type tq1_0
case_ qwen3moe_default model.gguf -- --arch qwen3moe
case_ qwen3moe_q8_0 model.gguf -- --arch qwen3moe --layers 3 --experts 16 --top-k 4 --embd 512 --type q8_0
case_ qwen3moe_bias_scale_split model-00002-of-00002.gguf -- --arch qwen3moe --expert-bias --expert-scale --split 2 --type f16

# Bad arguments: a clear message and exit code 2, and no file left behind.
usage_case() {
  local name=$1
  shift
  local out rc
  out=$("$synth" --out "$work/bad.gguf" "$@" 2>&1)
  rc=$?
  if [ "$rc" -eq 2 ] && [ ! -e "$work/bad.gguf" ] && [ -n "$out" ]; then
    echo "ok usage $name: exit 2: $(echo "$out" | head -1)"
    passed=$((passed + 1))
  else
    echo "FAIL usage $name: exit $rc (want 2): $out"
    failed=$((failed + 1)); failures+=("usage $name")
  fi
}
usage_case ffn_not_block_multiple --layers 2 --experts 4 --embd 256 --ffn 500 --type q4_K
usage_case zero_experts --layers 2 --experts 0 --embd 256 --ffn 512 --type q4_K
usage_case unknown_type --layers 2 --experts 4 --embd 256 --ffn 512 --type q9_X
usage_case qwen3moe_fused --arch qwen3moe --fused
usage_case qwen3moe_q8_K --arch qwen3moe --type q8_K
usage_case qwen3moe_embd --arch qwen3moe --type f32 --embd 48
usage_case qwen2moe_needs_shape --arch qwen2moe --layers 2

# --dry-run prints the layout and writes nothing.
out=$("$synth" --out "$work/dry.gguf" --arch qwen3moe --dry-run --layers 48 --experts 128 --top-k 8 \
  --embd 2048 --ffn 768 --type q4_K 2>&1)
if [ $? -eq 0 ] && [ ! -e "$work/dry.gguf" ] && echo "$out" | grep -q "would write 1 file, 16.36 GiB"; then
  echo "ok dry-run: $(echo "$out" | head -1)"
  passed=$((passed + 1))
else
  echo "FAIL dry-run: $out"
  failed=$((failed + 1)); failures+=("dry-run")
fi

echo "$passed passed, $failed failed${failures[*]:+ (${failures[*]})}"
[ "$failed" -eq 0 ]
