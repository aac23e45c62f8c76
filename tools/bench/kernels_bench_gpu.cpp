// The Vulkan half of `moepool-bench kernels` (see kernels_bench_gpu.h).
#include "tools/bench/kernels_bench_gpu.h"

#if MOEPOOL_HAVE_VULKAN

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "kernels/moe_gpu.h"
#include "kernels/vk_device.h"
#include "tools/bench/kernels_bench_ceiling.h"
#include "tools/bench/kernels_bench_synth.h"

namespace moepool::bench {
namespace {

using kernels::ExpertLocation;
using kernels::MoeGpu;
using kernels::MoeGpuShape;

// A VkBuffer bound to its own VkDeviceMemory; frees both on destruction.
// Thread safety: one thread at a time.
class OwnedBuffer {
 public:
  OwnedBuffer() = default;
  OwnedBuffer(OwnedBuffer&& o) noexcept { *this = std::move(o); }
  OwnedBuffer& operator=(OwnedBuffer&& o) noexcept {
    std::swap(device_, o.device_);
    std::swap(buffer_, o.buffer_);
    std::swap(memory_, o.memory_);
    std::swap(mapped_, o.mapped_);
    return *this;
  }
  ~OwnedBuffer() {
    if (device_ == VK_NULL_HANDLE) return;
    if (mapped_) vkUnmapMemory(device_, memory_);
    if (buffer_) vkDestroyBuffer(device_, buffer_, nullptr);
    if (memory_) vkFreeMemory(device_, memory_, nullptr);
  }

  // Creates a buffer of `bytes` with `usage` in memory with `want` (falling back to
  // `fallback` when no type has `want`), mapped when host-visible.
  static Result<OwnedBuffer> create(const vk::Device& d, uint64_t bytes, VkBufferUsageFlags usage,
                                    VkMemoryPropertyFlags want, VkMemoryPropertyFlags fallback) {
    OwnedBuffer b;
    b.device_ = d.device();
    VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bci.size = bytes;
    bci.usage = usage;
    bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkResult r = vkCreateBuffer(b.device_, &bci, nullptr, &b.buffer_);
    if (r != VK_SUCCESS)
      return vk::vk_error("vkCreateBuffer (" + std::to_string(bytes) + " bytes)", r);
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(b.device_, b.buffer_, &req);
    auto type = d.find_memory_type(req.memoryTypeBits, want);
    if (!type.ok()) type = d.find_memory_type(req.memoryTypeBits, fallback);
    if (!type.ok()) return type.status();
    VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    mai.allocationSize = req.size;
    mai.memoryTypeIndex = *type;
    r = vkAllocateMemory(b.device_, &mai, nullptr, &b.memory_);
    if (r != VK_SUCCESS)
      return vk::vk_error("vkAllocateMemory (" + std::to_string(req.size) + " bytes)", r);
    r = vkBindBufferMemory(b.device_, b.buffer_, b.memory_, 0);
    if (r != VK_SUCCESS) return vk::vk_error("vkBindBufferMemory", r);
    if (fallback & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
      r = vkMapMemory(b.device_, b.memory_, 0, VK_WHOLE_SIZE, 0, &b.mapped_);
      if (r != VK_SUCCESS) return vk::vk_error("vkMapMemory", r);
    }
    return b;
  }

  VkBuffer buffer() const { return buffer_; }
  uint8_t* mapped() const { return static_cast<uint8_t*>(mapped_); }

 private:
  VkDevice device_ = VK_NULL_HANDLE;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  void* mapped_ = nullptr;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One layer's experts resident in device-local segments, in the slots of `layout`.
struct ResidentLayer {
  SlotLayout layout;
  std::vector<OwnedBuffer> segments;
  std::vector<VkBuffer> buffers;
  std::vector<ExpertLocation> experts;
};

// Allocates the segments and fills them with valid random experts through a staging buffer.
Result<ResidentLayer> make_resident(const vk::Device& d, const LayerShape& shape,
                                    const SlotLayout& layout, const KernelsBenchOptions& o) {
  ResidentLayer L;
  L.layout = layout;
  const uint64_t heap = d.heap_bytes(VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  if (layout.total_bytes() > heap / 10 * 9)
    return ResourceExhausted(shape.name + " " + std::string(ggml_type_name(layout.type)) + ": " +
                             std::to_string(layout.total_bytes()) +
                             " bytes of experts do not fit 90% of the device-local heap (" +
                             std::to_string(heap) + " bytes); pass --experts N");
  for (uint64_t bytes : layout.segment_bytes) {
    auto b = OwnedBuffer::create(
        d, bytes, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (!b.ok()) return b.status();
    L.buffers.push_back(b->buffer());
    L.segments.push_back(std::move(b).value());
  }
  for (uint32_t e = 0; e < shape.n_experts; ++e) {
    ExpertLocation loc;
    const uint32_t seg = layout.segment_of(e);
    const uint64_t off = layout.offset_of(e);
    loc.gate = {seg, off};
    loc.up = {seg, off + layout.gate_bytes};
    loc.down = {seg, off + 2 * layout.gate_bytes};
    L.experts.push_back(loc);
  }

  // Staging: whole slots, about 256 MiB at a time.
  const uint64_t per_batch = std::max<uint64_t>(1, (uint64_t{256} << 20) / layout.slot_stride);
  const uint64_t staging_bytes =
      std::min<uint64_t>(per_batch, shape.n_experts) * layout.slot_stride;
  auto staging = OwnedBuffer::create(
      d, staging_bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
      VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT |
          VK_MEMORY_PROPERTY_HOST_CACHED_BIT,
      VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
  if (!staging.ok()) return staging.status();
  auto cmd = vk::CommandBuffer::create(d, d.compute_family());
  if (!cmd.ok()) return cmd.status();
  const uint32_t threads =
      o.fill_threads ? o.fill_threads : std::max(1u, std::thread::hardware_concurrency());
  for (uint32_t first = 0; first < shape.n_experts; first += static_cast<uint32_t>(per_batch)) {
    const uint32_t n =
        static_cast<uint32_t>(std::min<uint64_t>(per_batch, shape.n_experts - first));
    for (uint32_t j = 0; j < n; ++j)
      fill_expert(layout, o.seed, first + j, staging->mapped() + uint64_t{j} * layout.slot_stride,
                  threads);
    Status st = (*cmd)->begin();
    if (!st.ok()) return st;
    for (uint32_t j = 0; j < n; ++j) {
      const uint32_t e = first + j;
      VkBufferCopy region{uint64_t{j} * layout.slot_stride, layout.offset_of(e),
                          layout.expert_bytes};
      vkCmdCopyBuffer((*cmd)->handle(), staging->buffer(), L.buffers[layout.segment_of(e)], 1,
                      &region);
    }
    // The kernels of later submissions read what this one wrote.
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT;
    vkCmdPipelineBarrier((*cmd)->handle(), VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
    if (!(st = (*cmd)->end()).ok()) return st;
    if (!(st = d.submit_and_wait((*cmd)->handle())).ok()) return st;
  }
  return L;
}

KernelRow base_row(const char* kernel, const LayerShape& s, GgmlType type, uint32_t tokens) {
  KernelRow r;
  r.kernel = kernel;
  r.shape = s.name;
  r.type = std::string(ggml_type_name(type));
  r.n_experts = s.n_experts;
  r.top_k = s.top_k;
  r.n_embd = s.n_embd;
  r.n_ff = s.n_ff;
  r.tokens = tokens;
  return r;
}

void finish_row(KernelRow* r, const std::vector<double>& secs, double distinct_sum,
                double bytes_sum) {
  r->reps = static_cast<uint32_t>(secs.size());
  if (secs.empty()) return;
  r->median_s = median_of(secs);
  double sum = 0;
  for (double s : secs) sum += s;
  r->mean_s = sum / secs.size();
  r->min_s = *std::min_element(secs.begin(), secs.end());
  r->distinct_experts = distinct_sum / secs.size();
  r->weight_bytes = bytes_sum / secs.size();
}

std::string where(const LayerShape& s, GgmlType t, const char* kernel, uint32_t tokens,
                  uint32_t tile = 0) {
  std::string w = s.name + " " + std::string(ggml_type_name(t)) + " " + kernel + " " +
                  std::to_string(tokens) + " tokens";
  if (tile) w += " tile " + std::to_string(tile);
  return w;
}

// --step-times: the median GPU time of each dispatch (in order) over the timed calls.
void print_steps(const std::string& what, std::vector<std::vector<double>>& steps) {
  fprintf(stderr, "  steps %s (us):", what.c_str());
  for (auto& v : steps) {
    if (!v.empty()) fprintf(stderr, " %.1f", median_of(v) * 1e6);
  }
  fprintf(stderr, "\n");
}

// Decode: one call per routing (fresh experts each call), median GPU time after warm-up.
// With `ceiling`, each call is followed by the read ceiling on the same call's experts.
void bench_decode(MoeGpu& gpu, DecodeCeiling* ceiling, const ResidentLayer& L, const LayerShape& s,
                  const MoeGpuShape& ms, const KernelsBenchOptions& o, KernelsReport* report) {
  for (uint32_t n : o.decode_tokens) {
    if (n == 0 || n > kernels::kMaxDecodeTokens) {
      report->errors.push_back(where(s, L.layout.type, "decode", n) + ": decode takes 1.." +
                               std::to_string(kernels::kMaxDecodeTokens) + " tokens");
      continue;
    }
    const auto routes =
        make_routings(o.warmup + o.reps, n, s.top_k, s.n_experts, 0, true, o.seed + n);
    const std::vector<float> x = random_activations(uint64_t{n} * s.n_embd, o.seed + 100 + n);
    std::vector<float> out(x.size());
    std::vector<double> secs, ceiling_secs, split_secs;
    double distinct = 0, bytes = 0, ceiling_bytes = 0;
    Status failed = Status::Ok(), ceiling_failed = Status::Ok();
    std::vector<std::vector<double>> steps;
    for (uint32_t i = 0; i < o.warmup + o.reps && failed.ok(); ++i) {
      const Routing& r = routes[i];
      auto t = gpu.time_decode(ms, L.experts, x, r.ids, r.weights, 1, out);
      if (!t.ok()) {
        failed = t.status();
        break;
      }
      if (ceiling && ceiling_failed.ok()) {
        const std::span<const uint32_t> next = i + 1 < routes.size()
                                                   ? std::span<const uint32_t>(routes[i + 1].ids)
                                                   : std::span<const uint32_t>();
        auto c = ceiling->time_call(r.ids, next);
        if (!c.ok()) {
          ceiling_failed = c.status();
        } else if (i >= o.warmup) {
          ceiling_secs.push_back(c->whole.seconds);
          split_secs.push_back(c->split_seconds);
          ceiling_bytes += double(c->whole.bytes);
        }
      }
      if (i < o.warmup) continue;
      secs.push_back(*t);
      const auto& st = gpu.last_step_seconds();
      if (steps.size() < st.size()) steps.resize(st.size());
      for (size_t j = 0; j < st.size(); ++j) steps[j].push_back(st[j]);
      distinct += r.distinct_experts;
      bytes += double(r.distinct_experts) * L.layout.expert_bytes;
    }
    if (!failed.ok()) {
      report->errors.push_back(where(s, L.layout.type, "decode", n) + ": " + failed.to_string());
      continue;
    }
    KernelRow row = base_row("decode", s, L.layout.type, n);
    finish_row(&row, secs, distinct, bytes);
    if (!ceiling_failed.ok()) {
      report->errors.push_back(where(s, L.layout.type, "decode", n) +
                               ": read ceiling: " + ceiling_failed.to_string());
    } else if (!ceiling_secs.empty()) {
      row.ceiling_median_s = median_of(ceiling_secs);
      row.ceiling_bytes = ceiling_bytes / ceiling_secs.size();
      row.ceiling_split_median_s = median_of(split_secs);
    }
    if (o.step_times) print_steps(where(s, L.layout.type, "decode", n), steps);
    report->rows.push_back(row);
  }
}

// Prefill: every tile width on the same routings, interleaved call by call so drift hits
// every width alike; bytes count each distinct expert once per call.
void bench_prefill(MoeGpu& gpu, const ResidentLayer& L, const LayerShape& s, const MoeGpuShape& ms,
                   const KernelsBenchOptions& o, KernelsReport* report) {
  for (uint32_t n : o.prefill_tokens) {
    if (n == 0) continue;
    const auto routes =
        make_routings(o.warmup + o.reps, n, s.top_k, s.n_experts, o.skew, false, o.seed + 1000 + n);
    const std::vector<float> x = random_activations(uint64_t{n} * s.n_embd, o.seed + 2000 + n);
    std::vector<float> out(x.size());
    const size_t nt = o.tiles.size();
    std::vector<std::vector<double>> secs(nt);
    std::vector<std::vector<std::vector<double>>> steps(nt);
    std::vector<Status> failed(nt, Status::Ok());
    double distinct = 0, bytes = 0;
    for (uint32_t i = 0; i < o.warmup + o.reps; ++i) {
      const Routing& r = routes[i];
      for (size_t ti = 0; ti < nt; ++ti) {
        if (!failed[ti].ok()) continue;
        auto t = gpu.time_prefill(ms, L.experts, x, r.ids, r.weights, o.tiles[ti], 1, out);
        if (!t.ok()) {
          failed[ti] = t.status();
          continue;
        }
        if (i >= o.warmup) {
          secs[ti].push_back(*t);
          const auto& st = gpu.last_step_seconds();
          auto& sv = steps[ti];
          if (sv.size() < st.size()) sv.resize(st.size());
          for (size_t j = 0; j < st.size(); ++j) sv[j].push_back(st[j]);
        }
      }
      if (i >= o.warmup) {
        distinct += r.distinct_experts;
        bytes += double(r.distinct_experts) * L.layout.expert_bytes;
      }
    }
    for (size_t ti = 0; ti < nt; ++ti) {
      if (!failed[ti].ok()) {
        report->errors.push_back(where(s, L.layout.type, "prefill", n, o.tiles[ti]) + ": " +
                                 failed[ti].to_string());
        continue;
      }
      if (o.step_times) print_steps(where(s, L.layout.type, "prefill", n, o.tiles[ti]), steps[ti]);
      KernelRow row = base_row("prefill", s, L.layout.type, n);
      row.tile = o.tiles[ti];
      finish_row(&row, secs[ti], distinct, bytes);  // every routing timed at every width
      report->rows.push_back(row);
    }
  }
}

}  // namespace

bool built_with_vulkan() { return true; }

Status run_gpu_kernels(const KernelsBenchOptions& o, KernelsReport* report) {
  auto dev = vk::Device::open({.index = o.device});
  if (!dev.ok()) return dev.status();
  const vk::Device& d = **dev;
  auto gpu = MoeGpu::create(d);
  if (!gpu.ok()) return gpu.status();
  kernels::MoeGpuTuning tuning;
  tuning.decode_workgroup = o.decode_workgroup;
  tuning.decode_rows = o.decode_rows;
  tuning.prefill_rows = o.prefill_rows;
  tuning.decode_rows_at_once = o.decode_rows_at_once;
  tuning.decode_down_rows_at_once = o.decode_down_rows_at_once;
  tuning.prefill_wide_rows = o.prefill_wide_rows;
  tuning.decode_activations = o.decode_activations == "f32" ? kernels::MoeGpuActivations::kF32
                              : o.decode_activations == "int8"
                                  ? kernels::MoeGpuActivations::kInt8
                                  : kernels::MoeGpuActivations::kDefault;
  tuning.decode_x_shared = o.decode_x_shared == "off"  ? kernels::MoeGpuSwitch::kOff
                           : o.decode_x_shared == "on" ? kernels::MoeGpuSwitch::kOn
                                                       : kernels::MoeGpuSwitch::kDefault;
  if (Status st = (*gpu)->set_tuning(tuning); !st.ok()) return st;
  std::unique_ptr<DecodeCeiling> ceiling;
  if (o.ceiling && o.decode) {
    auto c = DecodeCeiling::create(d, o);
    if (!c.ok())
      return Status(c.status().code(),
                    "read ceiling: " + c.status().message() + " (--no-ceiling leaves it out)");
    ceiling = std::move(*c);
  }
  report->has_device = true;
  report->device.name = d.name();
  report->device.driver = d.driver();
  report->device.uuid = vk::uuid_string(d.uuid());
  report->device.subgroup_size = d.subgroup_size();
  report->device.tuning =
      "decode_workgroup=" + std::to_string(o.decode_workgroup) +
      " decode_rows=" + std::to_string(o.decode_rows) +
      " prefill_rows=" + std::to_string(o.prefill_rows) +
      " decode_rows_at_once=" + std::to_string(o.decode_rows_at_once) +
      " decode_down_rows_at_once=" + std::to_string(o.decode_down_rows_at_once) +
      " prefill_wide_rows=" + std::to_string(o.prefill_wide_rows) +
      " decode_activations=" + o.decode_activations + " decode_x_shared=" + o.decode_x_shared;
  if (ceiling) report->device.ceiling = ceiling->describe();
  fprintf(stderr, "moepool-bench kernels: %s, driver %s, deviceUUID %s\n", d.name().c_str(),
          d.driver().c_str(), report->device.uuid.c_str());
  if (d.timestamp_period_ns() <= 0)
    return FailedPrecondition("the compute queue of " + d.name() +
                              " has no timestamps: GPU time cannot be measured");

  const uint64_t max_segment = std::min<uint64_t>(
      {uint64_t{d.limits().maxStorageBufferRange}, d.max_allocation_bytes(), o.segment_mib << 20});
  for (const std::string& name : o.shapes) {
    auto shape = layer_shape(name);
    if (!shape.ok()) return shape.status();
    LayerShape s = *shape;
    if (o.experts) s.n_experts = std::max(o.experts, s.top_k);
    for (GgmlType type : o.types) {
      const std::string cfg = s.name + " " + std::string(ggml_type_name(type));
      auto layout = slot_layout(s, type, max_segment);
      if (!layout.ok()) {
        report->errors.push_back(cfg + ": " + layout.status().to_string());
        continue;
      }
      if (layout->segments > (*gpu)->max_segments()) {
        report->errors.push_back(cfg + ": " + std::to_string(layout->segments) +
                                 " segments, more than the kernels bind (" +
                                 std::to_string((*gpu)->max_segments()) +
                                 "); raise --segment-mib or lower --experts");
        continue;
      }
      fprintf(stderr, "  %s: %u experts, %.1f MB each, %.2f GB in %u segments: filling...",
              cfg.c_str(), s.n_experts, layout->expert_bytes / 1e6, layout->total_bytes() / 1e9,
              layout->segments);
      fflush(stderr);
      const auto t0 = std::chrono::steady_clock::now();
      auto L = make_resident(d, s, *layout, o);
      if (!L.ok()) {
        fprintf(stderr, " failed\n");
        report->errors.push_back(cfg + ": " + L.status().to_string());
        continue;
      }
      fprintf(stderr, " %.1f s\n", seconds_since(t0));
      report->device.segment_bytes =
          std::max(report->device.segment_bytes, layout->segment_bytes.front());
      Status st = (*gpu)->bind_segments(L->buffers, layout->segment_bytes);
      if (!st.ok()) {
        report->errors.push_back(cfg + ": bind_segments: " + st.to_string());
        continue;
      }
      if (ceiling) {
        if (Status cst = ceiling->bind(L->buffers, *layout, L->experts); !cst.ok()) {
          report->errors.push_back(cfg + ": read ceiling: " + cst.to_string());
          continue;
        }
      }
      MoeGpuShape ms{s.n_embd, s.n_ff, s.top_k, type, type};
      if (o.decode) bench_decode(**gpu, ceiling.get(), *L, s, ms, o, report);
      if (o.prefill) bench_prefill(**gpu, *L, s, ms, o, report);
      // The segments are freed now; MoeGpu keeps their stale handles unused until the next
      // bind_segments() replaces them.
    }
  }
  return Status::Ok();
}

}  // namespace moepool::bench

#else  // built without Vulkan

namespace moepool::bench {

bool built_with_vulkan() { return false; }

Status run_gpu_kernels(const KernelsBenchOptions&, KernelsReport*) {
  return Unavailable(
      "moepool-bench was built without Vulkan (no libmoepool-kernels: configure with "
      "-DMOEPOOL_WITH_VULKAN=ON and the Vulkan headers and glslc installed); only --cpu-only runs");
}

}  // namespace moepool::bench

#endif
