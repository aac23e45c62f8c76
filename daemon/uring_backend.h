// The io_uring device: one ring owned by the engine thread, reads as IORING_OP_READ SQEs
// (READ_FIXED into registered buffers, IOSQE_FIXED_FILE for registered files), and an
// eventfd watched by a one-shot poll SQE so that wake() interrupts a blocked reap. The
// fixed-file and fixed-buffer tables are sparse, registered on first use and updated one
// slot at a time, so one refused buffer does not cost the others.
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
  uint32_t fixed_file_slots() const override { return files_refused_ ? 0 : kFileSlots; }
  Status set_fixed_file(uint32_t slot, int fd) override;
  uint32_t fixed_buffer_slots() const override { return buffers_refused_ ? 0 : kBufferSlots; }
  Status set_fixed_buffer(uint32_t slot, uint8_t* base, uint64_t len) override;

  static constexpr uint32_t kFileSlots = 64;      // model files (each has 2 fds) at once
  static constexpr uint32_t kBufferSlots = 1024;  // pool regions, in pieces of <= 1 GiB

 protected:
  void read_impl(const IoOp& op) override;
  Status flush_impl() override;
  Status reap_impl(std::vector<IoCompletion>* out, bool block) override;

 private:
  explicit UringBackend(uint32_t queue_depth) : queue_depth_(queue_depth) {}
  // Moves reads that found no free SQE into the ring; false if the SQ is still full.
  bool prepare_overflow();
  Status arm_wake_poll();
  // Puts one read into an SQE.
  void prep(struct io_uring_sqe* sqe, const IoOp& op);

  const uint32_t queue_depth_;
  struct io_uring ring_ {};
  bool ring_ready_ = false;
  int event_fd_ = -1;
  bool poll_armed_ = false;        // a poll SQE on event_fd_ is queued or in flight
  std::vector<IoOp> overflow_;     // reads that found the SQ full; go in at the next flush
  bool files_registered_ = false;  // the sparse fixed-file table exists
  bool files_refused_ = false;     // the kernel refused it: no fixed files
  bool buffers_registered_ = false;
  bool buffers_refused_ = false;
};

}  // namespace moepool
