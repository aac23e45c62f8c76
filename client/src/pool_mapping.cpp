#include "pool_mapping.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace moepool {
namespace {

std::string num(uint64_t v) { return std::to_string(v); }

Status check_geometry(const PoolGeometry& g, size_t n_fds) {
  if (g.layout_version != kLayoutVersion) {
    return FailedPrecondition("moepoold speaks pool layout version " + num(g.layout_version) +
                              ", this libmoepool speaks " + num(kLayoutVersion) +
                              ": upgrade the older side");
  }
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (g.segment_count == 0 || g.segment_bytes == 0 || g.segment_bytes % page != 0) {
    return Internal("moepoold sent a bad pool layout: " + num(g.segment_count) + " segments of " +
                    num(g.segment_bytes) + " bytes");
  }
  uint64_t total = 0;
  if (__builtin_mul_overflow(g.segment_bytes, uint64_t{g.segment_count}, &total) ||
      total != g.pool_bytes) {
    return Internal("moepoold sent a bad pool layout: " + num(g.segment_count) + " x " +
                    num(g.segment_bytes) + " bytes != pool_bytes " + num(g.pool_bytes));
  }
  if (g.control_bytes < sizeof(ControlHeader)) {
    return Internal("moepoold sent a bad pool layout: control segment of " + num(g.control_bytes) +
                    " bytes is smaller than its header (" + num(sizeof(ControlHeader)) + ")");
  }
  if (n_fds != uint64_t{g.segment_count} + 1) {
    return Internal("moepoold sent " + num(n_fds) + " fds for a pool of " + num(g.segment_count) +
                    " segments (expected " + num(uint64_t{g.segment_count} + 1) + ")");
  }
  return Status::Ok();
}

// A memfd that is shorter than the mapping would SIGBUS on first touch: refuse it now.
Status check_fd_size(int fd, uint64_t want, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::FromErrno("fstat " + what, errno);
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) < want) {
    return Internal(what + " is " + num(static_cast<uint64_t>(st.st_size)) +
                    " bytes, the layout says " + num(want));
  }
  return Status::Ok();
}

Status check_control(const ControlHeader* h, const PoolGeometry& g) {
  auto mismatch = [](const std::string& field, uint64_t got, uint64_t want) {
    return FailedPrecondition("control segment does not match the pool layout: " + field + " is " +
                              num(got) + ", expected " + num(want));
  };
  if (h->magic != kControlMagic) return mismatch("magic", h->magic, kControlMagic);
  if (h->version != kLayoutVersion) return mismatch("version", h->version, kLayoutVersion);
  if (h->header_bytes != sizeof(ControlHeader))
    return mismatch("header_bytes", h->header_bytes, sizeof(ControlHeader));
  if (h->pool_bytes != g.pool_bytes) return mismatch("pool_bytes", h->pool_bytes, g.pool_bytes);
  if (h->segment_bytes != g.segment_bytes)
    return mismatch("segment_bytes", h->segment_bytes, g.segment_bytes);
  if (h->segment_count != g.segment_count)
    return mismatch("segment_count", h->segment_count, g.segment_count);
  if (h->max_classes != kMaxClasses) return mismatch("max_classes", h->max_classes, kMaxClasses);
  uint64_t table_bytes = 0, table_end = 0;
  if (h->slots_offset < sizeof(ControlHeader) || h->slots_offset % alignof(SlotEntry) != 0 ||
      __builtin_mul_overflow(h->slot_capacity, uint64_t{sizeof(SlotEntry)}, &table_bytes) ||
      __builtin_add_overflow(h->slots_offset, table_bytes, &table_end) ||
      table_end > g.control_bytes) {
    return FailedPrecondition("control segment does not match the pool layout: slot table of " +
                              num(h->slot_capacity) + " entries at byte " + num(h->slots_offset) +
                              " does not fit in " + num(g.control_bytes) + " bytes");
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<PoolMapping>> PoolMapping::map(const PoolGeometry& given,
                                                      const std::vector<int>& fds) {
  PoolGeometry g = given;
  if (g.backend.empty()) g.backend = "host";  // daemons older than PoolLayout.backend
  if (g.backend != "host" && g.backend != "vulkan") {
    return FailedPrecondition("moepoold's pool lives in backend '" + g.backend +
                              "', which this libmoepool does not know (it knows host and "
                              "vulkan): upgrade libmoepool");
  }
  if (g.backend == "vulkan" && g.device_uuid.size() != 16) {
    return Internal("moepoold sent a vulkan pool layout with a " +
                    num(g.device_uuid.size()) + "-byte device UUID (expected 16)");
  }
  MOEPOOL_RETURN_IF_ERROR(check_geometry(g, fds.size()));
  std::unique_ptr<PoolMapping> m(new PoolMapping(g));

  MOEPOOL_RETURN_IF_ERROR(check_fd_size(fds[0], g.control_bytes, "control segment"));
  void* control = ::mmap(nullptr, g.control_bytes, PROT_READ, MAP_SHARED, fds[0], 0);
  if (control == MAP_FAILED) return Status::FromErrno("mmap control segment", errno);
  m->control_ = static_cast<const ControlHeader*>(control);
  MOEPOOL_RETURN_IF_ERROR(check_control(m->control_, g));

  if (g.backend == "vulkan") {
    // Exported device memory: never mmapped here; the worker imports the fds.
    for (uint32_t i = 0; i < g.segment_count; ++i) {
      int fd = ::fcntl(fds[i + 1], F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return Status::FromErrno("dup pool segment " + num(i), errno);
      m->segment_fds_.push_back(fd);
    }
    return m;
  }
  // One range for all segments, so pool offset x is base + x across segment boundaries.
  void* range =
      ::mmap(nullptr, g.pool_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (range == MAP_FAILED) {
    return Status::FromErrno("reserve " + num(g.pool_bytes) + " bytes of address space", errno);
  }
  m->base_ = static_cast<uint8_t*>(range);
  for (uint32_t i = 0; i < g.segment_count; ++i) {
    std::string what = "pool segment " + num(i);
    MOEPOOL_RETURN_IF_ERROR(check_fd_size(fds[i + 1], g.segment_bytes, what));
    void* at = m->base_ + uint64_t{i} * g.segment_bytes;
    // MAP_POPULATE: the daemon pre-faulted every pool page and never frees one, so this
    // maps them all now, once. Without it every first touch of a 4 KiB page of a slot in
    // this process is a page fault: an engine reading 20 MiB of experts per layer
    // straight from the pool paid ~15 ms a layer for them (bench/llama/RESULTS.md).
    void* p = ::mmap(at, g.segment_bytes, PROT_READ, MAP_SHARED | MAP_FIXED | MAP_POPULATE,
                     fds[i + 1], 0);
    if (p == MAP_FAILED) return Status::FromErrno("mmap " + what, errno);
  }
  return m;
}

std::array<uint8_t, 16> PoolMapping::device_uuid() const {
  std::array<uint8_t, 16> out{};
  if (geometry_.device_uuid.size() == out.size())
    std::copy(geometry_.device_uuid.begin(), geometry_.device_uuid.end(), out.begin());
  return out;
}

Result<std::vector<int>> PoolMapping::dup_segment_fds() const {
  if (geometry_.backend != "vulkan") {
    return FailedPrecondition("the pool is host memory, already mapped at pool_base(); only a "
                              "vulkan pool hands out segment fds");
  }
  std::vector<int> out;
  for (size_t i = 0; i < segment_fds_.size(); ++i) {
    int fd = ::fcntl(segment_fds_[i], F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      Status st = Status::FromErrno("dup pool segment " + num(i), errno);
      for (int f : out) ::close(f);
      return st;
    }
    out.push_back(fd);
  }
  return out;
}

PoolMapping::~PoolMapping() {
  for (int fd : segment_fds_) ::close(fd);
  if (base_ != nullptr) ::munmap(base_, geometry_.pool_bytes);
  if (control_ != nullptr) {
    ::munmap(const_cast<ControlHeader*>(control_), geometry_.control_bytes);
  }
}

Status PoolMapping::check_slot(uint64_t slot_id, uint64_t generation) const {
  if (slot_id >= control_->slot_capacity) {
    return Internal("daemon sent slot " + num(slot_id) + ", the slot table has " +
                    num(control_->slot_capacity) + " entries");
  }
  const SlotEntry& e = slot_entries(control_)[slot_id];
  // Pairs with the daemon's release store of `state` after it wrote generation.
  uint32_t state = e.state.load(std::memory_order_acquire);
  uint64_t gen = e.generation.load(std::memory_order_relaxed);
  if (state != kSlotReady || gen != generation) {
    return Internal("slot " + num(slot_id) + " is not ready with generation " + num(generation) +
                    " (state " + num(state) + ", generation " + num(gen) + ")");
  }
  return Status::Ok();
}

}  // namespace moepool
