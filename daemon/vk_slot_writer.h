// The VRAM backend's SlotWriter (daemon/slot_writer.h): a slot's read lands in a region
// of a pinned host staging buffer (StagingAllocator; a full staging buffer makes further
// reads wait, demand before prefetch), then a transfer queue copies the wanted bytes of
// every span into the segment buffer at the slot's offset (vkCmdCopyBuffer), and `done`
// runs only after that copy's fence signalled. Copies queued while a batch is on the
// queue go together in the next command buffer (up to kBatches in flight).
// The staging memory is our own page-aligned anonymous mapping imported with
// VK_EXT_external_memory_host where the device has it (O_DIRECT can always DMA into it),
// else a HOST_VISIBLE|HOST_COHERENT allocation mapped here.
// Threads: a submitter thread records and submits copy batches; a completion thread waits
// on their fences and runs `done`. write()/stats()/stop() may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "daemon/slot_writer.h"
#include "daemon/staging_allocator.h"

#ifdef MOEPOOL_DAEMON_HAVE_VULKAN
#include "daemon/vk_pool_memory.h"

namespace moepool {

class VkSlotWriter final : public SlotWriter {
 public:
  static constexpr uint32_t kBatches = 4;          // copy command buffers in flight at most
  static constexpr size_t kMaxJobsPerBatch = 256;  // slots per command buffer

  // `staging_bytes` (rounded up to 4096) must hold the largest slot: a slot of a segment
  // always fits when it is at least pool.segment_size. `memory` and `io` outlive this.
  static Result<std::unique_ptr<VkSlotWriter>> create(const VkPoolMemory* memory, IoEngine* io,
                                                      uint64_t staging_bytes);
  ~VkSlotWriter() override;

  void write(SlotRead read) override;
  std::string backend() const override { return "vulkan"; }
  UploadStats stats() const override;
  void stop() override;
  // One line for the log: staging size and how it is backed.
  const std::string& note() const { return note_; }

 private:
  struct Job {
    SlotRead read;
    uint64_t staging_offset = 0;
    uint64_t staging_bytes = 0;
    uint32_t segment = 0;
    uint64_t segment_offset = 0;  // of the slot
    uint64_t copy_bytes = 0;
  };
  struct Batch {
    std::unique_ptr<vk::CommandBuffer> cmd;
    VkFence fence = VK_NULL_HANDLE;
    std::vector<std::shared_ptr<Job>> jobs;
    std::chrono::steady_clock::time_point submitted;
  };

  VkSlotWriter(const VkPoolMemory* memory, IoEngine* io) : memory_(memory), io_(io) {}
  Status init(uint64_t staging_bytes);
  void start_read(std::shared_ptr<Job> job);
  void on_read(const std::shared_ptr<Job>& job, Status st);
  // Frees a job's staging region and starts the waiting reads that now fit.
  void release_staging(const Job& job);
  // Takes waiting jobs that fit into staging, under mu_.
  std::vector<std::shared_ptr<Job>> admit_waiting_locked();
  void submit_loop();
  void complete_loop();
  Status record(Batch& b);

  const VkPoolMemory* memory_;
  IoEngine* io_;
  std::string note_;
  uint64_t staging_capacity_ = 0;
  // Staging: our mapping (imported) or a Vulkan host-visible allocation mapped here.
  void* host_mapping_ = nullptr;
  uint64_t host_mapping_bytes_ = 0;
  VkBuffer staging_buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory staging_memory_ = VK_NULL_HANDLE;
  uint8_t* staging_ = nullptr;

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  StagingAllocator alloc_{0};
  std::deque<std::shared_ptr<Job>> waiting_demand_, waiting_prefetch_;
  std::deque<std::shared_ptr<Job>> copy_queue_;  // read, waiting for a batch
  std::vector<Batch> batches_;
  std::vector<uint32_t> free_batches_;
  std::deque<uint32_t> in_flight_;  // submission order
  bool stopping_ = false;
  bool submitter_done_ = false;
  bool stopped_ = false;
  std::chrono::steady_clock::time_point last_done_{};
  UploadStats stats_;
  std::thread submitter_, completer_;
  std::mutex join_mu_;
};

}  // namespace moepool
#endif  // MOEPOOL_DAEMON_HAVE_VULKAN
