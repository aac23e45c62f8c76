#include "kernels/vk_pipelines.h"

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/spirv.h"

namespace moepool::vk {

namespace {

// MOEPOOL_VK_PIPELINE_STATS is set, non-empty and not "0".
bool statistics_wanted() {
  const char* env = std::getenv("MOEPOOL_VK_PIPELINE_STATS");
  return env && *env && std::strcmp(env, "0") != 0;
}

std::string statistic_value(const VkPipelineExecutableStatisticKHR& st) {
  char buf[64];
  switch (st.format) {
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR:
      return st.value.b32 ? "true" : "false";
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
      std::snprintf(buf, sizeof buf, "%" PRId64, st.value.i64);
      return buf;
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
      std::snprintf(buf, sizeof buf, "%" PRIu64, st.value.u64);
      return buf;
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR:
      std::snprintf(buf, sizeof buf, "%g", st.value.f64);
      return buf;
    default:
      return "?";
  }
}

// One line per executable of `pipeline` (created with CAPTURE_STATISTICS):
// "pipeline <module> [<id>=<value> ...] <executable>: <stat>=<value> ...".
Result<std::vector<std::string>> executable_statistics(const Device& device, VkPipeline pipeline,
                                                       const PipelineSpec& spec) {
  std::string head = "pipeline " + spec.module + " [";
  for (size_t i = 0; i < spec.spec_constants.size(); ++i) {
    if (i) head += ' ';
    head += std::to_string(spec.spec_constants[i].first) + "=" +
            std::to_string(spec.spec_constants[i].second);
  }
  head += "] ";
  VkDevice dev = device.device();
  VkPipelineInfoKHR pi{VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR};
  pi.pipeline = pipeline;
  uint32_t n = 0;
  VkResult r = device.get_pipeline_executable_properties(dev, &pi, &n, nullptr);
  if (r != VK_SUCCESS) return vk_error(spec.module + ": vkGetPipelineExecutablePropertiesKHR", r);
  std::vector<VkPipelineExecutablePropertiesKHR> execs(
      n, {VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR});
  r = device.get_pipeline_executable_properties(dev, &pi, &n, execs.data());
  if (r != VK_SUCCESS && r != VK_INCOMPLETE)
    return vk_error(spec.module + ": vkGetPipelineExecutablePropertiesKHR", r);
  execs.resize(n);
  std::vector<std::string> lines;
  for (uint32_t e = 0; e < n; ++e) {
    VkPipelineExecutableInfoKHR ei{VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR};
    ei.pipeline = pipeline;
    ei.executableIndex = e;
    uint32_t m = 0;
    r = device.get_pipeline_executable_statistics(dev, &ei, &m, nullptr);
    if (r != VK_SUCCESS)
      return vk_error(spec.module + ": vkGetPipelineExecutableStatisticsKHR", r);
    std::vector<VkPipelineExecutableStatisticKHR> stats(
        m, {VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR});
    r = device.get_pipeline_executable_statistics(dev, &ei, &m, stats.data());
    if (r != VK_SUCCESS && r != VK_INCOMPLETE)
      return vk_error(spec.module + ": vkGetPipelineExecutableStatisticsKHR", r);
    stats.resize(m);
    std::string line = head + execs[e].name + ":";
    if (execs[e].subgroupSize) line += " subgroup_size=" + std::to_string(execs[e].subgroupSize);
    for (const auto& st : stats) {
      std::string name = st.name;
      for (char& c : name)
        if (c == ' ') c = '_';
      line += " " + name + "=" + statistic_value(st);
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace

Result<std::unique_ptr<ComputePipeline>> ComputePipeline::create(const Device& device,
                                                                 const PipelineSpec& spec) {
  std::span<const uint32_t> code = kernels::spirv(spec.module);
  if (code.empty()) {
    return NotFound("compute pipeline: no SPIR-V module named '" + spec.module +
                    "' is embedded in libmoepool-kernels (is kernels/shaders/ missing it, or "
                    "its variant?)");
  }
  std::unique_ptr<ComputePipeline> p(new ComputePipeline(device));
  p->spec_ = spec;
  VkDevice dev = device.device();

  std::vector<VkDescriptorSetLayoutBinding> bindings;
  for (uint32_t i = 0; i < spec.binding_counts.size(); ++i) {
    VkDescriptorSetLayoutBinding b{};
    b.binding = i;
    b.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    b.descriptorCount = spec.binding_counts[i];
    b.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    bindings.push_back(b);
  }
  VkDescriptorSetLayoutCreateInfo dci{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  dci.bindingCount = static_cast<uint32_t>(bindings.size());
  dci.pBindings = bindings.data();
  VkResult r = vkCreateDescriptorSetLayout(dev, &dci, nullptr, &p->set_layout_);
  if (r != VK_SUCCESS) return vk_error(spec.module + ": vkCreateDescriptorSetLayout", r);

  VkPushConstantRange pcr{VK_SHADER_STAGE_COMPUTE_BIT, 0, spec.push_constant_bytes};
  VkPipelineLayoutCreateInfo lci{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  lci.setLayoutCount = 1;
  lci.pSetLayouts = &p->set_layout_;
  lci.pushConstantRangeCount = spec.push_constant_bytes ? 1 : 0;
  lci.pPushConstantRanges = &pcr;
  r = vkCreatePipelineLayout(dev, &lci, nullptr, &p->layout_);
  if (r != VK_SUCCESS) return vk_error(spec.module + ": vkCreatePipelineLayout", r);

  VkShaderModuleCreateInfo mci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  mci.codeSize = code.size() * sizeof(uint32_t);
  mci.pCode = code.data();
  VkShaderModule module = VK_NULL_HANDLE;
  r = vkCreateShaderModule(dev, &mci, nullptr, &module);
  if (r != VK_SUCCESS) return vk_error(spec.module + ": vkCreateShaderModule", r);

  std::vector<VkSpecializationMapEntry> entries;
  std::vector<uint32_t> values;
  for (const auto& [id, value] : spec.spec_constants) {
    entries.push_back(
        {id, static_cast<uint32_t>(values.size() * sizeof(uint32_t)), sizeof(uint32_t)});
    values.push_back(value);
  }
  VkSpecializationInfo si{};
  si.mapEntryCount = static_cast<uint32_t>(entries.size());
  si.pMapEntries = entries.data();
  si.dataSize = values.size() * sizeof(uint32_t);
  si.pData = values.data();

  VkComputePipelineCreateInfo cci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  cci.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
  cci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  cci.stage.module = module;
  cci.stage.pName = "main";
  cci.stage.pSpecializationInfo = entries.empty() ? nullptr : &si;
  cci.layout = p->layout_;
  bool capture = statistics_wanted();
  if (capture && !device.has_pipeline_statistics()) {
    capture = false;
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      std::fprintf(stderr,
                   "MOEPOOL_VK_PIPELINE_STATS: %s lacks VK_KHR_pipeline_executable_properties; "
                   "no pipeline statistics\n",
                   device.name().c_str());
    }
  }
  if (capture) cci.flags |= VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR;
  r = vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cci, nullptr, &p->pipeline_);
  vkDestroyShaderModule(dev, module, nullptr);
  if (r != VK_SUCCESS) return vk_error(spec.module + ": vkCreateComputePipelines", r);
  if (capture) {
    // A diagnostic: a failure to read the statistics is printed, never fails the pipeline.
    auto lines = executable_statistics(device, p->pipeline_, spec);
    if (!lines.ok()) {
      std::fprintf(stderr, "pipeline %s: no statistics: %s\n", spec.module.c_str(),
                   lines.status().message().c_str());
    } else {
      p->statistics_ = std::move(*lines);
      for (const std::string& line : p->statistics_) std::fprintf(stderr, "%s\n", line.c_str());
    }
  }
  return p;
}

ComputePipeline::~ComputePipeline() {
  VkDevice dev = device_.device();
  if (pipeline_) vkDestroyPipeline(dev, pipeline_, nullptr);
  if (layout_) vkDestroyPipelineLayout(dev, layout_, nullptr);
  if (set_layout_) vkDestroyDescriptorSetLayout(dev, set_layout_, nullptr);
}

}  // namespace moepool::vk
