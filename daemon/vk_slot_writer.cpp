#include "daemon/vk_slot_writer.h"

#ifdef MOEPOOL_DAEMON_HAVE_VULKAN
#include <spdlog/spdlog.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace moepool {
namespace {

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace

Result<std::unique_ptr<VkSlotWriter>> VkSlotWriter::create(const VkPoolMemory* memory,
                                                           IoEngine* io, uint64_t staging_bytes) {
  std::unique_ptr<VkSlotWriter> w(new VkSlotWriter(memory, io));
  MOEPOOL_RETURN_IF_ERROR(w->init(staging_bytes));
  try {
    w->submitter_ = std::thread([p = w.get()] { p->submit_loop(); });
    w->completer_ = std::thread([p = w.get()] { p->complete_loop(); });
  } catch (const std::system_error& e) {
    w->stop();
    return Status::FromErrno("vram upload: start thread", e.code().value());
  }
  return w;
}

Status VkSlotWriter::init(uint64_t staging_bytes) {
  const vk::Device& d = memory_->device();
  VkDevice vd = d.device();
  uint64_t bytes = round_up(std::max<uint64_t>(staging_bytes, kIoAlign), kIoAlign);
  const bool import = d.has_external_memory_host() && d.get_memory_host_pointer_properties;
  if (import) bytes = round_up(bytes, std::max<uint64_t>(d.host_import_alignment(), kIoAlign));
  if (d.max_allocation_bytes() && bytes > d.max_allocation_bytes())
    return InvalidArgument("vram upload: staging of " + std::to_string(bytes) +
                           " bytes exceeds maxMemoryAllocationSize (" +
                           std::to_string(d.max_allocation_bytes()) + "); lower pool.segment_size");

  VkExternalMemoryBufferCreateInfo ext{VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO};
  ext.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.pNext = import ? &ext : nullptr;
  bci.size = bytes;
  bci.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VkResult r = vkCreateBuffer(vd, &bci, nullptr, &staging_buffer_);
  if (r != VK_SUCCESS) return vk::vk_error("vram upload: staging vkCreateBuffer", r);
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(vd, staging_buffer_, &req);

  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  VkImportMemoryHostPointerInfoEXT host{VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT};
  std::string how;
  if (import) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) return Status::FromErrno("vram upload: mmap staging", errno);
    host_mapping_ = p;
    host_mapping_bytes_ = bytes;
    if (mlock(p, bytes) != 0) spdlog::debug("vram upload: staging not mlock()ed: errno {}", errno);
    VkMemoryHostPointerPropertiesEXT props{VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT};
    r = d.get_memory_host_pointer_properties(
        vd, VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT, p, &props);
    if (r != VK_SUCCESS) return vk::vk_error("vram upload: vkGetMemoryHostPointerPropertiesEXT", r);
    auto t = d.find_memory_type(props.memoryTypeBits & req.memoryTypeBits,
                                VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT);
    if (!t.ok()) return Unavailable("vram upload: no memory type can import host staging memory");
    host.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
    host.pHostPointer = p;
    ai.pNext = &host;
    ai.memoryTypeIndex = *t;
    ai.allocationSize = bytes;
    how = "host memory imported with VK_EXT_external_memory_host";
  } else {
    auto t = d.find_memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                                        VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    if (!t.ok()) return Unavailable("vram upload: no host-visible coherent memory for staging");
    ai.memoryTypeIndex = *t;
    ai.allocationSize = req.size;
    how = "host-visible Vulkan memory";
  }
  r = vkAllocateMemory(vd, &ai, nullptr, &staging_memory_);
  if (r != VK_SUCCESS) return vk::vk_error("vram upload: staging vkAllocateMemory", r);
  r = vkBindBufferMemory(vd, staging_buffer_, staging_memory_, 0);
  if (r != VK_SUCCESS) return vk::vk_error("vram upload: staging vkBindBufferMemory", r);
  if (import) {
    staging_ = static_cast<uint8_t*>(host_mapping_);
  } else {
    void* mapped = nullptr;
    r = vkMapMemory(vd, staging_memory_, 0, VK_WHOLE_SIZE, 0, &mapped);
    if (r != VK_SUCCESS) return vk::vk_error("vram upload: vkMapMemory staging", r);
    staging_ = static_cast<uint8_t*>(mapped);
  }
  staging_capacity_ = bytes;
  alloc_ = StagingAllocator(bytes);

  batches_.resize(kBatches);
  for (uint32_t i = 0; i < kBatches; ++i) {
    auto cmd = vk::CommandBuffer::create(d, d.transfer_family());
    if (!cmd.ok()) return cmd.status();
    batches_[i].cmd = std::move(cmd).value();
    VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    r = vkCreateFence(vd, &fci, nullptr, &batches_[i].fence);
    if (r != VK_SUCCESS) return vk::vk_error("vram upload: vkCreateFence", r);
    free_batches_.push_back(kBatches - 1 - i);
  }
  note_ = "staging " + std::to_string(bytes >> 20) + " MiB of " + how + ", transfer queue family " +
          std::to_string(d.transfer_family());
  return Status::Ok();
}

VkSlotWriter::~VkSlotWriter() {
  stop();
  VkDevice vd = memory_->device().device();
  for (Batch& b : batches_) {
    if (b.fence) vkDestroyFence(vd, b.fence, nullptr);
    b.cmd.reset();
  }
  if (staging_buffer_) vkDestroyBuffer(vd, staging_buffer_, nullptr);
  if (staging_memory_) vkFreeMemory(vd, staging_memory_, nullptr);
  if (host_mapping_) munmap(host_mapping_, host_mapping_bytes_);
}

void VkSlotWriter::write(SlotRead read) {
  auto job = std::make_shared<Job>();
  const uint64_t seg = memory_->segment_bytes();
  job->segment = static_cast<uint32_t>(read.pool_offset / seg);
  job->segment_offset = read.pool_offset % seg;
  job->staging_bytes = StagingAllocator::rounded(read.slot_bytes);
  for (const SlotSpan& s : read.spans) job->copy_bytes += s.bytes;
  if (job->segment >= memory_->segment_count() || job->segment_offset + read.slot_bytes > seg) {
    auto done = std::move(read.done);
    return done(Internal("vram upload: slot at pool offset " + std::to_string(read.pool_offset) +
                         " (" + std::to_string(read.slot_bytes) + " bytes) is outside the pool's "
                         "segments"));
  }
  job->read = std::move(read);
  Status refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      refused = Unavailable("vram upload: shutting down");
    } else if (job->staging_bytes > alloc_.capacity()) {
      refused = Internal("vram upload: a " + std::to_string(job->staging_bytes) +
                         "-byte slot does not fit the " + std::to_string(alloc_.capacity()) +
                         "-byte staging buffer");
    } else {
      auto& q = job->read.priority == ReadPriority::kDemand ? waiting_demand_ : waiting_prefetch_;
      // Nothing overtakes a waiting read of its priority; demand waits behind no prefetch.
      std::optional<uint64_t> at;
      if (waiting_demand_.empty() && q.empty()) at = alloc_.allocate(job->staging_bytes);
      if (!at) {
        q.push_back(std::move(job));
        stats_.staging_waits++;
        return;
      }
      job->staging_offset = *at;
    }
  }
  if (!refused.ok()) {
    auto done = std::move(job->read.done);
    return done(std::move(refused));
  }
  start_read(std::move(job));
}

void VkSlotWriter::start_read(std::shared_ptr<Job> job) {
  uint8_t* region = staging_ + job->staging_offset;
  ReadRequest req = to_read_request(job->read, region, nullptr);
  req.done = [this, job](Status st) { on_read(job, std::move(st)); };
  io_->submit(std::move(req));
}

void VkSlotWriter::on_read(const std::shared_ptr<Job>& job, Status st) {
  if (st.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_ || !submitter_done_) {
      copy_queue_.push_back(job);
      cv_.notify_all();
      return;
    }
    st = Unavailable("vram upload: shutting down");
  }
  release_staging(*job);
  auto done = std::move(job->read.done);
  done(std::move(st));
}

std::vector<std::shared_ptr<VkSlotWriter::Job>> VkSlotWriter::admit_waiting_locked() {
  std::vector<std::shared_ptr<Job>> out;
  if (stopping_) return out;
  for (auto* q : {&waiting_demand_, &waiting_prefetch_}) {
    while (!q->empty()) {
      auto at = alloc_.allocate(q->front()->staging_bytes);
      if (!at) return out;  // keep order: nothing overtakes the head
      q->front()->staging_offset = *at;
      out.push_back(std::move(q->front()));
      q->pop_front();
    }
  }
  return out;
}

void VkSlotWriter::release_staging(const Job& job) {
  std::vector<std::shared_ptr<Job>> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    alloc_.release(job.staging_offset, job.staging_bytes);
    ready = admit_waiting_locked();
  }
  for (auto& j : ready) start_read(std::move(j));
}

Status VkSlotWriter::record(Batch& b) {
  MOEPOOL_RETURN_IF_ERROR(b.cmd->begin());
  VkCommandBuffer cmd = b.cmd->handle();
  std::vector<VkBufferCopy> regions;
  for (const auto& job : b.jobs) {
    regions.clear();
    for (const SlotSpan& s : job->read.spans) {
      const uint64_t at = s.region_offset + s.data_at;  // the wanted bytes, same place in both
      regions.push_back({job->staging_offset + at, job->segment_offset + at, s.bytes});
    }
    vkCmdCopyBuffer(cmd, staging_buffer_, memory_->buffer(job->segment),
                    static_cast<uint32_t>(regions.size()), regions.data());
  }
  // Make the copies available to whatever reads the segments next (workers' kernels on
  // their own devices import the same memory; the fence wait orders them after this).
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_MEMORY_READ_BIT | VK_ACCESS_SHADER_READ_BIT;
  vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0,
                       1, &mb, 0, nullptr, 0, nullptr);
  MOEPOOL_RETURN_IF_ERROR(b.cmd->end());
  VkResult r = vkResetFences(memory_->device().device(), 1, &b.fence);
  if (r != VK_SUCCESS) return vk::vk_error("vkResetFences", r);
  return memory_->device().submit(cmd, b.fence, /*transfer=*/true);
}

void VkSlotWriter::submit_loop() {
  for (;;) {
    uint32_t bi;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return (!copy_queue_.empty() && !free_batches_.empty()) ||
               (stopping_ && copy_queue_.empty());
      });
      if (copy_queue_.empty()) {  // stopping, nothing left to copy
        submitter_done_ = true;
        cv_.notify_all();
        return;
      }
      bi = free_batches_.back();
      free_batches_.pop_back();
      Batch& b = batches_[bi];
      while (!copy_queue_.empty() && b.jobs.size() < kMaxJobsPerBatch) {
        b.jobs.push_back(std::move(copy_queue_.front()));
        copy_queue_.pop_front();
      }
    }
    Batch& b = batches_[bi];
    b.submitted = std::chrono::steady_clock::now();
    Status st = record(b);
    if (st.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_.push_back(bi);
      cv_.notify_all();
      continue;
    }
    spdlog::error("vram upload: copying {} slots failed: {}", b.jobs.size(), st.to_string());
    std::vector<std::shared_ptr<Job>> jobs = std::move(b.jobs);
    b.jobs.clear();
    {
      std::lock_guard<std::mutex> lock(mu_);
      free_batches_.push_back(bi);
    }
    for (auto& job : jobs) {
      release_staging(*job);
      auto done = std::move(job->read.done);
      done(Status(st.code(), "copying the expert into VRAM: " + st.message()));
    }
  }
}

void VkSlotWriter::complete_loop() {
  VkDevice vd = memory_->device().device();
  for (;;) {
    uint32_t bi;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !in_flight_.empty() || submitter_done_; });
      if (in_flight_.empty()) return;  // submitter finished and nothing is on the queue
      bi = in_flight_.front();
    }
    Batch& b = batches_[bi];
    VkResult r = vkWaitForFences(vd, 1, &b.fence, VK_TRUE, UINT64_MAX);
    const auto now = std::chrono::steady_clock::now();
    Status st = r == VK_SUCCESS ? Status::Ok() : vk::vk_error("vkWaitForFences", r);
    std::vector<std::shared_ptr<Job>> jobs = std::move(b.jobs);
    b.jobs.clear();
    uint64_t bytes = 0;
    for (const auto& j : jobs) bytes += j->copy_bytes;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_.pop_front();
      free_batches_.push_back(bi);
      if (st.ok()) {
        // Batches finish in submission order on one queue: the busy time is the union of
        // [submitted, signalled] intervals.
        const auto from = std::max(b.submitted, last_done_);
        stats_.busy_ns += static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - from).count());
        last_done_ = now;
        stats_.batches++;
        stats_.copies += jobs.size();
        stats_.bytes += bytes;
      }
      cv_.notify_all();
    }
    if (!st.ok()) spdlog::error("vram upload: {}", st.to_string());
    for (auto& job : jobs) {
      // The slot is served from here on: only after its copy's fence signalled.
      auto done = std::move(job->read.done);
      done(st.ok() ? Status::Ok()
                   : Status(st.code(), "copying the expert into VRAM: " + st.message()));
      release_staging(*job);
    }
  }
}

UploadStats VkSlotWriter::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void VkSlotWriter::stop() {
  std::lock_guard<std::mutex> join(join_mu_);
  if (stopped_) return;
  std::vector<std::shared_ptr<Job>> waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto* q : {&waiting_demand_, &waiting_prefetch_}) {
      for (auto& j : *q) waiting.push_back(std::move(j));
      q->clear();
    }
    cv_.notify_all();
  }
  for (auto& j : waiting) {
    auto done = std::move(j->read.done);
    done(Unavailable("vram upload: shutting down"));
  }
  if (submitter_.joinable()) submitter_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    submitter_done_ = true;  // also when the thread never started
    cv_.notify_all();
  }
  if (completer_.joinable()) completer_.join();
  UploadStats s = stats();
  if (s.copies)
    spdlog::info("vram upload: {} slots, {} MiB copied in {} ms of transfer queue time ({:.2f} GB/s)",
                 s.copies, s.bytes >> 20, s.busy_ns / 1000000,
                 s.busy_ns ? static_cast<double>(s.bytes) / static_cast<double>(s.busy_ns) : 0.0);
  stopped_ = true;
}

}  // namespace moepool
#endif  // MOEPOOL_DAEMON_HAVE_VULKAN
