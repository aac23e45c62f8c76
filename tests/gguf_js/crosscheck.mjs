// Cross-checks one model against an independent GGUF parser (@huggingface/gguf).
//
// usage: node crosscheck.mjs MODEL.gguf OURS.json
//   OURS.json is `moepool-synth --inspect MODEL.gguf --json` (moepool's GgufFile + Catalog).
// @huggingface/gguf parses every file of the model (all parts of a split model); this
// script compares files, sizes, data section starts, every tensor's name, ggml type id,
// shape, absolute data offset and byte size, the metadata the catalog reports, and the
// MoE layers: expert tensors, expert counts, per-expert bytes. Byte sizes come from this
// file's own block table (llama.cpp gguf-py's GGML_QUANT_SIZES), not from moepool's.
// Prints every mismatch and exits 1 if there is any, 0 if everything matches.
import { readFileSync, realpathSync, statSync } from "node:fs";
import { ggufAllShards } from "@huggingface/gguf";

// [elements per block, bytes per block] by ggml type id, from gguf-py constants.py.
const QK_K = 256;
const BLOCK = {
  0: [1, 4], 1: [1, 2], 2: [32, 2 + 16], 3: [32, 2 + 2 + 16], 6: [32, 2 + 4 + 16],
  7: [32, 2 + 2 + 4 + 16], 8: [32, 2 + 32], 9: [32, 4 + 4 + 32],
  10: [QK_K, 2 + 2 + QK_K / 16 + QK_K / 4], 11: [QK_K, 2 + QK_K / 4 + QK_K / 8 + 12],
  12: [QK_K, 2 + 2 + QK_K / 2 + 12], 13: [QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12],
  14: [QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16], 15: [QK_K, 4 + QK_K + QK_K / 8],
  16: [QK_K, 2 + QK_K / 4], 17: [QK_K, 2 + QK_K / 4 + QK_K / 32],
  18: [QK_K, 2 + QK_K / 4 + QK_K / 8], 19: [QK_K, 2 + QK_K / 8 + QK_K / 16],
  20: [32, 2 + 16], 21: [QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4],
  22: [QK_K, 2 + QK_K / 4 + QK_K / 16], 23: [QK_K, 2 + 2 + QK_K / 2 + QK_K / 64],
  24: [1, 1], 25: [1, 2], 26: [1, 4], 27: [1, 8], 28: [1, 8],
  29: [QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32], 30: [1, 2], 34: [QK_K, 2 + 4 * 13],
  35: [QK_K, 2 + 64], 39: [32, 1 + 16],
};

const EXPERT_RE = /^blk\.(\d+)\.ffn_(gate|up|down|gate_up)_exps\.weight$/;
const KIND_ORDER = { gate: 0, up: 1, gate_up: 1, down: 2 };

const problems = [];
// Notes a problem unless both sides print the same (numbers, bigints and strings alike).
function check(what, ours, theirs) {
  if (String(ours) !== String(theirs)) problems.push(`${what}: ours ${ours} != @huggingface/gguf ${theirs}`);
}

// Bytes of a tensor, or undefined with a problem noted.
function tensorBytes(where, dtype, shape) {
  const b = BLOCK[dtype];
  if (!b) {
    problems.push(`${where}: type id ${dtype} unknown to the cross-check's block table`);
    return undefined;
  }
  const [blk, size] = b.map(BigInt);
  if (shape[0] % blk !== 0n) {
    problems.push(`${where}: ne[0] ${shape[0]} is not a multiple of block size ${blk}`);
    return undefined;
  }
  let bytes = (shape[0] / blk) * size;
  for (const d of shape.slice(1)) bytes *= d;
  return bytes;
}

async function main() {
  const [modelPath, oursPath] = process.argv.slice(2);
  if (!modelPath || !oursPath) {
    console.error("usage: node crosscheck.mjs MODEL.gguf OURS.json");
    process.exit(2);
  }
  const ours = JSON.parse(readFileSync(oursPath, "utf8"));
  const theirs = await ggufAllShards(modelPath, { allowLocalFile: true });
  const shards = theirs.shards;

  check("file count", ours.files.length, shards.length);
  const meta = shards[0].metadata;
  const arch = meta["general.architecture"];
  check("general.architecture", ours.architecture, arch);
  check("general.name", ours.name, meta["general.name"]);
  check(`${arch}.block_count`, ours.block_count, meta[`${arch}.block_count`]);

  // Files and every tensor, in file order.
  const expertTensors = new Map();  // layer -> [{kind, name, dtype, shape, file, offset, bytes}]
  let totalTensors = 0;
  let totalBytes = 0n;
  for (let k = 0; k < Math.min(shards.length, ours.files.length); k++) {
    const s = shards[k];
    const of = ours.files[k];
    const path = realpathSync(theirs.urls[k]);
    const size = BigInt(statSync(path).size);
    totalBytes += size;
    check(`file ${k} path`, of.path, path);
    check(`file ${k} size`, of.size, size);
    check(`file ${k} data_offset`, of.data_offset, s.tensorDataOffset);
    if (shards.length > 1) {
      check(`file ${k} split.no`, k, s.metadata["split.no"]);
      check(`file ${k} split.count`, shards.length, s.metadata["split.count"]);
    }
    check(`file ${k} tensor count`, of.tensors.length, s.tensorInfos.length);
    totalTensors += s.tensorInfos.length;
    const infos = s.tensorInfos;
    for (let i = 0; i < Math.min(infos.length, of.tensors.length); i++) {
      const t = infos[i];
      const o = of.tensors[i];
      const where = `file ${k} tensor ${i} '${t.name}'`;
      check(`${where} name`, o.name, t.name);
      check(`${where} type id`, o.type_id, t.dtype);
      check(`${where} shape`, JSON.stringify(o.ne), JSON.stringify(t.shape.map(Number)));
      const abs = s.tensorDataOffset + t.offset;
      check(`${where} absolute data offset`, o.data_offset, abs);
      const bytes = tensorBytes(where, t.dtype, t.shape);
      if (bytes !== undefined) {
        check(`${where} bytes`, o.bytes, bytes);
        const end = i + 1 < infos.length ? s.tensorDataOffset + infos[i + 1].offset : size;
        if (abs + bytes > end) problems.push(`${where}: data [${abs}, ${abs + bytes}) overruns ${end}`);
      }
      const m = EXPERT_RE.exec(t.name);
      if (m) {
        const layer = Number(m[1]);
        if (!expertTensors.has(layer)) expertTensors.set(layer, []);
        expertTensors.get(layer).push({ kind: m[2], name: t.name, dtype: t.dtype, shape: t.shape,
                                        file: k, offset: abs, bytes });
      }
    }
  }
  if (shards.length > 1) {
    for (let k = 0; k < shards.length; k++)
      check(`file ${k} split.tensors.count`, totalTensors, shards[k].metadata["split.tensors.count"]);
  }
  check("total_bytes", ours.total_bytes, totalBytes);

  // MoE layers: what @huggingface/gguf's tensor list says against what our Catalog says.
  const expertCount = meta[`${arch}.expert_count`];
  const used = meta[`${arch}.expert_used_count`];
  if (!(used >= 1 && used <= expertCount))
    problems.push(`${arch}.expert_used_count ${used} is not in [1, expert_count ${expertCount}]`);
  const layers = [...expertTensors.keys()].sort((a, b) => a - b);
  check("MoE layer indices", JSON.stringify(ours.layers.map((l) => l.layer)), JSON.stringify(layers));
  for (let i = 0; i < Math.min(layers.length, ours.layers.length); i++) {
    const ol = ours.layers[i];
    const projs = expertTensors.get(layers[i]).sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind]);
    const where = `layer ${layers[i]}`;
    check(`${where} projections`, ol.projections.map((p) => p.kind).join(","),
          projs.map((p) => p.kind).join(","));
    check(`${where} n_experts`, ol.n_experts, projs[0].shape[2]);
    check(`${where} n_experts vs ${arch}.expert_count`, ol.n_experts, expertCount);
    let layerBytes = 0n;
    for (let j = 0; j < Math.min(projs.length, ol.projections.length); j++) {
      const p = projs[j];
      const op = ol.projections[j];
      const pw = `${where} ${p.name}`;
      check(`${pw} tensor_name`, op.tensor_name, p.name);
      check(`${pw} type id`, op.type_id, p.dtype);
      check(`${pw} ne`, JSON.stringify(op.ne), JSON.stringify(p.shape.map(Number)));
      check(`${pw} file_index`, op.file_index, p.file);
      check(`${pw} data_offset`, op.data_offset, p.offset);
      if (p.shape.length !== 3) {
        problems.push(`${pw}: expert tensor has ${p.shape.length} dims, not 3`);
      } else if (p.bytes !== undefined) {
        check(`${pw} expert_bytes`, op.expert_bytes, p.bytes / p.shape[2]);
        layerBytes += p.bytes / p.shape[2];
      }
    }
    check(`${where} expert_bytes`, ol.expert_bytes, layerBytes);
  }

  if (problems.length > 0) {
    console.error(`MISMATCH ${modelPath}: ${problems.length} difference(s)`);
    for (const p of problems.slice(0, 100)) console.error(`  ${p}`);
    if (problems.length > 100) console.error(`  ... and ${problems.length - 100} more`);
    process.exit(1);
  }
  const experts = ours.layers.reduce((n, l) => n + l.n_experts, 0);
  console.log(`ok ${modelPath}: ${shards.length} file(s), ${totalTensors} tensors, ` +
              `${layers.length} MoE layers, ${experts} experts`);
}

main().catch((e) => {
  console.error(`crosscheck failed on ${process.argv[2]}: ${e.stack ?? e}`);
  process.exit(1);
});
