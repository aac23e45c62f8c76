// A worker process for tests/integration/vram_backend_test.cpp: attaches to a moepoold
// whose pool is VRAM (pool.backend = "vulkan"), imports the pool's segment fds into its
// own Vulkan device with plain Vulkan (VkImportMemoryFdInfoKHR into a dedicated buffer,
// after matching deviceUUID), acquires experts, copies each lease's slot back to the host
// and checks every projection's bytes against the model file.
//
//   vram_worker SOCKET MODEL LAYER:E1,E2,... [LAYER:E1,...]...
//
// Each argument after MODEL is one acquire (released before the next). Prints "ok N" (N
// projections checked) and exits 0; prints the first difference and exits 1; prints
// "SKIP: <why>" and exits 77 when this machine has no Vulkan loader.
// Vulkan is loaded with dlopen (VK_NO_PROTOTYPES), so the helper links only libmoepool.
#if __has_include(<vulkan/vulkan.h>)
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>
#define MOEPOOL_VRAM_WORKER 1
#endif

#include <cstdio>
#ifndef MOEPOOL_VRAM_WORKER
int main() {
  printf("SKIP: built without the Vulkan headers\n");
  return 77;
}
#else
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "moepool/client.h"
#include "moepool/moepool.h"

namespace {

[[noreturn]] void die(const std::string& what) {
  printf("FAIL: %s\n", what.c_str());
  fflush(stdout);
  exit(1);
}
[[noreturn]] void skip(const std::string& why) {
  printf("SKIP: %s\n", why.c_str());
  fflush(stdout);
  exit(77);
}
void check(VkResult r, const char* what) {
  if (r != VK_SUCCESS) die(std::string(what) + " failed: VkResult " + std::to_string(r));
}

struct Vk {
  PFN_vkGetInstanceProcAddr gipa = nullptr;
  VkInstance instance = VK_NULL_HANDLE;
  VkPhysicalDevice phys = VK_NULL_HANDLE;
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  uint32_t family = 0;
  VkPhysicalDeviceMemoryProperties mem{};
#define FN(name) PFN_##name name = nullptr;
  FN(vkCreateInstance) FN(vkEnumeratePhysicalDevices) FN(vkGetPhysicalDeviceProperties2)
  FN(vkGetPhysicalDeviceQueueFamilyProperties) FN(vkGetPhysicalDeviceMemoryProperties)
  FN(vkEnumerateDeviceExtensionProperties) FN(vkCreateDevice) FN(vkGetDeviceProcAddr)
  FN(vkGetDeviceQueue) FN(vkCreateBuffer) FN(vkGetBufferMemoryRequirements)
  FN(vkAllocateMemory) FN(vkBindBufferMemory) FN(vkMapMemory) FN(vkCreateCommandPool)
  FN(vkAllocateCommandBuffers) FN(vkBeginCommandBuffer) FN(vkEndCommandBuffer)
  FN(vkCmdCopyBuffer) FN(vkQueueSubmit) FN(vkQueueWaitIdle) FN(vkResetCommandBuffer)
#undef FN
};

Vk open_vulkan(const std::array<uint8_t, 16>& want_uuid) {
  Vk vk;
  void* lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) skip("no Vulkan loader (libvulkan.so.1)");
  vk.gipa = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(lib, "vkGetInstanceProcAddr"));
  if (vk.gipa == nullptr) skip("libvulkan.so.1 has no vkGetInstanceProcAddr");
  vk.vkCreateInstance =
      reinterpret_cast<PFN_vkCreateInstance>(vk.gipa(VK_NULL_HANDLE, "vkCreateInstance"));
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo ici{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ici.pApplicationInfo = &app;
  check(vk.vkCreateInstance(&ici, nullptr, &vk.instance), "vkCreateInstance");
#define LOAD(name) vk.name = reinterpret_cast<PFN_##name>(vk.gipa(vk.instance, #name))
  LOAD(vkEnumeratePhysicalDevices);
  LOAD(vkGetPhysicalDeviceProperties2);
  LOAD(vkGetPhysicalDeviceQueueFamilyProperties);
  LOAD(vkGetPhysicalDeviceMemoryProperties);
  LOAD(vkEnumerateDeviceExtensionProperties);
  LOAD(vkCreateDevice);
  LOAD(vkGetDeviceProcAddr);
  uint32_t n = 0;
  vk.vkEnumeratePhysicalDevices(vk.instance, &n, nullptr);
  std::vector<VkPhysicalDevice> devs(n);
  vk.vkEnumeratePhysicalDevices(vk.instance, &n, devs.data());
  // The pool's memory can only be imported on the physical device that exported it.
  for (VkPhysicalDevice d : devs) {
    VkPhysicalDeviceIDProperties id{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES};
    VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    p2.pNext = &id;
    vk.vkGetPhysicalDeviceProperties2(d, &p2);
    if (std::memcmp(id.deviceUUID, want_uuid.data(), 16) == 0) vk.phys = d;
  }
  if (vk.phys == VK_NULL_HANDLE)
    die("no Vulkan device here has the pool's deviceUUID (" + std::to_string(n) + " devices)");
  vk.vkGetPhysicalDeviceMemoryProperties(vk.phys, &vk.mem);
  uint32_t nq = 0;
  vk.vkGetPhysicalDeviceQueueFamilyProperties(vk.phys, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> qf(nq);
  vk.vkGetPhysicalDeviceQueueFamilyProperties(vk.phys, &nq, qf.data());
  vk.family = nq;
  for (uint32_t i = 0; i < nq; ++i)
    if (qf[i].queueFlags & (VK_QUEUE_TRANSFER_BIT | VK_QUEUE_COMPUTE_BIT | VK_QUEUE_GRAPHICS_BIT)) {
      vk.family = i;
      break;
    }
  if (vk.family == nq) die("no queue family can copy");
  float prio = 1;
  VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qci.queueFamilyIndex = vk.family;
  qci.queueCount = 1;
  qci.pQueuePriorities = &prio;
  const char* ext = VK_KHR_EXTERNAL_MEMORY_FD_EXTENSION_NAME;
  VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  dci.queueCreateInfoCount = 1;
  dci.pQueueCreateInfos = &qci;
  dci.enabledExtensionCount = 1;
  dci.ppEnabledExtensionNames = &ext;
  check(vk.vkCreateDevice(vk.phys, &dci, nullptr, &vk.device), "vkCreateDevice");
#define DLOAD(name) vk.name = reinterpret_cast<PFN_##name>(vk.vkGetDeviceProcAddr(vk.device, #name))
  DLOAD(vkGetDeviceQueue);
  DLOAD(vkCreateBuffer);
  DLOAD(vkGetBufferMemoryRequirements);
  DLOAD(vkAllocateMemory);
  DLOAD(vkBindBufferMemory);
  DLOAD(vkMapMemory);
  DLOAD(vkCreateCommandPool);
  DLOAD(vkAllocateCommandBuffers);
  DLOAD(vkBeginCommandBuffer);
  DLOAD(vkEndCommandBuffer);
  DLOAD(vkCmdCopyBuffer);
  DLOAD(vkQueueSubmit);
  DLOAD(vkQueueWaitIdle);
  DLOAD(vkResetCommandBuffer);
  vk.vkGetDeviceQueue(vk.device, vk.family, 0, &vk.queue);
  return vk;
}

uint32_t memory_type(const Vk& vk, uint32_t bits, VkMemoryPropertyFlags want) {
  for (uint32_t i = 0; i < vk.mem.memoryTypeCount; ++i)
    if ((bits & (1u << i)) && (vk.mem.memoryTypes[i].propertyFlags & want) == want) return i;
  die("no memory type with flags " + std::to_string(want));
}

// Imports one exported segment (consumes fd) as a buffer, as client.h describes.
VkBuffer import_segment(const Vk& vk, int fd, uint64_t bytes) {
  VkExternalMemoryBufferCreateInfo ext{VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO};
  ext.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT;
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.pNext = &ext;
  bci.size = bytes;
  bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
              VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  VkBuffer buf;
  check(vk.vkCreateBuffer(vk.device, &bci, nullptr, &buf), "vkCreateBuffer (import)");
  VkMemoryRequirements req;
  vk.vkGetBufferMemoryRequirements(vk.device, buf, &req);
  VkMemoryDedicatedAllocateInfo dedicated{VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO};
  dedicated.buffer = buf;
  VkImportMemoryFdInfoKHR imp{VK_STRUCTURE_TYPE_IMPORT_MEMORY_FD_INFO_KHR};
  imp.pNext = &dedicated;
  imp.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT;
  imp.fd = fd;
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.pNext = &imp;
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = memory_type(vk, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  VkDeviceMemory mem;
  check(vk.vkAllocateMemory(vk.device, &ai, nullptr, &mem), "vkAllocateMemory (import fd)");
  check(vk.vkBindBufferMemory(vk.device, buf, mem, 0), "vkBindBufferMemory (import)");
  return buf;
}

std::vector<uint8_t> file_bytes(const std::string& path, uint64_t offset, uint64_t bytes) {
  std::vector<uint8_t> out(bytes);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open " + path);
  if (pread(fd, out.data(), bytes, static_cast<off_t>(offset)) != static_cast<ssize_t>(bytes))
    die("short read of " + path);
  close(fd);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: vram_worker SOCKET MODEL LAYER:E1,E2,... [...]\n");
    return 2;
  }
  auto client = moepool::Client::connect(argv[1], "vram_worker");
  if (!client.ok()) die("connect: " + client.status().to_string());
  moepool::Client& c = **client;
  if (c.pool_backend() != "vulkan") die("the pool backend is '" + c.pool_backend() + "', not vulkan");
  if (c.pool_base() != nullptr) die("a vulkan pool was mapped into the worker");
  auto fds = c.dup_segment_fds();
  if (!fds.ok()) die("dup_segment_fds: " + fds.status().to_string());
  if (fds->size() != c.segment_count()) die("segment fd count differs from segment_count");

  Vk vk = open_vulkan(c.device_uuid());
  std::vector<VkBuffer> segments;
  for (int fd : *fds) segments.push_back(import_segment(vk, fd, c.segment_bytes()));

  auto model = c.open_model(argv[2]);
  if (!model.ok()) die("open_model: " + model.status().to_string());

  // A host-visible buffer to read slots back into (the largest stride fits a segment).
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = c.segment_bytes();
  bci.usage = VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  VkBuffer readback;
  check(vk.vkCreateBuffer(vk.device, &bci, nullptr, &readback), "vkCreateBuffer (readback)");
  VkMemoryRequirements req;
  vk.vkGetBufferMemoryRequirements(vk.device, readback, &req);
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = memory_type(
      vk, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
  VkDeviceMemory rb_mem;
  check(vk.vkAllocateMemory(vk.device, &ai, nullptr, &rb_mem), "vkAllocateMemory (readback)");
  check(vk.vkBindBufferMemory(vk.device, readback, rb_mem, 0), "vkBindBufferMemory (readback)");
  void* host = nullptr;
  check(vk.vkMapMemory(vk.device, rb_mem, 0, VK_WHOLE_SIZE, 0, &host), "vkMapMemory");
  VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = vk.family;
  VkCommandPool pool;
  check(vk.vkCreateCommandPool(vk.device, &pci, nullptr, &pool), "vkCreateCommandPool");
  VkCommandBufferAllocateInfo cai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  cai.commandPool = pool;
  cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  cai.commandBufferCount = 1;
  VkCommandBuffer cmd;
  check(vk.vkAllocateCommandBuffers(vk.device, &cai, &cmd), "vkAllocateCommandBuffers");

  uint64_t checked = 0;
  for (int a = 3; a < argc; ++a) {
    std::string spec = argv[a];
    size_t colon = spec.find(':');
    if (colon == std::string::npos) die("bad acquire spec " + spec);
    uint32_t layer = static_cast<uint32_t>(std::stoul(spec.substr(0, colon)));
    std::vector<uint32_t> experts;
    for (size_t at = colon + 1; at < spec.size();) {
      size_t comma = spec.find(',', at);
      if (comma == std::string::npos) comma = spec.size();
      experts.push_back(static_cast<uint32_t>(std::stoul(spec.substr(at, comma - at))));
      at = comma + 1;
    }
    auto leases = c.acquire(model->id, layer, experts);
    if (!leases.ok()) die("acquire " + spec + ": " + leases.status().to_string());
    for (const moepool::Lease& l : *leases) {
      if (l.slot != nullptr) die("a VRAM lease carries a host pointer");
      const uint64_t at = l.slot_index * l.stride;
      const uint32_t seg = static_cast<uint32_t>(at / c.segment_bytes());
      const uint64_t off = at % c.segment_bytes();
      if (seg >= segments.size() || off + l.stride > c.segment_bytes())
        die("lease of expert " + std::to_string(l.expert) + " straddles or leaves the segments");
      check(vk.vkResetCommandBuffer(cmd, 0), "vkResetCommandBuffer");
      VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
      check(vk.vkBeginCommandBuffer(cmd, &bi), "vkBeginCommandBuffer");
      VkBufferCopy region{off, 0, l.stride};
      vk.vkCmdCopyBuffer(cmd, segments[seg], readback, 1, &region);
      check(vk.vkEndCommandBuffer(cmd), "vkEndCommandBuffer");
      VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
      si.commandBufferCount = 1;
      si.pCommandBuffers = &cmd;
      check(vk.vkQueueSubmit(vk.queue, 1, &si, VK_NULL_HANDLE), "vkQueueSubmit");
      check(vk.vkQueueWaitIdle(vk.queue), "vkQueueWaitIdle");
      const uint8_t* slot = static_cast<const uint8_t*>(host);
      for (size_t p = 0; p < l.projections.size(); ++p) {
        const moepool::ProjectionView& pv = l.projections[p];
        if (pv.data != nullptr) die("a VRAM projection carries a host pointer");
        char* path = nullptr;
        char* err = nullptr;
        uint64_t foff = 0, fbytes = 0;
        if (moepool_debug_expert_extent(argv[2], layer, l.expert, static_cast<uint32_t>(p), &path,
                                        &foff, &fbytes, &err) != 0)
          die(std::string("extent: ") + (err ? err : "?"));
        if (fbytes != pv.bytes) die("projection byte count differs from the file's extent");
        std::vector<uint8_t> want = file_bytes(path, foff, fbytes);
        moepool_free(path);
        if (std::memcmp(slot + pv.offset_in_slot, want.data(), fbytes) != 0) {
          uint64_t i = 0;
          while (slot[pv.offset_in_slot + i] == want[i]) ++i;
          die("layer " + std::to_string(layer) + " expert " + std::to_string(l.expert) +
              " projection " + std::to_string(p) + " differs from the file at byte " +
              std::to_string(i) + " (slot " + std::to_string(l.slot_index) + ", segment " +
              std::to_string(seg) + ")");
        }
        ++checked;
      }
    }
    if (auto st = c.release(*leases); !st.ok()) die("release: " + st.to_string());
  }
  printf("ok %llu\n", static_cast<unsigned long long>(checked));
  return 0;
}
#endif  // MOEPOOL_VRAM_WORKER
