// One shareable memory object of the pool: a memfd the daemon maps read-write and hands
// to workers, who can only map it read-only (F_SEAL_FUTURE_WRITE is set after the
// daemon's own writable mapping exists, so the kernel refuses any later writable map).
// Thread safety: immutable after create(); any thread may read it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace moepool {

class ShmSegment {
 public:
  // Creates a memfd of `bytes` (a multiple of the page size), allocates its pages
  // (fallocate), maps it read-write at `at` (MAP_FIXED into a range the caller reserved)
  // or anywhere when `at` is null, and seals it against growing, shrinking and new
  // writable mappings.
  static Result<std::unique_ptr<ShmSegment>> create(const std::string& name, uint64_t bytes,
                                                    void* at);
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  int fd() const { return fd_; }
  uint8_t* data() const { return data_; }
  uint64_t bytes() const { return bytes_; }

  // Touches every page so first use does not fault; returns the time it took in ms.
  double prefault();
  // mlock()s the mapping. Errors (EPERM, ENOMEM under RLIMIT_MEMLOCK) are returned.
  Status lock();

 private:
  ShmSegment(int fd, uint8_t* data, uint64_t bytes, bool fixed)
      : fd_(fd), data_(data), bytes_(bytes), fixed_(fixed) {}
  int fd_;
  uint8_t* data_;
  uint64_t bytes_;
  bool fixed_;  // mapped into a caller's reservation: unmapping leaves PROT_NONE there
};

}  // namespace moepool
