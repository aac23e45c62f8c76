// The fallback device: a small pool of threads each doing one pread() per read, for hosts
// where io_uring is refused (containers' seccomp, io_uring_disabled sysctl).
// Thread: the engine thread calls read/flush/reap; wake() from any thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "daemon/io_backend.h"

namespace moepool {

class PreadBackend : public IoBackend {
 public:
  // Starts `threads` reader threads; accepts up to queue_depth reads at once.
  static Result<std::unique_ptr<IoBackend>> create(uint32_t threads, uint32_t queue_depth);
  ~PreadBackend() override;  // stops and joins the threads (reads still queued are dropped)

  void wake() override;
  std::string name() const override { return "pread"; }
  uint32_t max_in_flight() const override { return queue_depth_; }

 protected:
  void read_impl(const IoOp& op) override;
  Status flush_impl() override;
  Status reap_impl(std::vector<IoCompletion>* out, bool block) override;

 private:
  explicit PreadBackend(uint32_t queue_depth) : queue_depth_(queue_depth) {}
  void worker();

  const uint32_t queue_depth_;
  std::vector<IoOp> unflushed_;  // engine thread only
  std::mutex mu_;
  std::condition_variable work_cv_;  // work_ non-empty or stopping_
  std::condition_variable done_cv_;  // done_ non-empty or woken_
  std::deque<IoOp> work_;
  std::vector<IoCompletion> done_;
  bool woken_ = false;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace moepool
