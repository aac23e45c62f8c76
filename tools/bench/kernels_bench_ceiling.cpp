// The read ceiling beside the decode rows of `moepool-bench kernels` (see kernels_bench_ceiling.h).
#include "tools/bench/kernels_bench_ceiling.h"

#if MOEPOOL_HAVE_VULKAN

#include <algorithm>
#include <string>

namespace moepool::bench {

using kernels::ExpertLocation;
using kernels::ReadRange;

namespace {

uint64_t down16(uint64_t v) { return v & ~uint64_t{15}; }
uint64_t up16(uint64_t v) { return (v + 15) & ~uint64_t{15}; }

// Appends the expert's projections `which` names to `out`, widened to 16-byte boundaries.
void add_expert(const ExpertLocation& e, const SlotLayout& layout, Projections which,
                std::vector<ReadRange>* out) {
  std::vector<std::pair<const kernels::ProjLocation*, uint64_t>> projs;
  if (which != Projections::kDown) {
    projs.push_back({&e.gate, layout.gate_bytes});
    projs.push_back({&e.up, layout.gate_bytes});
  }
  if (which != Projections::kGateUp) projs.push_back({&e.down, layout.down_bytes});
  for (const auto& [p, bytes] : projs) {
    const uint64_t seg_end =
        p->segment < layout.segment_bytes.size() ? down16(layout.segment_bytes[p->segment]) : 0;
    const uint64_t begin = down16(p->offset);
    const uint64_t end = std::min(up16(p->offset + bytes), seg_end);
    if (end > begin) out->push_back({p->segment, begin, end - begin});
  }
}

}  // namespace

std::vector<ReadRange> expert_ranges(std::span<const uint32_t> ids,
                                     std::span<const ExpertLocation> experts,
                                     const SlotLayout& layout, Projections which) {
  std::vector<uint32_t> distinct(ids.begin(), ids.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<ReadRange> raw;
  for (uint32_t id : distinct)
    if (id < experts.size()) add_expert(experts[id], layout, which, &raw);
  std::sort(raw.begin(), raw.end(), [](const ReadRange& a, const ReadRange& b) {
    return a.segment != b.segment ? a.segment < b.segment : a.offset < b.offset;
  });
  std::vector<ReadRange> merged;
  for (const ReadRange& r : raw) {
    if (!merged.empty() && merged.back().segment == r.segment &&
        r.offset < merged.back().offset + merged.back().bytes) {
      ReadRange& m = merged.back();
      m.bytes = std::max(m.offset + m.bytes, r.offset + r.bytes) - m.offset;
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

Result<std::unique_ptr<DecodeCeiling>> DecodeCeiling::create(const vk::Device& device,
                                                             const KernelsBenchOptions& o) {
  kernels::ReadCeilingOptions ro;
  ro.workgroup = o.ceiling_workgroup;
  ro.chunk_bytes = o.ceiling_chunk_kib * 1024;
  ro.unroll = o.ceiling_unroll;
  auto c = kernels::GpuReadCeiling::create(device, ro);
  if (!c.ok()) return c.status();
  std::unique_ptr<DecodeCeiling> d(new DecodeCeiling());
  d->ceiling_ = std::move(*c);
  d->options_ = o;
  return d;
}

Status DecodeCeiling::bind(std::span<const VkBuffer> buffers, const SlotLayout& layout,
                           std::span<const ExpertLocation> experts) {
  MOEPOOL_RETURN_IF_ERROR(ceiling_->bind_segments(buffers, layout.segment_bytes));
  layout_ = layout;
  experts_.assign(experts.begin(), experts.end());
  return Status::Ok();
}

Status DecodeCeiling::scrub(std::span<const uint32_t> ids, std::span<const uint32_t> next_ids) {
  // Whole experts in neither call, from a rotating start, up to the scrub size.
  const uint32_t n = static_cast<uint32_t>(experts_.size());
  std::vector<bool> busy(n, false);
  for (uint32_t id : ids)
    if (id < n) busy[id] = true;
  for (uint32_t id : next_ids)
    if (id < n) busy[id] = true;
  const uint64_t scrub_bytes = options_.ceiling_scrub_mib << 20;
  std::vector<uint32_t> scrub;
  uint64_t have = 0;
  const uint32_t start = (calls_++ * 7919u) % n;
  for (uint32_t j = 0; j < n && have < scrub_bytes; ++j) {
    const uint32_t e = (start + j) % n;
    if (busy[e]) continue;
    scrub.push_back(e);
    have += layout_.expert_bytes;
  }
  if (scrub.empty()) return Status::Ok();
  auto s = ceiling_->run(expert_ranges(scrub, experts_, layout_));
  if (!s.ok()) return Status(s.status().code(), "scrub read: " + s.status().message());
  return Status::Ok();
}

Result<CeilingTimes> DecodeCeiling::time_call(std::span<const uint32_t> ids,
                                              std::span<const uint32_t> next_ids) {
  if (experts_.empty()) return FailedPrecondition("read ceiling: no layer bound");
  CeilingTimes t;
  MOEPOOL_RETURN_IF_ERROR(scrub(ids, next_ids));
  auto whole = ceiling_->run(expert_ranges(ids, experts_, layout_));
  if (!whole.ok()) return whole.status();
  t.whole = *whole;
  MOEPOOL_RETURN_IF_ERROR(scrub(ids, next_ids));
  for (Projections p : {Projections::kGateUp, Projections::kDown}) {
    auto part = ceiling_->run(expert_ranges(ids, experts_, layout_, p));
    if (!part.ok()) return part.status();
    t.split_seconds += part->seconds;
  }
  return t;
}

std::string DecodeCeiling::describe() const {
  return "workgroup=" + std::to_string(options_.ceiling_workgroup) +
         " chunk_kib=" + std::to_string(options_.ceiling_chunk_kib) +
         " unroll=" + std::to_string(options_.ceiling_unroll) +
         " scrub_mib=" + std::to_string(options_.ceiling_scrub_mib);
}

}  // namespace moepool::bench

#endif  // MOEPOOL_HAVE_VULKAN
