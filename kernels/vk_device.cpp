#include "kernels/vk_device.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace moepool::vk {

const char* result_name(VkResult r) {
  switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
    case VK_ERROR_INVALID_EXTERNAL_HANDLE: return "VK_ERROR_INVALID_EXTERNAL_HANDLE";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VK_ERROR_(unknown)";
  }
}

Status vk_error(const std::string& what, VkResult r) {
  std::string m = what + ": " + result_name(r) + " (" + std::to_string(static_cast<int>(r)) + ")";
  if (r == VK_ERROR_DEVICE_LOST || r == VK_ERROR_OUT_OF_DEVICE_MEMORY ||
      r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_INCOMPATIBLE_DRIVER ||
      r == VK_ERROR_INITIALIZATION_FAILED)
    return Unavailable(std::move(m));
  return Internal(std::move(m));
}

std::string uuid_string(const DeviceUuid& u) {
  char buf[40];
  std::snprintf(buf, sizeof buf,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
                u[14], u[15]);
  return buf;
}

namespace {

bool has_extension(const std::vector<VkExtensionProperties>& exts, const char* name) {
  for (const auto& e : exts)
    if (std::strcmp(e.extensionName, name) == 0) return true;
  return false;
}

int rank(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    default: return 3;
  }
}

std::string driver_string(const VkPhysicalDeviceDriverProperties& d,
                          const VkPhysicalDeviceProperties& p) {
  std::string s = d.driverName[0] ? d.driverName : "driver";
  if (d.driverInfo[0]) s += std::string(" ") + d.driverInfo;
  char v[32];
  std::snprintf(v, sizeof v, " (0x%x)", p.driverVersion);
  return s + v;
}

}  // namespace

Result<std::unique_ptr<Device>> Device::open(const DeviceOptions& options) {
  std::unique_ptr<Device> dev(new Device());
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "moepool";
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo ici{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ici.pApplicationInfo = &app;
  VkResult r = vkCreateInstance(&ici, nullptr, &dev->instance_);
  if (r != VK_SUCCESS) return Unavailable(std::string("no Vulkan instance: ") + result_name(r));

  uint32_t n = 0;
  vkEnumeratePhysicalDevices(dev->instance_, &n, nullptr);
  std::vector<VkPhysicalDevice> phys(n);
  if (n) vkEnumeratePhysicalDevices(dev->instance_, &n, phys.data());
  if (phys.empty()) return Unavailable("no Vulkan physical device");

  int index = options.index;
  if (index < 0) {
    if (const char* env = std::getenv("MOEPOOL_VK_DEVICE"); env && *env) index = std::atoi(env);
  }
  if (index >= static_cast<int>(phys.size()))
    return InvalidArgument("Vulkan device index " + std::to_string(index) + " out of range: " +
                           std::to_string(phys.size()) + " device(s)");
  if (index < 0) {
    index = 0;
    for (size_t i = 1; i < phys.size(); ++i) {
      VkPhysicalDeviceProperties a, b;
      vkGetPhysicalDeviceProperties(phys[i], &a);
      vkGetPhysicalDeviceProperties(phys[index], &b);
      if (rank(a.deviceType) < rank(b.deviceType)) index = static_cast<int>(i);
    }
  }
  dev->physical_ = phys[index];

  // Properties: UUID, driver, subgroup size, allocation and host-import limits.
  VkPhysicalDeviceExternalMemoryHostPropertiesEXT host_props{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT};
  VkPhysicalDeviceMaintenance3Properties m3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  VkPhysicalDeviceSubgroupProperties sub{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceDriverProperties drv{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  VkPhysicalDeviceIDProperties idp{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES};
  VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  uint32_t n_ext = 0;
  vkEnumerateDeviceExtensionProperties(dev->physical_, nullptr, &n_ext, nullptr);
  std::vector<VkExtensionProperties> exts(n_ext);
  if (n_ext) vkEnumerateDeviceExtensionProperties(dev->physical_, nullptr, &n_ext, exts.data());
  bool ext_fd = has_extension(exts, VK_KHR_EXTERNAL_MEMORY_FD_EXTENSION_NAME);
  bool ext_host = has_extension(exts, VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME);
  bool ext_idot = has_extension(exts, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
  bool ext_exec = has_extension(exts, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
  VkPhysicalDeviceShaderIntegerDotProductProperties idot_props{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES};
  p2.pNext = &idp;
  idp.pNext = &drv;
  drv.pNext = &sub;
  sub.pNext = &m3;
  if (ext_host) m3.pNext = &host_props;
  if (ext_idot) {
    idot_props.pNext = p2.pNext;
    p2.pNext = &idot_props;
  }
  vkGetPhysicalDeviceProperties2(dev->physical_, &p2);
  dev->uuid_ = std::to_array(idp.deviceUUID);
  dev->name_ = p2.properties.deviceName;
  dev->driver_ = driver_string(drv, p2.properties);
  dev->type_ = p2.properties.deviceType;
  dev->vendor_id_ = p2.properties.vendorID;
  dev->limits_ = p2.properties.limits;
  dev->subgroup_size_ = sub.subgroupSize;
  const VkSubgroupFeatureFlags arith =
      VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
  dev->subgroup_arithmetic_ = (sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                              (sub.supportedOperations & arith) == arith;
  dev->max_allocation_bytes_ = m3.maxMemoryAllocationSize;
  vkGetPhysicalDeviceMemoryProperties(dev->physical_, &dev->memory_);

  if (options.require_external_memory_fd && !ext_fd)
    return Unavailable(dev->name_ + " does not support VK_KHR_external_memory_fd");
  if (options.require_external_memory_host && !ext_host)
    return Unavailable(dev->name_ + " does not support VK_EXT_external_memory_host");

  // Features: take what the device has of what the kernels use.
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceVulkan11Features f11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  VkPhysicalDeviceShaderIntegerDotProductFeatures fidot{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES};
  VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR fexec{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
  f2.pNext = &f11;
  f11.pNext = &f12;
  if (ext_idot) f12.pNext = &fidot;
  if (ext_exec) {
    fexec.pNext = f2.pNext;
    f2.pNext = &fexec;
  }
  vkGetPhysicalDeviceFeatures2(dev->physical_, &f2);
  VkPhysicalDeviceVulkan12Features want12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceVulkan11Features want11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  VkPhysicalDeviceFeatures2 want{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  want.pNext = &want11;
  want11.pNext = &want12;
  want.features.shaderInt16 = f2.features.shaderInt16;
  want.features.shaderInt64 = f2.features.shaderInt64;
  // The kernels pick a pool segment out of a descriptor array by a per-workgroup index.
  want.features.shaderStorageBufferArrayDynamicIndexing =
      f2.features.shaderStorageBufferArrayDynamicIndexing;
  want11.storageBuffer16BitAccess = f11.storageBuffer16BitAccess;
  want12.storageBuffer8BitAccess = f12.storageBuffer8BitAccess;
  want12.shaderInt8 = f12.shaderInt8;
  want12.shaderFloat16 = f12.shaderFloat16;
  want12.timelineSemaphore = f12.timelineSemaphore;
  want12.bufferDeviceAddress = VK_FALSE;
  // The int8 decode kernels' 4x8-bit dot products (OpSDot).
  VkPhysicalDeviceShaderIntegerDotProductFeatures want_idot{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES};
  if (ext_idot && fidot.shaderIntegerDotProduct) {
    want_idot.shaderIntegerDotProduct = VK_TRUE;
    want12.pNext = &want_idot;
    dev->int_dot_ = true;
    dev->int_dot_accelerated_ =
        idot_props.integerDotProduct4x8BitPackedSignedAccelerated == VK_TRUE;
  }
  // Register/shared-memory/spill statistics of compiled pipelines (a diagnostic).
  VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR want_exec{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
  if (ext_exec && fexec.pipelineExecutableInfo) {
    want_exec.pipelineExecutableInfo = VK_TRUE;
    want_exec.pNext = want.pNext;
    want.pNext = &want_exec;
    dev->pipeline_statistics_ = true;
  }
  dev->float16_ = f12.shaderFloat16;
  dev->storage8_ = f12.storageBuffer8BitAccess;
  dev->storage16_ = f11.storageBuffer16BitAccess;
  dev->timeline_semaphore_ = f12.timelineSemaphore;

  // Queues: a compute family, and a transfer-only family when there is one.
  uint32_t nq = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(dev->physical_, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> qf(nq);
  vkGetPhysicalDeviceQueueFamilyProperties(dev->physical_, &nq, qf.data());
  int compute = -1, transfer = -1;
  for (uint32_t i = 0; i < nq; ++i) {
    if (compute < 0 && (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) compute = static_cast<int>(i);
    bool transfer_only = (qf[i].queueFlags & VK_QUEUE_TRANSFER_BIT) &&
                         !(qf[i].queueFlags & (VK_QUEUE_GRAPHICS_BIT | VK_QUEUE_COMPUTE_BIT));
    if (transfer < 0 && transfer_only) transfer = static_cast<int>(i);
  }
  if (compute < 0) return Unavailable(dev->name_ + " has no compute queue");
  dev->compute_family_ = static_cast<uint32_t>(compute);
  dev->transfer_family_ = transfer >= 0 ? static_cast<uint32_t>(transfer) : dev->compute_family_;
  uint32_t ts_bits = qf[compute].timestampValidBits;
  dev->timestamp_period_ns_ = ts_bits ? dev->limits_.timestampPeriod : 0.0;

  float prio = 1.0f;
  VkDeviceQueueCreateInfo qci[2]{};
  uint32_t n_qci = 1;
  qci[0] = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qci[0].queueFamilyIndex = dev->compute_family_;
  qci[0].queueCount = 1;
  qci[0].pQueuePriorities = &prio;
  if (dev->transfer_family_ != dev->compute_family_) {
    qci[1] = qci[0];
    qci[1].queueFamilyIndex = dev->transfer_family_;
    n_qci = 2;
  }
  std::vector<const char*> enable;
  if (ext_fd) {
    enable.push_back(VK_KHR_EXTERNAL_MEMORY_FD_EXTENSION_NAME);
    dev->external_memory_fd_ = true;
  }
  if (dev->int_dot_) enable.push_back(VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
  if (dev->pipeline_statistics_)
    enable.push_back(VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
  if (ext_host) {
    enable.push_back(VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME);
    dev->external_memory_host_ = true;
    dev->host_import_alignment_ = host_props.minImportedHostPointerAlignment;
  }
  VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  dci.pNext = &want;
  dci.queueCreateInfoCount = n_qci;
  dci.pQueueCreateInfos = qci;
  dci.enabledExtensionCount = static_cast<uint32_t>(enable.size());
  dci.ppEnabledExtensionNames = enable.data();
  r = vkCreateDevice(dev->physical_, &dci, nullptr, &dev->device_);
  if (r != VK_SUCCESS) return vk_error("vkCreateDevice(" + dev->name_ + ")", r);
  vkGetDeviceQueue(dev->device_, dev->compute_family_, 0, &dev->compute_queue_);
  vkGetDeviceQueue(dev->device_, dev->transfer_family_, 0, &dev->transfer_queue_);
  dev->transfer_mutex_ = dev->transfer_family_ == dev->compute_family_ ? &dev->compute_mutex_
                                                                       : &dev->transfer_mutex_own_;
  if (ext_fd) {
    dev->get_memory_fd = reinterpret_cast<PFN_vkGetMemoryFdKHR>(
        vkGetDeviceProcAddr(dev->device_, "vkGetMemoryFdKHR"));
    dev->get_memory_fd_properties = reinterpret_cast<PFN_vkGetMemoryFdPropertiesKHR>(
        vkGetDeviceProcAddr(dev->device_, "vkGetMemoryFdPropertiesKHR"));
  }
  if (ext_host) {
    dev->get_memory_host_pointer_properties =
        reinterpret_cast<PFN_vkGetMemoryHostPointerPropertiesEXT>(
            vkGetDeviceProcAddr(dev->device_, "vkGetMemoryHostPointerPropertiesEXT"));
  }
  if (dev->pipeline_statistics_) {
    dev->get_pipeline_executable_properties =
        reinterpret_cast<PFN_vkGetPipelineExecutablePropertiesKHR>(
            vkGetDeviceProcAddr(dev->device_, "vkGetPipelineExecutablePropertiesKHR"));
    dev->get_pipeline_executable_statistics =
        reinterpret_cast<PFN_vkGetPipelineExecutableStatisticsKHR>(
            vkGetDeviceProcAddr(dev->device_, "vkGetPipelineExecutableStatisticsKHR"));
    if (!dev->get_pipeline_executable_properties || !dev->get_pipeline_executable_statistics)
      dev->pipeline_statistics_ = false;
  }
  return dev;
}

Device::~Device() {
  if (device_) {
    vkDeviceWaitIdle(device_);
    vkDestroyDevice(device_, nullptr);
  }
  if (instance_) vkDestroyInstance(instance_, nullptr);
}

Result<uint32_t> Device::find_memory_type(uint32_t type_bits, VkMemoryPropertyFlags want) const {
  for (uint32_t i = 0; i < memory_.memoryTypeCount; ++i) {
    if ((type_bits & (1u << i)) && (memory_.memoryTypes[i].propertyFlags & want) == want) return i;
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "no memory type with flags 0x%x among types 0x%x", want, type_bits);
  return NotFound(name_ + ": " + buf);
}

uint64_t Device::heap_bytes(VkMemoryPropertyFlags flags) const {
  uint64_t best = 0;
  for (uint32_t i = 0; i < memory_.memoryTypeCount; ++i) {
    if ((memory_.memoryTypes[i].propertyFlags & flags) != flags) continue;
    uint64_t size = memory_.memoryHeaps[memory_.memoryTypes[i].heapIndex].size;
    if (size > best) best = size;
  }
  return best;
}

Status Device::submit(VkCommandBuffer cmd, VkFence fence, bool transfer) const {
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  std::mutex* m = transfer ? transfer_mutex_ : &compute_mutex_;
  std::lock_guard<std::mutex> lock(*m);
  VkResult r = vkQueueSubmit(transfer ? transfer_queue_ : compute_queue_, 1, &si, fence);
  if (r != VK_SUCCESS) return vk_error("vkQueueSubmit", r);
  return Status::Ok();
}

Status Device::submit_and_wait(VkCommandBuffer cmd, bool transfer) const {
  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VkFence fence = VK_NULL_HANDLE;
  VkResult r = vkCreateFence(device_, &fci, nullptr, &fence);
  if (r != VK_SUCCESS) return vk_error("vkCreateFence", r);
  Status st = submit(cmd, fence, transfer);
  if (st.ok()) {
    r = vkWaitForFences(device_, 1, &fence, VK_TRUE, UINT64_MAX);
    if (r != VK_SUCCESS) st = vk_error("vkWaitForFences", r);
  }
  vkDestroyFence(device_, fence, nullptr);
  return st;
}

Result<std::unique_ptr<CommandBuffer>> CommandBuffer::create(const Device& device,
                                                             uint32_t family) {
  std::unique_ptr<CommandBuffer> cb(new CommandBuffer(device));
  VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = family;
  VkResult r = vkCreateCommandPool(device.device(), &pci, nullptr, &cb->pool_);
  if (r != VK_SUCCESS) return vk_error("vkCreateCommandPool", r);
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = cb->pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  r = vkAllocateCommandBuffers(device.device(), &ai, &cb->cmd_);
  if (r != VK_SUCCESS) return vk_error("vkAllocateCommandBuffers", r);
  return cb;
}

CommandBuffer::~CommandBuffer() {
  if (pool_) vkDestroyCommandPool(device_.device(), pool_, nullptr);
}

Status CommandBuffer::begin() {
  VkResult r = vkResetCommandBuffer(cmd_, 0);
  if (r != VK_SUCCESS) return vk_error("vkResetCommandBuffer", r);
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  r = vkBeginCommandBuffer(cmd_, &bi);
  if (r != VK_SUCCESS) return vk_error("vkBeginCommandBuffer", r);
  return Status::Ok();
}

Status CommandBuffer::end() {
  VkResult r = vkEndCommandBuffer(cmd_);
  if (r != VK_SUCCESS) return vk_error("vkEndCommandBuffer", r);
  return Status::Ok();
}

void memory_barrier(VkCommandBuffer cmd, VkPipelineStageFlags src, VkAccessFlags src_access,
                    VkPipelineStageFlags dst, VkAccessFlags dst_access) {
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = src_access;
  mb.dstAccessMask = dst_access;
  vkCmdPipelineBarrier(cmd, src, dst, 0, 1, &mb, 0, nullptr, 0, nullptr);
}

}  // namespace moepool::vk
