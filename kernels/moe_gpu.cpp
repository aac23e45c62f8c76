#include "kernels/moe_gpu.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "kernels/act_q8.h"
#include "kernels/expert_groups.h"
#include "kernels/moe_gpu_check.h"
#include "kernels/vk_buffer.h"
#include "kernels/vk_pipelines.h"

namespace moepool::kernels {
namespace {

constexpr uint32_t kMaxSegmentSlots = 64;
constexpr uint32_t kOtherBindings = 4;  // non-segment bindings of the widest kernel (prefill)
constexpr uint32_t kTableWords = 8;     // words per decode pair / prefill tile entry
constexpr uint32_t kReduceThreads = 256;

// Specialization constant ids shared by the shaders (kernels/shaders/*.comp).
constexpr uint32_t kSpecWorkgroup = 0, kSpecSegments = 1, kSpecRows = 2, kSpecTile = 3,
                   kSpecModeDown = 4, kSpecRowsAtOnce = 5, kSpecAlign16 = 6, kSpecSg8 = 7;
constexpr uint32_t kMaxSteps = 8;  // dispatches per call: decode 2, prefill <= 2 * 3 + 1

struct DecodePush {
  uint32_t n_embd, n_ff, top_k, n_tokens;
  uint32_t act_meta;  // int8 kernels: uvec4 index where h's meta starts (in HQ)
  uint32_t x_meta;    // int8 gate+up: uvec4 index where x's meta starts (in the act buffer)
};
constexpr uint64_t kQ8BlockBytes = 48;  // int8 activations: 32 values + (d, half sums, 0)
// Default rows per workgroup of the int8 gate+up kernel: a block of h, which it quantizes.
constexpr uint32_t kInt8Rows = 32;
constexpr uint32_t kSpecXq16 = 8;     // int8 gate+up: n_embd / 16 (x[t]'s quants in uvec4s)
constexpr uint32_t kSpecXShared = 9;  // int8 gate+up: copy x[t] into shared memory first
// Default of MoeGpuTuning::decode_x_shared, measured on the H100.
constexpr bool kDefaultXShared = true;
// Default decode workgroups (threads), measured best on the H100 (bench/kernels/RESULTS.md).
constexpr uint32_t kF32Workgroup = 128, kInt8Workgroup = 256;

// Shared memory of the int8 gate+up kernel: `rows` floats of h and, with x_shared, x[t]
// quantized (n_embd bytes + 16 per block of 32).
uint64_t int8_shared_bytes(uint32_t n_embd, uint32_t rows, bool x_shared) {
  return (x_shared ? uint64_t{n_embd} + uint64_t{n_embd} / 32 * 16 : 0) + uint64_t{rows} * 4;
}

// Rows per workgroup of the int8 gate+up kernel: decode_rows when a multiple of 32, else 32
// (its workgroups hold whole blocks of h, which they quantize).
uint32_t int8_rows(const MoeGpuTuning& t) {
  return t.decode_rows && t.decode_rows % 32 == 0 ? t.decode_rows : kInt8Rows;
}
struct PrefillPush {
  uint32_t n_embd, n_ff, top_k, tile_base;
};
struct ReducePush {
  uint32_t n_embd, top_k, n_tokens;
};

uint32_t ceil_div(uint64_t a, uint64_t b) { return static_cast<uint32_t>((a + b - 1) / b); }
uint64_t align16(uint64_t v) { return (v + 15) & ~uint64_t{15}; }

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

void compute_to_compute(VkCommandBuffer cmd) {
  vk::memory_barrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                     VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                     VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
}

}  // namespace

// One validated call: its tables, and where its inputs sit in the staging buffer.
struct MoeCall {
  MoeGpuShape shape;
  uint32_t n_tokens = 0;
  uint32_t n_pairs = 0;
  uint32_t tile = 0;     // 0: decode
  uint32_t n_tiles = 0;  // prefill
  // prefill: tiles of each width of kPrefillTiles, listed in that order in the table.
  uint32_t width_tiles[std::size(kPrefillTiles)] = {};
  bool gate_up_aligned = false;  // every gate/up (down) row starts 16-byte aligned
  bool down_aligned = false;
  bool int8 = false;            // decode: the int8 kernels (x uploaded quantized)
  bool x_shared = false;        // int8 decode: gate+up copies x[t] into shared memory
  std::vector<uint32_t> table;  // decode: per pair; prefill: per tile (kTableWords each)
  std::vector<uint32_t> pairs;  // prefill: sorted (token, k)
};

struct MoeGpu::Impl {
  explicit Impl(const vk::Device& d) : dev(d) {}
  ~Impl() {
    pipelines.clear();
    if (queries) vkDestroyQueryPool(dev.device(), queries, nullptr);
    if (pool) vkDestroyDescriptorPool(dev.device(), pool, nullptr);
  }

  enum Slot { kAct, kTable, kPairs, kWeights, kH, kPartial, kOut, kStaging, kHQ, kSlotCount };

  const vk::Device& dev;
  std::unique_ptr<vk::CommandBuffer> cmd;
  VkDescriptorPool pool = VK_NULL_HANDLE;
  VkQueryPool queries = VK_NULL_HANDLE;
  uint32_t seg_slots = 0;
  std::vector<VkBuffer> segments;
  std::vector<uint64_t> segment_bytes;
  MoeGpuTuning tuning;  // resolved but the decode launch shape (0: record_work's defaults)
  std::map<std::string, std::unique_ptr<vk::ComputePipeline>> pipelines;
  std::unique_ptr<vk::Buffer> bufs[kSlotCount];
  std::vector<double> step_seconds;     // of the last timed call
  std::vector<std::string> dispatches;  // of the last call: pipeline_key of each step
  uint32_t timed_steps = 0;
  // Staging layout of the current call.
  uint64_t st_x = 0, st_table = 0, st_pairs = 0, st_weights = 0, st_out = 0;

  Result<vk::ComputePipeline*> pipeline(const vk::PipelineSpec& spec);
  Result<vk::Buffer*> scratch(Slot slot, uint64_t bytes);
  Result<VkDescriptorSet> make_set(const vk::ComputePipeline& p, bool with_segments,
                                   std::initializer_list<const vk::Buffer*> others);
  Result<MoeCall> prepare(const char* fn, const MoeGpuShape& shape,
                          std::span<const ExpertLocation> experts, std::span<const float> x,
                          std::span<const uint32_t> ids, std::span<const float> weights,
                          std::span<const float> out, bool prefill, uint32_t tile);
  Status record_upload(const MoeCall& call, std::span<const float> x,
                       std::span<const float> weights);
  Status record_work(const MoeCall& call, uint32_t repeats, bool timed);
  Status record_download(const MoeCall& call);
  void read_out(const MoeCall& call, std::span<float> out) const;
  Result<double> run(const MoeCall& call, std::span<const float> x, std::span<const float> weights,
                     std::span<float> out, uint32_t repeats, bool timed);
};

// "module/id=value/...": a pipeline's cache key and its name in last_dispatches().
std::string pipeline_key(const vk::PipelineSpec& spec) {
  std::string key = spec.module;
  for (const auto& [id, v] : spec.spec_constants)
    key += "/" + std::to_string(id) + "=" + std::to_string(v);
  return key;
}

Result<vk::ComputePipeline*> MoeGpu::Impl::pipeline(const vk::PipelineSpec& spec) {
  const std::string key = pipeline_key(spec);
  auto it = pipelines.find(key);
  if (it != pipelines.end()) return it->second.get();
  auto p = vk::ComputePipeline::create(dev, spec);
  if (!p.ok()) return p.status();
  vk::ComputePipeline* raw = p->get();
  pipelines.emplace(key, std::move(*p));
  return raw;
}

Result<vk::Buffer*> MoeGpu::Impl::scratch(Slot slot, uint64_t bytes) {
  bytes = std::max<uint64_t>(bytes, 256);
  if (!bufs[slot] || bufs[slot]->bytes() < bytes) {
    bufs[slot].reset();
    uint64_t want = 1;
    while (want < bytes) want <<= 1;
    if (slot != kStaging) want = std::min<uint64_t>(want, dev.limits().maxStorageBufferRange);
    want = std::max(want, bytes);
    auto b = vk::Buffer::create(
        dev, want, slot == kStaging ? 0 : VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
        slot == kStaging ? vk::MemoryKind::kHostVisible : vk::MemoryKind::kDeviceLocal);
    if (!b.ok()) return b.status();
    bufs[slot] = std::move(*b);
  }
  return bufs[slot].get();
}

Result<VkDescriptorSet> MoeGpu::Impl::make_set(const vk::ComputePipeline& p, bool with_segments,
                                               std::initializer_list<const vk::Buffer*> others) {
  VkDescriptorSetLayout layout = p.set_layout();
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = pool;
  ai.descriptorSetCount = 1;
  ai.pSetLayouts = &layout;
  VkDescriptorSet set = VK_NULL_HANDLE;
  VkResult r = vkAllocateDescriptorSets(dev.device(), &ai, &set);
  if (r != VK_SUCCESS) return vk::vk_error(p.spec().module + ": vkAllocateDescriptorSets", r);

  std::vector<VkDescriptorBufferInfo> infos;
  infos.reserve(seg_slots + others.size());
  std::vector<VkWriteDescriptorSet> writes;
  uint32_t binding = 0;
  if (with_segments) {
    // Every slot must hold a valid buffer: unused slots repeat segment 0 (never read).
    for (uint32_t i = 0; i < seg_slots; ++i) {
      const uint32_t s = i < segments.size() ? i : 0;
      infos.push_back({segments[s], 0, segment_bytes[s]});
    }
    VkWriteDescriptorSet w{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    w.dstSet = set;
    w.dstBinding = binding++;
    w.descriptorCount = seg_slots;
    w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    w.pBufferInfo = infos.data();
    writes.push_back(w);
  }
  for (const vk::Buffer* b : others) {
    infos.push_back({b->handle(), 0, VK_WHOLE_SIZE});
    VkWriteDescriptorSet w{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    w.dstSet = set;
    w.dstBinding = binding++;
    w.descriptorCount = 1;
    w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    w.pBufferInfo = &infos.back();
    writes.push_back(w);
  }
  vkUpdateDescriptorSets(dev.device(), static_cast<uint32_t>(writes.size()), writes.data(), 0,
                         nullptr);
  return set;
}

Result<MoeCall> MoeGpu::Impl::prepare(const char* fn, const MoeGpuShape& shape,
                                      std::span<const ExpertLocation> experts,
                                      std::span<const float> x, std::span<const uint32_t> ids,
                                      std::span<const float> weights, std::span<const float> out,
                                      bool prefill, uint32_t tile) {
  MoeGpuLimits limits{segment_bytes, dev.limits().maxStorageBufferRange,
                      dev.limits().maxComputeWorkGroupCount[1]};
  if (prefill && tile == 0) {
    return InvalidArgument(std::string(fn) + ": tile 0 is not 32, 64 or 128");
  }
  auto n_tokens = check_moe_call(fn, shape, experts, x, ids, weights, out, prefill ? tile : 0,
                                 prefill ? 0 : kMaxDecodeTokens, limits);
  if (!n_tokens.ok()) return n_tokens.status();
  MoeCall call;
  call.shape = shape;
  call.n_tokens = *n_tokens;
  {
    // ALIGN16 kernels: Q4_K rows are 144-byte multiples, so aligned projections keep every
    // block 16-byte aligned.
    bool gu = shape.gate_up_type == GgmlType::Q4_K, dn = shape.down_type == GgmlType::Q4_K;
    for (const uint32_t id : ids) {
      const ExpertLocation& e = experts[id];
      gu = gu && e.gate.offset % 16 == 0 && e.up.offset % 16 == 0;
      dn = dn && e.down.offset % 16 == 0;
    }
    call.gate_up_aligned = gu;
    call.down_aligned = dn;
  }
  call.n_pairs = call.n_tokens * shape.top_k;
  if (!prefill) {
    // int8 activations (see MoeGpuActivations): all three projections Q4_K and the gate+up
    // kernel's shared memory fits.
    const uint64_t limit = dev.limits().maxComputeSharedMemorySize;
    const bool all_q4k = shape.gate_up_type == GgmlType::Q4_K && shape.down_type == GgmlType::Q4_K;
    call.x_shared = tuning.decode_x_shared == MoeGpuSwitch::kDefault
                        ? kDefaultXShared
                        : tuning.decode_x_shared == MoeGpuSwitch::kOn;
    if (int8_shared_bytes(shape.n_embd, int8_rows(tuning), call.x_shared) > limit) {
      call.x_shared = false;
    }
    call.int8 = tuning.decode_activations == MoeGpuActivations::kInt8 && all_q4k &&
                int8_shared_bytes(shape.n_embd, int8_rows(tuning), call.x_shared) <= limit;
  }
  auto put = [](std::vector<uint32_t>& t, const ExpertLocation& e) {
    t.push_back(e.gate.segment);
    t.push_back(static_cast<uint32_t>(e.gate.offset));
    t.push_back(e.up.segment);
    t.push_back(static_cast<uint32_t>(e.up.offset));
    t.push_back(e.down.segment);
    t.push_back(static_cast<uint32_t>(e.down.offset));
  };
  if (!prefill) {
    call.table.reserve(size_t{call.n_pairs} * kTableWords);
    for (uint32_t p = 0; p < call.n_pairs; ++p) {
      call.table.push_back(p / shape.top_k);
      call.table.push_back(float_bits(weights[p]));
      put(call.table, experts[ids[p]]);
    }
    return call;
  }
  call.tile = tile;
  auto groups = group_by_expert(ids, shape.top_k, static_cast<uint32_t>(experts.size()), tile);
  if (!groups.ok()) return groups.status();
  call.n_tiles = static_cast<uint32_t>(groups->tiles.size());
  call.table.reserve(size_t{call.n_tiles} * kTableWords);
  // Tiles by width: each runs at the narrowest width that holds its pairs.
  for (size_t wi = 0; wi < std::size(kPrefillTiles); ++wi) {
    const uint32_t lo = wi == 0 ? 0 : kPrefillTiles[wi - 1];
    for (const ExpertTile& t : groups->tiles) {
      if (t.n_pairs <= lo || (t.n_pairs > kPrefillTiles[wi] && kPrefillTiles[wi] < tile)) continue;
      put(call.table, experts[t.expert]);
      call.table.push_back(t.first_pair);
      call.table.push_back(t.n_pairs);
      ++call.width_tiles[wi];
    }
    if (kPrefillTiles[wi] >= tile) break;
  }
  call.pairs.reserve(groups->pairs.size() * 2);
  for (const RoutedPair& p : groups->pairs) {
    call.pairs.push_back(p.token);
    call.pairs.push_back(p.k);
  }
  return call;
}

Status MoeGpu::Impl::record_upload(const MoeCall& call, std::span<const float> x,
                                   std::span<const float> weights) {
  // The int8 kernels take x quantized (kernels/act_q8.h): its blocks' quants, then their meta.
  const uint64_t x_bytes = call.int8 ? x.size() + x.size() / 32 * 16 : x.size_bytes(),
                 table_bytes = call.table.size() * 4, pairs_bytes = call.pairs.size() * 4,
                 w_bytes = weights.size_bytes();
  st_x = 0;
  st_table = align16(st_x + x_bytes);
  st_pairs = align16(st_table + table_bytes);
  st_weights = align16(st_pairs + pairs_bytes);
  st_out = align16(st_weights + w_bytes);
  auto staging = scratch(kStaging, st_out + x.size_bytes());
  if (!staging.ok()) return staging.status();
  auto* base = static_cast<uint8_t*>((*staging)->mapped());
  if (call.int8) {
    quantize_q8_rows(x, {base + st_x, x.size()},
                     {reinterpret_cast<float*>(base + st_x + x.size()), x.size() / 32 * 4});
  } else {
    std::memcpy(base + st_x, x.data(), x_bytes);
  }
  std::memcpy(base + st_table, call.table.data(), table_bytes);
  if (pairs_bytes) std::memcpy(base + st_pairs, call.pairs.data(), pairs_bytes);
  std::memcpy(base + st_weights, weights.data(), w_bytes);

  VkCommandBuffer c = cmd->handle();
  auto copy = [&](Slot slot, uint64_t from, uint64_t bytes) -> Status {
    if (bytes == 0) return Status::Ok();
    auto dst = scratch(slot, bytes);
    if (!dst.ok()) return dst.status();
    VkBufferCopy region{from, 0, bytes};
    vkCmdCopyBuffer(c, (*staging)->handle(), (*dst)->handle(), 1, &region);
    return Status::Ok();
  };
  MOEPOOL_RETURN_IF_ERROR(copy(kAct, st_x, x_bytes));
  MOEPOOL_RETURN_IF_ERROR(copy(kTable, st_table, table_bytes));
  MOEPOOL_RETURN_IF_ERROR(copy(kPairs, st_pairs, pairs_bytes));
  MOEPOOL_RETURN_IF_ERROR(copy(kWeights, st_weights, w_bytes));
  vk::memory_barrier(c, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                     VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT);
  return Status::Ok();
}

Status MoeGpu::Impl::record_work(const MoeCall& call, uint32_t repeats, bool timed) {
  const MoeGpuShape& s = call.shape;
  VkCommandBuffer c = cmd->handle();
  const uint64_t out_bytes = uint64_t{call.n_tokens} * s.n_embd * 4;
  auto h = scratch(kH, uint64_t{call.n_pairs} * s.n_ff * 4);
  if (!h.ok()) return h.status();
  auto out = scratch(kOut, out_bytes);
  if (!out.ok()) return out.status();
  auto pairs = scratch(kPairs, 256);  // decode binds it nowhere; prefill filled it
  if (!pairs.ok()) return pairs.status();
  vk::Buffer* act = bufs[kAct].get();
  vk::Buffer* table = bufs[kTable].get();
  const uint32_t nseg = seg_slots;

  struct Step {
    vk::ComputePipeline* p;
    VkDescriptorSet set;
    std::vector<uint8_t> push;
    uint32_t gx, gy;
  };
  std::vector<Step> steps;
  auto push_bytes = [](const auto& v) {
    std::vector<uint8_t> b(sizeof v);
    std::memcpy(b.data(), &v, sizeof v);
    return b;
  };

  const uint32_t sg8 = dev.subgroup_size() % 8 == 0 ? 1 : 0;
  if (call.tile == 0) {
    // int8 activations (prepare() decided, see MoeGpuActivations): x was uploaded quantized;
    // the int8 gate+up kernel writes h quantized for the int8 down kernel. Its workgroups
    // hold whole blocks of h: 32 rows, or decode_rows when a multiple of 32.
    const uint32_t rows_i8 = int8_rows(tuning);
    const bool int8 = call.int8;
    // Launch shape: the tuning's, or the defaults measured best on the H100 for each path.
    const uint32_t wg = tuning.decode_workgroup ? tuning.decode_workgroup
                        : int8 ? std::min(kInt8Workgroup, dev.limits().maxComputeWorkGroupSize[0])
                               : kF32Workgroup;
    const uint32_t at_once_gu = tuning.decode_rows_at_once ? tuning.decode_rows_at_once
                                : int8                     ? 1u
                                                           : 2u;
    const uint32_t at_once_dn = tuning.decode_down_rows_at_once ? tuning.decode_down_rows_at_once
                                : tuning.decode_rows_at_once    ? tuning.decode_rows_at_once
                                                                : 2u;
    const uint32_t subgroups = std::max(1u, wg / std::max(1u, dev.subgroup_size()));
    const uint32_t rows_gu = int8                 ? rows_i8
                             : tuning.decode_rows ? tuning.decode_rows
                                                  : subgroups * at_once_gu;
    const uint32_t rows_dn = tuning.decode_rows ? tuning.decode_rows : subgroups * at_once_dn;
    auto sc = [&](uint32_t rows, uint32_t at_once, bool aligned) {
      return std::vector<std::pair<uint32_t, uint32_t>>{{kSpecWorkgroup, wg},
                                                        {kSpecSegments, nseg},
                                                        {kSpecRows, rows},
                                                        {kSpecRowsAtOnce, at_once},
                                                        {kSpecAlign16, aligned ? 1u : 0u},
                                                        {kSpecSg8, sg8}};
    };
    auto module = [&](const char* stem, GgmlType type) {
      return std::string(stem) + moe_gpu_variant(type) + (int8 ? "_i8" : "");
    };
    auto spec_gu = sc(rows_gu, at_once_gu, call.gate_up_aligned);
    if (int8) {
      spec_gu.push_back({kSpecXq16, s.n_embd / 16});
      spec_gu.push_back({kSpecXShared, call.x_shared ? 1u : 0u});
    }
    auto gu = pipeline({module("moe_decode_gate_up_", s.gate_up_type),
                        {nseg, 1, 1, 1},
                        sizeof(DecodePush),
                        spec_gu});
    if (!gu.ok()) return gu.status();
    auto dn = pipeline({module("moe_decode_down_", s.down_type),
                        {nseg, 1, 1, 1},
                        sizeof(DecodePush),
                        sc(rows_dn, at_once_dn, call.down_aligned)});
    if (!dn.ok()) return dn.status();
    vk::Buffer* hbuf = *h;
    const uint64_t h_blocks = uint64_t{call.n_pairs} * s.n_ff / 32;
    if (int8) {
      auto hq = scratch(kHQ, h_blocks * kQ8BlockBytes);
      if (!hq.ok()) return hq.status();
      hbuf = *hq;
    }
    auto set_gu = make_set(**gu, true, {table, act, hbuf});
    if (!set_gu.ok()) return set_gu.status();
    auto set_dn = make_set(**dn, true, {table, hbuf, *out});
    if (!set_dn.ok()) return set_dn.status();
    const DecodePush push{s.n_embd,
                          s.n_ff,
                          s.top_k,
                          call.n_tokens,
                          static_cast<uint32_t>(2 * h_blocks),
                          static_cast<uint32_t>(uint64_t{call.n_tokens} * s.n_embd / 16)};
    steps.push_back({*gu, *set_gu, push_bytes(push), ceil_div(s.n_ff, rows_gu), call.n_pairs});
    steps.push_back({*dn, *set_dn, push_bytes(push), ceil_div(s.n_embd, rows_dn), call.n_tokens});
  } else {
    auto partial = scratch(kPartial, uint64_t{call.n_pairs} * s.n_embd * 4);
    if (!partial.ok()) return partial.status();
    vk::Buffer* weights = bufs[kWeights].get();
    auto red = pipeline({"moe_prefill_reduce", {1, 1, 1}, sizeof(ReducePush), {}});
    if (!red.ok()) return red.status();
    auto set_red = make_set(**red, false, {*partial, weights, *out});
    if (!set_red.ok()) return set_red.status();
    // One gate+up and one down dispatch per tile width that has tiles.
    uint32_t tile_base = 0;
    for (size_t wi = 0; wi < std::size(kPrefillTiles); ++wi) {
      const uint32_t n = call.width_tiles[wi], width = kPrefillTiles[wi];
      if (n == 0) continue;
      const uint32_t rows = width == 128 ? tuning.prefill_wide_rows : tuning.prefill_rows;
      auto spec = [&](uint32_t mode, bool aligned) {
        return std::vector<std::pair<uint32_t, uint32_t>>{{kSpecSegments, nseg},
                                                          {kSpecRows, rows},
                                                          {kSpecTile, width},
                                                          {kSpecModeDown, mode},
                                                          {kSpecAlign16, aligned ? 1u : 0u},
                                                          {kSpecSg8, sg8}};
      };
      auto gu = pipeline({std::string("moe_prefill_matmul_") + moe_gpu_variant(s.gate_up_type),
                          {nseg, 1, 1, 1, 1},
                          sizeof(PrefillPush),
                          spec(0, call.gate_up_aligned)});
      if (!gu.ok()) return gu.status();
      auto dn = pipeline({std::string("moe_prefill_matmul_") + moe_gpu_variant(s.down_type),
                          {nseg, 1, 1, 1, 1},
                          sizeof(PrefillPush),
                          spec(1, call.down_aligned)});
      if (!dn.ok()) return dn.status();
      auto set_gu = make_set(**gu, true, {table, *pairs, act, *h});
      if (!set_gu.ok()) return set_gu.status();
      auto set_dn = make_set(**dn, true, {table, *pairs, *h, *partial});
      if (!set_dn.ok()) return set_dn.status();
      const PrefillPush push{s.n_embd, s.n_ff, s.top_k, tile_base};
      steps.push_back({*gu, *set_gu, push_bytes(push), ceil_div(s.n_ff, rows), n});
      steps.push_back({*dn, *set_dn, push_bytes(push), ceil_div(s.n_embd, rows), n});
      tile_base += n;
    }
    const ReducePush rpush{s.n_embd, s.top_k, call.n_tokens};
    steps.push_back(
        {*red, *set_red, push_bytes(rpush), ceil_div(s.n_embd, kReduceThreads), call.n_tokens});
  }

  dispatches.clear();
  for (const Step& st : steps) dispatches.push_back(pipeline_key(st.p->spec()));
  if (timed) {
    vkCmdResetQueryPool(c, queries, 0, 3 + kMaxSteps);
    vkCmdWriteTimestamp(c, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, queries, 0);
  }
  timed_steps = timed ? static_cast<uint32_t>(std::min<size_t>(steps.size(), kMaxSteps)) : 0;
  for (uint32_t rep = 0; rep < repeats; ++rep) {
    if (rep + 1 == repeats && timed_steps > 0) {
      vkCmdWriteTimestamp(c, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, queries, 2);
    }
    for (size_t si = 0; si < steps.size(); ++si) {
      const Step& st = steps[si];
      vkCmdBindPipeline(c, VK_PIPELINE_BIND_POINT_COMPUTE, st.p->pipeline());
      vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_COMPUTE, st.p->layout(), 0, 1, &st.set, 0,
                              nullptr);
      vkCmdPushConstants(c, st.p->layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0,
                         static_cast<uint32_t>(st.push.size()), st.push.data());
      vkCmdDispatch(c, st.gx, st.gy, 1);
      compute_to_compute(c);
      if (rep + 1 == repeats && si < timed_steps) {
        vkCmdWriteTimestamp(c, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, queries,
                            3 + static_cast<uint32_t>(si));
      }
    }
  }
  if (timed) vkCmdWriteTimestamp(c, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries, 1);
  return Status::Ok();
}

Status MoeGpu::Impl::record_download(const MoeCall& call) {
  VkCommandBuffer c = cmd->handle();
  vk::memory_barrier(c, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                     VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
  const uint64_t out_bytes = uint64_t{call.n_tokens} * call.shape.n_embd * 4;
  VkBufferCopy region{0, st_out, out_bytes};
  vkCmdCopyBuffer(c, bufs[kOut]->handle(), bufs[kStaging]->handle(), 1, &region);
  vk::memory_barrier(c, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                     VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
  return Status::Ok();
}

void MoeGpu::Impl::read_out(const MoeCall& call, std::span<float> out) const {
  const auto* base = static_cast<const uint8_t*>(bufs[kStaging]->mapped());
  std::memcpy(out.data(), base + st_out, uint64_t{call.n_tokens} * call.shape.n_embd * 4);
}

Result<double> MoeGpu::Impl::run(const MoeCall& call, std::span<const float> x,
                                 std::span<const float> weights, std::span<float> out,
                                 uint32_t repeats, bool timed) {
  VkResult r = vkResetDescriptorPool(dev.device(), pool, 0);
  if (r != VK_SUCCESS) return vk::vk_error("vkResetDescriptorPool", r);
  if (timed && !queries) {
    VkQueryPoolCreateInfo qci{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    qci.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qci.queryCount = 3 + kMaxSteps;
    r = vkCreateQueryPool(dev.device(), &qci, nullptr, &queries);
    if (r != VK_SUCCESS) return vk::vk_error("vkCreateQueryPool", r);
  }
  MOEPOOL_RETURN_IF_ERROR(cmd->begin());
  MOEPOOL_RETURN_IF_ERROR(record_upload(call, x, weights));
  if (timed) {  // the inputs land first, so the timestamps bracket only the kernels
    MOEPOOL_RETURN_IF_ERROR(cmd->end());
    MOEPOOL_RETURN_IF_ERROR(dev.submit_and_wait(cmd->handle()));
    MOEPOOL_RETURN_IF_ERROR(cmd->begin());
  }
  MOEPOOL_RETURN_IF_ERROR(record_work(call, repeats, timed));
  MOEPOOL_RETURN_IF_ERROR(record_download(call));
  MOEPOOL_RETURN_IF_ERROR(cmd->end());
  MOEPOOL_RETURN_IF_ERROR(dev.submit_and_wait(cmd->handle()));
  read_out(call, out);
  if (!timed) return 0.0;
  uint64_t ts[3 + kMaxSteps] = {};
  const uint32_t nq = 3 + timed_steps;
  r = vkGetQueryPoolResults(dev.device(), queries, 0, nq, nq * sizeof(uint64_t), ts,
                            sizeof(uint64_t), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
  if (r != VK_SUCCESS) return vk::vk_error("vkGetQueryPoolResults", r);
  // Query 2: the last repeat's start; query 3 + i: the end of its step i.
  step_seconds.clear();
  const double period = dev.timestamp_period_ns() * 1e-9;
  for (uint32_t i = 0; i < timed_steps; ++i) {
    step_seconds.push_back(static_cast<double>(ts[3 + i] - ts[2 + i]) * period);
  }
  return static_cast<double>(ts[1] - ts[0]) * dev.timestamp_period_ns() * 1e-9 / repeats;
}

// ---- MoeGpu ---------------------------------------------------------------------------

Result<std::unique_ptr<MoeGpu>> MoeGpu::create(const vk::Device& device) {
  if (!device.has_subgroup_arithmetic()) {
    return Unavailable("MoeGpu: " + device.name() +
                       " lacks subgroup basic+arithmetic operations in compute shaders");
  }
  const VkPhysicalDeviceLimits& lim = device.limits();
  const uint32_t per_stage =
      std::min(lim.maxPerStageDescriptorStorageBuffers, lim.maxDescriptorSetStorageBuffers);
  if (per_stage <= kOtherBindings) {
    return Unavailable("MoeGpu: " + device.name() + " allows only " + std::to_string(per_stage) +
                       " storage buffers per shader stage");
  }
  auto impl = std::make_unique<Impl>(device);
  impl->seg_slots = std::min(kMaxSegmentSlots, per_stage - kOtherBindings);
  auto cb = vk::CommandBuffer::create(device, device.compute_family());
  if (!cb.ok()) return cb.status();
  impl->cmd = std::move(*cb);
  // One set per dispatch of a call (reset per call).
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                            kMaxSteps * (impl->seg_slots + kOtherBindings)};
  VkDescriptorPoolCreateInfo dpci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  dpci.maxSets = kMaxSteps;
  dpci.poolSizeCount = 1;
  dpci.pPoolSizes = &size;
  VkResult r = vkCreateDescriptorPool(device.device(), &dpci, nullptr, &impl->pool);
  if (r != VK_SUCCESS) return vk::vk_error("MoeGpu: vkCreateDescriptorPool", r);
  std::unique_ptr<MoeGpu> gpu(new MoeGpu(std::move(impl)));
  MOEPOOL_RETURN_IF_ERROR(gpu->set_tuning({}));
  return gpu;
}

MoeGpu::MoeGpu(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MoeGpu::~MoeGpu() = default;

uint32_t MoeGpu::max_segments() const { return impl_->seg_slots; }

const std::vector<double>& MoeGpu::last_step_seconds() const { return impl_->step_seconds; }

const std::vector<std::string>& MoeGpu::last_dispatches() const { return impl_->dispatches; }

Status MoeGpu::bind_segments(std::span<const VkBuffer> buffers, std::span<const uint64_t> bytes) {
  if (buffers.size() != bytes.size()) {
    return InvalidArgument("bind_segments: " + std::to_string(buffers.size()) + " buffers but " +
                           std::to_string(bytes.size()) + " sizes");
  }
  if (buffers.empty() || buffers.size() > impl_->seg_slots) {
    return InvalidArgument("bind_segments: " + std::to_string(buffers.size()) + " segments; 1 to " +
                           std::to_string(impl_->seg_slots) + " allowed");
  }
  const uint64_t range = impl_->dev.limits().maxStorageBufferRange;
  for (size_t i = 0; i < buffers.size(); ++i) {
    if (buffers[i] == VK_NULL_HANDLE) {
      return InvalidArgument("bind_segments: buffers[" + std::to_string(i) + "] is null");
    }
    if (bytes[i] == 0 || bytes[i] > range) {
      return InvalidArgument("bind_segments: bytes[" + std::to_string(i) +
                             "] = " + std::to_string(bytes[i]) +
                             " is not in 1..maxStorageBufferRange (" + std::to_string(range) + ")");
    }
  }
  impl_->segments.assign(buffers.begin(), buffers.end());
  impl_->segment_bytes.assign(bytes.begin(), bytes.end());
  return Status::Ok();
}

Status MoeGpu::set_tuning(const MoeGpuTuning& t) {
  const VkPhysicalDeviceLimits& lim = impl_->dev.limits();
  MoeGpuTuning r = t;
  // decode_workgroup, decode_rows_at_once and decode_down_rows_at_once stay 0 (the
  // kernels' defaults for the path a call takes: record_work) unless set.
  if (r.decode_workgroup > lim.maxComputeWorkGroupInvocations ||
      r.decode_workgroup > lim.maxComputeWorkGroupSize[0]) {
    return InvalidArgument("set_tuning: decode_workgroup " + std::to_string(r.decode_workgroup) +
                           " exceeds the device's workgroup limit");
  }
  if (r.decode_rows_at_once > 4) {
    return InvalidArgument("set_tuning: decode_rows_at_once " +
                           std::to_string(r.decode_rows_at_once) + " is not 1..4");
  }
  if (r.decode_down_rows_at_once > 8) {
    return InvalidArgument("set_tuning: decode_down_rows_at_once " +
                           std::to_string(r.decode_down_rows_at_once) + " is not 1..8");
  }
  const bool int8_ok = impl_->dev.has_int8_decode();
  if (r.decode_activations == MoeGpuActivations::kInt8 && !int8_ok) {
    return FailedPrecondition(
        "set_tuning: int8 decode activations need shaderIntegerDotProduct "
        "(VK_KHR_shader_integer_dot_product), which " +
        impl_->dev.name() + " lacks");
  }
  if (r.decode_activations == MoeGpuActivations::kDefault) {
    r.decode_activations = int8_ok ? MoeGpuActivations::kInt8 : MoeGpuActivations::kF32;
  }
  // decode_rows stays 0 (each kernel: subgroups * its rows at once) unless set.
  if (r.prefill_rows == 0) {
    // 64 rows need (2 * 32 * 64 + 32 * 128) floats of shared memory at tile 128.
    r.prefill_rows = lim.maxComputeSharedMemorySize >= 32768 ? 64 : 32;
  }
  if (r.prefill_rows != 32 && r.prefill_rows != 64) {
    return InvalidArgument("set_tuning: prefill_rows " + std::to_string(r.prefill_rows) +
                           " is not 32 or 64");
  }
  if (r.prefill_wide_rows == 0) r.prefill_wide_rows = 32;
  if (r.prefill_wide_rows != 32 && r.prefill_wide_rows != 64) {
    return InvalidArgument("set_tuning: prefill_wide_rows " + std::to_string(r.prefill_wide_rows) +
                           " is not 32 or 64");
  }
  impl_->tuning = r;
  return Status::Ok();
}

Status MoeGpu::decode(const MoeGpuShape& shape, std::span<const ExpertLocation> experts,
                      std::span<const float> x, std::span<const uint32_t> ids,
                      std::span<const float> weights, std::span<float> out) {
  auto call = impl_->prepare("decode", shape, experts, x, ids, weights, out, false, 0);
  if (!call.ok()) return call.status();
  return impl_->run(*call, x, weights, out, 1, false).status();
}

Status MoeGpu::prefill(const MoeGpuShape& shape, std::span<const ExpertLocation> experts,
                       std::span<const float> x, std::span<const uint32_t> ids,
                       std::span<const float> weights, uint32_t tile, std::span<float> out) {
  auto call = impl_->prepare("prefill", shape, experts, x, ids, weights, out, true, tile);
  if (!call.ok()) return call.status();
  return impl_->run(*call, x, weights, out, 1, false).status();
}

Result<double> MoeGpu::time_decode(const MoeGpuShape& shape,
                                   std::span<const ExpertLocation> experts,
                                   std::span<const float> x, std::span<const uint32_t> ids,
                                   std::span<const float> weights, uint32_t repeats,
                                   std::span<float> out) {
  if (impl_->dev.timestamp_period_ns() <= 0) {
    return FailedPrecondition("time_decode: the compute queue has no timestamps");
  }
  if (repeats == 0) return InvalidArgument("time_decode: repeats must be > 0");
  auto call = impl_->prepare("time_decode", shape, experts, x, ids, weights, out, false, 0);
  if (!call.ok()) return call.status();
  return impl_->run(*call, x, weights, out, repeats, true);
}

Result<double> MoeGpu::time_prefill(const MoeGpuShape& shape,
                                    std::span<const ExpertLocation> experts,
                                    std::span<const float> x, std::span<const uint32_t> ids,
                                    std::span<const float> weights, uint32_t tile, uint32_t repeats,
                                    std::span<float> out) {
  if (impl_->dev.timestamp_period_ns() <= 0) {
    return FailedPrecondition("time_prefill: the compute queue has no timestamps");
  }
  if (repeats == 0) return InvalidArgument("time_prefill: repeats must be > 0");
  auto call = impl_->prepare("time_prefill", shape, experts, x, ids, weights, out, true, tile);
  if (!call.ok()) return call.status();
  return impl_->run(*call, x, weights, out, repeats, true);
}

}  // namespace moepool::kernels
