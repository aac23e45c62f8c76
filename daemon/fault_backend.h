// A test device that wraps a real backend and, per read, passes it through, fails it
// with an errno, truncates it (short read), stalls it until released, or completes it and
// then flips one byte of what it read (corrupt) — the fault seam of STYLE.md §5. Used by
// the I/O engine's unit tests, by tests of the components above it and by the test-only
// daemon moepoold-corrupt; production moepoold never creates one. Thread: the engine
// thread calls read/flush/reap; set_rule, release_stalled, wait_stalled, stalled, issued,
// corrupted and wake may be called from any thread.
#pragma once

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/io_backend.h"

namespace moepool {

class FaultyBackend : public IoBackend {
 public:
  enum class Action { kPass, kFail, kShort, kStall, kCorrupt };
  struct Fault {
    Action action = Action::kPass;
    int err = EIO;             // kFail: the read completes with -err
    uint64_t short_bytes = 0;  // kShort: the read reports at most this many bytes
    // kCorrupt: the read completes normally, then byte buf[corrupt_at] is inverted (XOR
    // 0xFF) if the read returned at least corrupt_at + 1 bytes.
    uint64_t corrupt_at = 0;
  };
  // Decides what happens to read number n (1-based, in issue order, retries included).
  using Rule = std::function<Fault(uint64_t n, const IoOp& op)>;

  explicit FaultyBackend(std::unique_ptr<IoBackend> inner);

  // Rules for common cases.
  static Rule pass_all();
  static Rule fail_nth(uint64_t n, int err = EIO);
  static Rule short_nth(uint64_t n, uint64_t bytes);  // only read n is short
  static Rule short_all(uint64_t bytes);              // every read is short
  static Rule stall_nth(uint64_t n);
  static Rule stall_all();
  // Every read that covers byte `offset` of its file (any file) inverts that byte.
  static Rule corrupt_file_offset(uint64_t offset);

  // Replaces the rule for reads issued from now on.
  void set_rule(Rule rule);
  // Sends every stalled read on to the device.
  void release_stalled();
  // Blocks until at least n reads have stalled since creation. Stalled reads count as in
  // flight: release them before the engine's stop() can return.
  void wait_stalled(uint64_t n);
  // Reads stalled and not yet released.
  size_t stalled() const;
  // Every read the engine issued, in order (the read log: fd or fixed slot, buf, len,
  // offset, buf_index).
  std::vector<IoOp> issued() const;
  // Bytes inverted by kCorrupt so far.
  uint64_t corrupted() const { return corrupted_.load(std::memory_order_relaxed); }

  void wake() override { inner_->wake(); }
  std::string name() const override { return inner_->name(); }
  uint32_t max_in_flight() const override { return inner_->max_in_flight(); }
  // Registration passes through to the wrapped device (issued() shows buf_index/fixed_file).
  uint32_t fixed_file_slots() const override { return inner_->fixed_file_slots(); }
  Status set_fixed_file(uint32_t slot, int fd) override { return inner_->set_fixed_file(slot, fd); }
  uint32_t fixed_buffer_slots() const override { return inner_->fixed_buffer_slots(); }
  Status set_fixed_buffer(uint32_t slot, uint8_t* base, uint64_t len) override {
    return inner_->set_fixed_buffer(slot, base, len);
  }

 protected:
  void read_impl(const IoOp& op) override;
  Status flush_impl() override;
  Status reap_impl(std::vector<IoCompletion>* out, bool block) override;

 private:
  // Hands released reads to the inner device. Engine thread.
  void forward_released();

  std::unique_ptr<IoBackend> inner_;
  std::vector<IoCompletion> synthetic_;  // failed reads, returned at the next reap; engine thread
  std::unordered_map<uint64_t, uint64_t> short_limits_;  // tag -> bytes to report; engine thread
  // kCorrupt reads in flight: tag -> {buf, byte to invert}; engine thread.
  std::unordered_map<uint64_t, std::pair<uint8_t*, uint64_t>> corrupt_;
  std::atomic<uint64_t> corrupted_{0};
  mutable std::mutex mu_;
  std::condition_variable stalled_cv_;
  Rule rule_;
  uint64_t n_ = 0;
  uint64_t stalled_total_ = 0;
  std::vector<IoOp> stalled_;
  std::vector<IoOp> released_;
  std::vector<IoOp> issued_;
};

}  // namespace moepool
