// The io_uring device: one ring owned by the engine thread, reads as IORING_OP_READ SQEs,
// and an eventfd watched by a one-shot poll SQE so that wake() interrupts a blocked reap.
// Thread: the engine thread calls read/flush/reap; wake() from any thread.
#pragma once

#include <liburing.h>

#include <memory>
#include <vector>

#include "daemon/io_backend.h"

namespace moepool {

class UringBackend : public IoBackend {
 public:
  // Sets up a ring for queue_depth reads. Fails (e.g. ENOSYS, EPERM under seccomp) with
  // a status that names io_uring_queue_init and the errno.
  static Result<std::unique_ptr<IoBackend>> create(uint32_t queue_depth);
  ~UringBackend() override;

  void wake() override;
  std::string name() const override { return "io_uring"; }
  uint32_t max_in_flight() const override { return queue_depth_; }

 protected:
  void read_impl(const IoOp& op) override;
  Status flush_impl() override;
  Status reap_impl(std::vector<IoCompletion>* out, bool block) override;

 private:
  explicit UringBackend(uint32_t queue_depth) : queue_depth_(queue_depth) {}
  // Moves reads that found no free SQE into the ring; false if the SQ is still full.
  bool prepare_overflow();
  Status arm_wake_poll();

  const uint32_t queue_depth_;
  struct io_uring ring_ {};
  bool ring_ready_ = false;
  int event_fd_ = -1;
  bool poll_armed_ = false;     // a poll SQE on event_fd_ is queued or in flight
  std::vector<IoOp> overflow_;  // reads that found the SQ full; go in at the next flush
};

}  // namespace moepool
