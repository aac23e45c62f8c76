// Compute pipelines built from the SPIR-V embedded in libmoepool-kernels (kernels/spirv.h):
// one descriptor-set layout per kernel (set 0, every binding a storage buffer or an array of
// them), push constants, and specialization constants (workgroup size, rows, tile) so the
// launch shape is tuned without recompiling.
// Diagnostic: with MOEPOOL_VK_PIPELINE_STATS set (non-empty, not "0") on a device with
// VK_KHR_pipeline_executable_properties, each pipeline is created with the driver's statistics
// captured (registers, shared memory, spills...) and prints them to stderr, one line per
// executable.
// Thread safety: creation from any thread; a pipeline is immutable afterwards.
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/vk_device.h"
#include "moepool/status.h"

namespace moepool::vk {

struct PipelineSpec {
  std::string module;                    // embedded module name, e.g. "moe_decode_down_q4_k"
  std::vector<uint32_t> binding_counts;  // descriptor count of binding i (storage buffers)
  uint32_t push_constant_bytes = 0;      // compute-stage push constants, 0 for none
  std::vector<std::pair<uint32_t, uint32_t>> spec_constants;  // (constant_id, 32-bit value)
};

class ComputePipeline {
 public:
  // Builds the pipeline. NotFound naming the module when no such SPIR-V is embedded.
  static Result<std::unique_ptr<ComputePipeline>> create(const Device& device,
                                                         const PipelineSpec& spec);
  ~ComputePipeline();
  ComputePipeline(const ComputePipeline&) = delete;
  ComputePipeline& operator=(const ComputePipeline&) = delete;

  VkPipeline pipeline() const { return pipeline_; }
  VkPipelineLayout layout() const { return layout_; }
  VkDescriptorSetLayout set_layout() const { return set_layout_; }
  const PipelineSpec& spec() const { return spec_; }
  // The lines printed for MOEPOOL_VK_PIPELINE_STATS, one per executable:
  // "pipeline <module> [<id>=<value> ...] <executable>: <stat>=<value> ..." (spaces in stat
  // names become '_'). Empty when statistics were not captured.
  const std::vector<std::string>& statistics() const { return statistics_; }

 private:
  explicit ComputePipeline(const Device& d) : device_(d) {}
  const Device& device_;
  PipelineSpec spec_;
  VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
  VkPipeline pipeline_ = VK_NULL_HANDLE;
  std::vector<std::string> statistics_;
};

}  // namespace moepool::vk
