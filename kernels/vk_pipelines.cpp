#include "kernels/vk_pipelines.h"

#include "kernels/spirv.h"

namespace moepool::vk {

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
  r = vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cci, nullptr, &p->pipeline_);
  vkDestroyShaderModule(dev, module, nullptr);
  if (r != VK_SUCCESS) return vk_error(spec.module + ": vkCreateComputePipelines", r);
  return p;
}

ComputePipeline::~ComputePipeline() {
  VkDevice dev = device_.device();
  if (pipeline_) vkDestroyPipeline(dev, pipeline_, nullptr);
  if (layout_) vkDestroyPipelineLayout(dev, layout_, nullptr);
  if (set_layout_) vkDestroyDescriptorSetLayout(dev, set_layout_, nullptr);
}

}  // namespace moepool::vk
