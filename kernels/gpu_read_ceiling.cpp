#include "kernels/gpu_read_ceiling.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/vk_buffer.h"
#include "kernels/vk_pipelines.h"

namespace moepool::kernels {
namespace {

constexpr uint32_t kSpecWorkgroup = 0, kSpecSegments = 1, kSpecChunk = 2, kSpecUnroll = 3;
constexpr uint32_t kOtherBindings = 2;  // the range table and the output
constexpr uint32_t kMaxSegmentSlots = 256;
constexpr uint32_t kRangeWords = 4;  // segment, offset, bytes, first chunk

struct Push {
  uint32_t n_ranges, n_chunks;
};

std::string range_name(size_t i) { return "read ceiling: ranges[" + std::to_string(i) + "]"; }

}  // namespace

struct GpuReadCeiling::Impl {
  explicit Impl(const vk::Device& d) : dev(d) {}
  ~Impl() {
    if (queries) vkDestroyQueryPool(dev.device(), queries, nullptr);
    if (pool) vkDestroyDescriptorPool(dev.device(), pool, nullptr);
  }

  const vk::Device& dev;
  ReadCeilingOptions options;
  uint32_t seg_slots = 0;
  std::unique_ptr<vk::CommandBuffer> cmd;
  VkDescriptorPool pool = VK_NULL_HANDLE;
  VkQueryPool queries = VK_NULL_HANDLE;
  std::unique_ptr<vk::ComputePipeline> pipeline;  // for segments.size() segments
  std::vector<VkBuffer> segments;
  std::vector<uint64_t> segment_bytes;
  std::unique_ptr<vk::Buffer> table, out, staging;

  // Grows `buf` to at least `bytes` (powers of two, at least 256).
  Status ensure(std::unique_ptr<vk::Buffer>& buf, uint64_t bytes, bool host) {
    bytes = std::max<uint64_t>(bytes, 256);
    if (buf && buf->bytes() >= bytes) return Status::Ok();
    buf.reset();
    uint64_t want = 256;
    while (want < bytes) want <<= 1;
    auto b = vk::Buffer::create(dev, want, host ? 0 : VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
                                host ? vk::MemoryKind::kHostVisible : vk::MemoryKind::kDeviceLocal);
    if (!b.ok()) return b.status();
    buf = std::move(*b);
    return Status::Ok();
  }

  Result<VkDescriptorSet> make_set(uint64_t table_bytes, uint64_t out_bytes);
  Status submit_table(uint64_t table_bytes);
  Status submit_read(VkDescriptorSet set, const Push& push, uint64_t out_bytes);
};

Result<VkDescriptorSet> GpuReadCeiling::Impl::make_set(uint64_t table_bytes, uint64_t out_bytes) {
  VkResult r = vkResetDescriptorPool(dev.device(), pool, 0);
  if (r != VK_SUCCESS) return vk::vk_error("read ceiling: vkResetDescriptorPool", r);
  VkDescriptorSetLayout layout = pipeline->set_layout();
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = pool;
  ai.descriptorSetCount = 1;
  ai.pSetLayouts = &layout;
  VkDescriptorSet set = VK_NULL_HANDLE;
  r = vkAllocateDescriptorSets(dev.device(), &ai, &set);
  if (r != VK_SUCCESS) return vk::vk_error("read ceiling: vkAllocateDescriptorSets", r);
  std::vector<VkDescriptorBufferInfo> infos;
  for (size_t i = 0; i < segments.size(); ++i) infos.push_back({segments[i], 0, segment_bytes[i]});
  infos.push_back({table->handle(), 0, table_bytes});
  infos.push_back({out->handle(), 0, out_bytes});
  const uint32_t nseg = static_cast<uint32_t>(segments.size());
  const uint32_t counts[3] = {nseg, 1, 1}, first[3] = {0, nseg, nseg + 1};
  VkWriteDescriptorSet w[3];
  for (uint32_t b = 0; b < 3; ++b) {
    w[b] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    w[b].dstSet = set;
    w[b].dstBinding = b;
    w[b].descriptorCount = counts[b];
    w[b].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    w[b].pBufferInfo = &infos[first[b]];
  }
  vkUpdateDescriptorSets(dev.device(), 3, w, 0, nullptr);
  return set;
}

// The range table lands first (its own submission), so the timestamps bracket the read only.
Status GpuReadCeiling::Impl::submit_table(uint64_t table_bytes) {
  MOEPOOL_RETURN_IF_ERROR(cmd->begin());
  VkCommandBuffer c = cmd->handle();
  VkBufferCopy region{0, 0, table_bytes};
  vkCmdCopyBuffer(c, staging->handle(), table->handle(), 1, &region);
  vk::memory_barrier(c, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                     VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT);
  MOEPOOL_RETURN_IF_ERROR(cmd->end());
  return dev.submit_and_wait(c);
}

Status GpuReadCeiling::Impl::submit_read(VkDescriptorSet set, const Push& push,
                                         uint64_t out_bytes) {
  const VkPhysicalDeviceLimits& lim = dev.limits();
  const uint32_t gx = std::min(push.n_chunks, lim.maxComputeWorkGroupCount[0]);
  const uint32_t gy = (push.n_chunks + gx - 1) / gx;
  if (gy > lim.maxComputeWorkGroupCount[1]) {
    return InvalidArgument("read ceiling: " + std::to_string(push.n_chunks) +
                           " chunks exceed the device's workgroup grid; raise chunk_bytes");
  }
  MOEPOOL_RETURN_IF_ERROR(cmd->begin());
  VkCommandBuffer c = cmd->handle();
  vkCmdResetQueryPool(c, queries, 0, 2);
  vkCmdWriteTimestamp(c, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, queries, 0);
  vkCmdBindPipeline(c, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline->pipeline());
  vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline->layout(), 0, 1, &set, 0,
                          nullptr);
  vkCmdPushConstants(c, pipeline->layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof push, &push);
  vkCmdDispatch(c, gx, gy, 1);
  vkCmdWriteTimestamp(c, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries, 1);
  vk::memory_barrier(c, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                     VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
  VkBufferCopy region{0, 0, out_bytes};
  vkCmdCopyBuffer(c, out->handle(), staging->handle(), 1, &region);
  vk::memory_barrier(c, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                     VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
  MOEPOOL_RETURN_IF_ERROR(cmd->end());
  return dev.submit_and_wait(c);
}

// ---- GpuReadCeiling -------------------------------------------------------------------

Result<std::unique_ptr<GpuReadCeiling>> GpuReadCeiling::create(const vk::Device& device,
                                                               const ReadCeilingOptions& o) {
  const VkPhysicalDeviceLimits& lim = device.limits();
  const uint32_t max_wg =
      std::min(lim.maxComputeWorkGroupSize[0], lim.maxComputeWorkGroupInvocations);
  if (o.workgroup == 0 || o.workgroup > max_wg) {
    return InvalidArgument("read ceiling: workgroup = " + std::to_string(o.workgroup) +
                           " is not in 1.." + std::to_string(max_wg) + " (the device's limit)");
  }
  if (o.chunk_bytes < 16 || o.chunk_bytes % 16 != 0) {
    return InvalidArgument("read ceiling: chunk_bytes = " + std::to_string(o.chunk_bytes) +
                           " is not a positive multiple of 16");
  }
  if (o.unroll == 0 || o.unroll > 16) {
    return InvalidArgument("read ceiling: unroll = " + std::to_string(o.unroll) +
                           " is not in 1..16");
  }
  if (device.timestamp_period_ns() <= 0) {
    return FailedPrecondition("read ceiling: the compute queue of " + device.name() +
                              " has no timestamps");
  }
  if (!device.has_subgroup_arithmetic()) {
    return Unavailable("read ceiling: " + device.name() +
                       " lacks subgroup basic+arithmetic operations in compute shaders");
  }
  const uint32_t per_stage =
      std::min(lim.maxPerStageDescriptorStorageBuffers, lim.maxDescriptorSetStorageBuffers);
  if (per_stage <= kOtherBindings) {
    return Unavailable("read ceiling: " + device.name() + " allows only " +
                       std::to_string(per_stage) + " storage buffers per shader stage");
  }

  auto impl = std::make_unique<Impl>(device);
  impl->options = o;
  impl->seg_slots = std::min(kMaxSegmentSlots, per_stage - kOtherBindings);
  auto cb = vk::CommandBuffer::create(device, device.compute_family());
  if (!cb.ok()) return cb.status();
  impl->cmd = std::move(*cb);
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, impl->seg_slots + kOtherBindings};
  VkDescriptorPoolCreateInfo dpci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  dpci.maxSets = 1;
  dpci.poolSizeCount = 1;
  dpci.pPoolSizes = &size;
  VkResult r = vkCreateDescriptorPool(device.device(), &dpci, nullptr, &impl->pool);
  if (r != VK_SUCCESS) return vk::vk_error("read ceiling: vkCreateDescriptorPool", r);
  VkQueryPoolCreateInfo qci{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
  qci.queryType = VK_QUERY_TYPE_TIMESTAMP;
  qci.queryCount = 2;
  r = vkCreateQueryPool(device.device(), &qci, nullptr, &impl->queries);
  if (r != VK_SUCCESS) return vk::vk_error("read ceiling: vkCreateQueryPool", r);
  return std::unique_ptr<GpuReadCeiling>(new GpuReadCeiling(std::move(impl)));
}

GpuReadCeiling::GpuReadCeiling(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuReadCeiling::~GpuReadCeiling() = default;

uint32_t GpuReadCeiling::max_segments() const { return impl_->seg_slots; }

Status GpuReadCeiling::bind_segments(std::span<const VkBuffer> buffers,
                                     std::span<const uint64_t> bytes) {
  Impl& m = *impl_;
  if (buffers.size() != bytes.size()) {
    return InvalidArgument("read ceiling: bind_segments: " + std::to_string(buffers.size()) +
                           " buffers but " + std::to_string(bytes.size()) + " sizes");
  }
  if (buffers.empty() || buffers.size() > m.seg_slots) {
    return InvalidArgument("read ceiling: bind_segments: " + std::to_string(buffers.size()) +
                           " segments; 1 to " + std::to_string(m.seg_slots) + " allowed");
  }
  const uint64_t range = m.dev.limits().maxStorageBufferRange;
  for (size_t i = 0; i < buffers.size(); ++i) {
    if (buffers[i] == VK_NULL_HANDLE) {
      return InvalidArgument("read ceiling: bind_segments: buffers[" + std::to_string(i) +
                             "] is null");
    }
    if (bytes[i] == 0 || bytes[i] > range) {
      return InvalidArgument("read ceiling: bind_segments: bytes[" + std::to_string(i) +
                             "] = " + std::to_string(bytes[i]) +
                             " is not in 1..maxStorageBufferRange (" + std::to_string(range) + ")");
    }
  }
  if (!m.pipeline || m.segments.size() != buffers.size()) {
    m.pipeline.reset();
    const ReadCeilingOptions& o = m.options;
    auto p =
        vk::ComputePipeline::create(m.dev, {"stream_read",
                                            {static_cast<uint32_t>(buffers.size()), 1, 1},
                                            sizeof(Push),
                                            {{kSpecWorkgroup, o.workgroup},
                                             {kSpecSegments, static_cast<uint32_t>(buffers.size())},
                                             {kSpecChunk, o.chunk_bytes},
                                             {kSpecUnroll, o.unroll}}});
    if (!p.ok()) return p.status();
    m.pipeline = std::move(*p);
  }
  m.segments.assign(buffers.begin(), buffers.end());
  m.segment_bytes.assign(bytes.begin(), bytes.end());
  return Status::Ok();
}

Result<ReadCeilingRun> GpuReadCeiling::run(std::span<const ReadRange> ranges) {
  Impl& m = *impl_;
  if (!m.pipeline) return FailedPrecondition("read ceiling: run before bind_segments");
  if (ranges.empty()) return InvalidArgument("read ceiling: no ranges to read");
  const uint64_t chunk = m.options.chunk_bytes;
  std::vector<uint32_t> table;
  table.reserve(ranges.size() * kRangeWords);
  ReadCeilingRun result;
  uint64_t chunks = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const ReadRange& rg = ranges[i];
    if (rg.segment >= m.segments.size()) {
      return InvalidArgument(range_name(i) + ".segment = " + std::to_string(rg.segment) + " but " +
                             std::to_string(m.segments.size()) + " segments are bound");
    }
    if (rg.offset % 16 != 0) {
      return InvalidArgument(range_name(i) + ".offset = " + std::to_string(rg.offset) +
                             " is not a multiple of 16");
    }
    if (rg.bytes == 0 || rg.bytes % 16 != 0) {
      return InvalidArgument(range_name(i) + ".bytes = " + std::to_string(rg.bytes) +
                             " is not a positive multiple of 16");
    }
    const uint64_t seg_bytes = m.segment_bytes[rg.segment];
    if (rg.offset > seg_bytes || rg.bytes > seg_bytes - rg.offset) {
      return InvalidArgument(range_name(i) + ": bytes [" + std::to_string(rg.offset) + ", " +
                             std::to_string(rg.offset + rg.bytes) + ") reach past segment " +
                             std::to_string(rg.segment) + "'s " + std::to_string(seg_bytes) +
                             " bytes");
    }
    // Offsets fit 32 bits: a segment holds at most maxStorageBufferRange (a uint32_t) bytes.
    table.insert(table.end(), {rg.segment, static_cast<uint32_t>(rg.offset),
                               static_cast<uint32_t>(rg.bytes), static_cast<uint32_t>(chunks)});
    chunks += (rg.bytes + chunk - 1) / chunk;
    result.bytes += rg.bytes;
    if (chunks > UINT32_MAX) {
      return InvalidArgument(range_name(i) + ": more than 2^32 chunks in all; raise chunk_bytes");
    }
  }
  result.workgroups = static_cast<uint32_t>(chunks);
  const uint64_t table_bytes = table.size() * sizeof(uint32_t);
  const uint64_t out_bytes = chunks * sizeof(uint32_t);
  MOEPOOL_RETURN_IF_ERROR(m.ensure(m.table, table_bytes, false));
  MOEPOOL_RETURN_IF_ERROR(m.ensure(m.out, out_bytes, false));
  MOEPOOL_RETURN_IF_ERROR(m.ensure(m.staging, std::max(table_bytes, out_bytes), true));
  std::memcpy(m.staging->mapped(), table.data(), table_bytes);
  MOEPOOL_RETURN_IF_ERROR(m.submit_table(table_bytes));
  auto set = m.make_set(table_bytes, out_bytes);
  if (!set.ok()) return set.status();
  const Push push{static_cast<uint32_t>(ranges.size()), result.workgroups};
  MOEPOOL_RETURN_IF_ERROR(m.submit_read(*set, push, out_bytes));

  uint64_t ts[2] = {};
  VkResult r =
      vkGetQueryPoolResults(m.dev.device(), m.queries, 0, 2, sizeof ts, ts, sizeof(uint64_t),
                            VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
  if (r != VK_SUCCESS) return vk::vk_error("read ceiling: vkGetQueryPoolResults", r);
  result.seconds = static_cast<double>(ts[1] - ts[0]) * m.dev.timestamp_period_ns() * 1e-9;
  const auto* partial = static_cast<const uint32_t*>(m.staging->mapped());
  for (uint32_t i = 0; i < result.workgroups; ++i) result.xor_value ^= partial[i];
  return result;
}

}  // namespace moepool::kernels
