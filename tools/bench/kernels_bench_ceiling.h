// The measured read ceiling beside each decode row of `moepool-bench kernels`: for one timed
// decode call, GpuReadCeiling (kernels/gpu_read_ceiling.h) streams the same call's distinct
// routed experts' gate, up and down byte ranges out of the same resident segments, so the
// decode's GB/s reads as a fraction of what plain 16-byte loads get on the same bytes.
// Before each timed read it reads other experts untimed (none of this call's or the next
// call's), so the GPU's L2 does not serve the experts the decode call just read: the decode
// and its ceiling both start cold, and the next decode call still finds none of its experts.
// It also times the split the decode kernels have: gate and up read in one dispatch, then
// down in a second (cold again), the best two dependent plain reads do on those bytes.
// Thread safety: one thread (it drives one GpuReadCeiling).
#pragma once

#if MOEPOOL_HAVE_VULKAN

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/gpu_read_ceiling.h"
#include "kernels/moe_gpu.h"
#include "kernels/vk_device.h"
#include "moepool/status.h"
#include "tools/bench/kernels_bench.h"
#include "tools/bench/kernels_bench_synth.h"

namespace moepool::bench {

// Which of an expert's projections expert_ranges() reads.
enum class Projections { kAll, kGateUp, kDown };

// The byte ranges of the distinct experts among `ids`: each one's gate, up and down (or the
// projections `which` names), widened to 16-byte boundaries (an end past its segment's last
// whole 16 bytes is cut there), sorted by (segment, offset), overlaps merged so no byte is
// read twice.
std::vector<kernels::ReadRange> expert_ranges(std::span<const uint32_t> ids,
                                              std::span<const kernels::ExpertLocation> experts,
                                              const SlotLayout& layout,
                                              Projections which = Projections::kAll);

// One timed call of the ceiling.
struct CeilingTimes {
  kernels::ReadCeilingRun whole;  // every range in one dispatch
  double split_seconds = 0;       // gate+up ranges, then down ranges: two dispatches' GPU time
};

class DecodeCeiling {
 public:
  // The launch shape and scrub size come from o.ceiling_*. Errors as GpuReadCeiling::create.
  static Result<std::unique_ptr<DecodeCeiling>> create(const vk::Device& device,
                                                       const KernelsBenchOptions& o);

  // Binds a layer's resident segments (as MoeGpu::bind_segments) and remembers where its
  // experts are; the caller keeps them alive until the next bind().
  Status bind(std::span<const VkBuffer> buffers, const SlotLayout& layout,
              std::span<const kernels::ExpertLocation> experts);

  // Reads experts in neither `ids` nor `next_ids` (up to the scrub size) untimed, then times
  // one read of `ids`' expert ranges; scrubs again and times the gate+up ranges and the down
  // ranges as two reads.
  Result<CeilingTimes> time_call(std::span<const uint32_t> ids,
                                 std::span<const uint32_t> next_ids);

  // "workgroup=256 chunk_kib=64 unroll=4 scrub_mib=256".
  std::string describe() const;

 private:
  DecodeCeiling() = default;
  Status scrub(std::span<const uint32_t> ids, std::span<const uint32_t> next_ids);
  std::unique_ptr<kernels::GpuReadCeiling> ceiling_;
  KernelsBenchOptions options_;
  SlotLayout layout_;
  std::vector<kernels::ExpertLocation> experts_;
  uint32_t calls_ = 0;  // rotates where the scrub starts
};

}  // namespace moepool::bench

#endif  // MOEPOOL_HAVE_VULKAN
