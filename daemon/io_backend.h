// The device seam of the I/O engine (STYLE.md §5, after CacheLib's navy Device): the
// engine talks to an IoBackend through non-virtual calls that count, and each backend
// (io_uring, pread thread pool, a test's FaultyBackend) implements the *_impl hooks.
// Thread: one engine thread calls everything except wake(), which any thread may call.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace moepool {

// One positional read: len bytes of fd at offset into buf.
struct IoOp {
  int fd = -1;  // with fixed_file: a slot of the backend's fixed-file table instead
  uint8_t* buf = nullptr;
  uint64_t len = 0;
  uint64_t offset = 0;
  uint64_t tag = 0;         // returned unchanged in the completion
  int buf_index = -1;       // >= 0: [buf, buf + len) lies inside this fixed buffer (READ_FIXED)
  bool fixed_file = false;  // fd is a fixed-file slot (set_fixed_file() accepted it)
};

// A finished read: res is the byte count returned (may be short) or -errno.
struct IoCompletion {
  uint64_t tag = 0;
  int64_t res = 0;
};

class IoBackend {
 public:
  virtual ~IoBackend() = default;

  // Queues one read; it reaches the device at the latest at the next flush(). The caller
  // keeps at most max_in_flight() reads queued or in flight.
  void read(const IoOp& op) {
    reads_.fetch_add(1, std::memory_order_relaxed);
    read_impl(op);
  }
  // Hands every queued read to the device.
  Status flush() { return flush_impl(); }
  // Appends finished reads to *out. With block, waits until at least one read finished
  // or wake() was called since the last reap; without, returns at once.
  Status reap(std::vector<IoCompletion>* out, bool block) {
    size_t before = out->size();
    Status st = reap_impl(out, block);
    completions_.fetch_add(out->size() - before, std::memory_order_relaxed);
    return st;
  }
  // Makes a blocked (or the next) reap() return. Any thread.
  virtual void wake() = 0;
  // Short name of the path in use: "io_uring" or "pread" (test backends say what they wrap).
  virtual std::string name() const = 0;
  // Most reads this backend accepts queued or in flight at once.
  virtual uint32_t max_in_flight() const = 0;

  // Registered resources (io_uring fixed files and buffers). A backend without them keeps
  // the defaults: no slots, every call refused, and it never sees buf_index/fixed_file set
  // because the engine only sets them after the backend accepted the registration.
  // Slots in the fixed-file table (0: none).
  virtual uint32_t fixed_file_slots() const { return 0; }
  // Puts fd into fixed-file slot `slot`, replacing what was there (reads already issued
  // keep the file they were issued with).
  virtual Status set_fixed_file(uint32_t slot, int fd) {
    (void)slot, (void)fd;
    return FailedPrecondition(name() + ": no fixed files");
  }
  // Slots in the fixed-buffer table (0: none).
  virtual uint32_t fixed_buffer_slots() const { return 0; }
  // Registers [base, base + len) as fixed buffer `slot` (base == nullptr, len == 0: clears
  // the slot), replacing what was there. Fails where the kernel refuses (RLIMIT_MEMLOCK,
  // more than 1 GiB, memory it cannot pin); the slot is then empty.
  virtual Status set_fixed_buffer(uint32_t slot, uint8_t* base, uint64_t len) {
    (void)slot, (void)base, (void)len;
    return FailedPrecondition(name() + ": no fixed buffers");
  }

  // Reads handed to read() so far. Any thread.
  uint64_t reads() const { return reads_.load(std::memory_order_relaxed); }
  // Completions returned by reap() so far. Any thread.
  uint64_t completions() const { return completions_.load(std::memory_order_relaxed); }

 protected:
  virtual void read_impl(const IoOp& op) = 0;
  virtual Status flush_impl() = 0;
  virtual Status reap_impl(std::vector<IoCompletion>* out, bool block) = 0;

 private:
  std::atomic<uint64_t> reads_{0};
  std::atomic<uint64_t> completions_{0};
};

}  // namespace moepool
