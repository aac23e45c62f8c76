#include "daemon/uring_backend.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace moepool {
namespace {
constexpr uint64_t kWakeTag = ~0ULL;  // user_data of the eventfd poll SQE
}  // namespace

Result<std::unique_ptr<IoBackend>> UringBackend::create(uint32_t queue_depth) {
  if (queue_depth == 0) return InvalidArgument("io_uring backend: queue_depth must be > 0");
  std::unique_ptr<UringBackend> b(new UringBackend(queue_depth));
  // One spare SQE for the wake poll; the CQ (twice the SQ) never overflows.
  int ret = io_uring_queue_init(queue_depth + 2, &b->ring_, 0);
  if (ret < 0) return Status::FromErrno("io_uring_queue_init", -ret);
  b->ring_ready_ = true;
  b->event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (b->event_fd_ < 0) return Status::FromErrno("eventfd", errno);
  return std::unique_ptr<IoBackend>(std::move(b));
}

UringBackend::~UringBackend() {
  if (ring_ready_) io_uring_queue_exit(&ring_);  // cancels the wake poll
  if (event_fd_ >= 0) ::close(event_fd_);
}

void UringBackend::wake() {
  uint64_t one = 1;
  // EAGAIN only when the counter is saturated, which still wakes the poll.
  [[maybe_unused]] ssize_t n = ::write(event_fd_, &one, sizeof one);
}

void UringBackend::read_impl(const IoOp& op) {
  if (!prepare_overflow()) {
    overflow_.push_back(op);
    return;
  }
  struct io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    overflow_.push_back(op);
    return;
  }
  prep(sqe, op);
}

void UringBackend::prep(struct io_uring_sqe* sqe, const IoOp& op) {
  if (op.buf_index >= 0) {
    io_uring_prep_read_fixed(sqe, op.fd, op.buf, static_cast<unsigned>(op.len), op.offset,
                             op.buf_index);
  } else {
    io_uring_prep_read(sqe, op.fd, op.buf, static_cast<unsigned>(op.len), op.offset);
  }
  if (op.fixed_file) sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, op.tag);
}

Status UringBackend::set_fixed_file(uint32_t slot, int fd) {
  if (files_refused_ || slot >= kFileSlots) {
    return FailedPrecondition("io_uring: no fixed-file slot " + std::to_string(slot));
  }
  if (!files_registered_) {
    int ret = io_uring_register_files_sparse(&ring_, kFileSlots);
    if (ret < 0) {
      files_refused_ = true;
      return Status::FromErrno("io_uring_register_files_sparse", -ret);
    }
    files_registered_ = true;
  }
  int ret = io_uring_register_files_update(&ring_, slot, &fd, 1);
  if (ret < 0) return Status::FromErrno("io_uring_register_files_update", -ret);
  if (ret != 1) return Unavailable("io_uring_register_files_update: slot not updated");
  return Status::Ok();
}

Status UringBackend::set_fixed_buffer(uint32_t slot, uint8_t* base, uint64_t len) {
  if (buffers_refused_ || slot >= kBufferSlots) {
    return FailedPrecondition("io_uring: no fixed-buffer slot " + std::to_string(slot));
  }
  if (!buffers_registered_) {
    int ret = io_uring_register_buffers_sparse(&ring_, kBufferSlots);
    if (ret < 0) {
      buffers_refused_ = true;
      return Status::FromErrno("io_uring_register_buffers_sparse", -ret);
    }
    buffers_registered_ = true;
  }
  struct iovec iov {
    base, len
  };
  int ret = io_uring_register_buffers_update_tag(&ring_, slot, &iov, nullptr, 1);
  if (ret < 0) return Status::FromErrno("io_uring_register_buffers_update", -ret);
  if (ret != 1) return Unavailable("io_uring_register_buffers_update: slot not updated");
  return Status::Ok();
}

bool UringBackend::prepare_overflow() {
  size_t i = 0;
  for (; i < overflow_.size(); ++i) {
    struct io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) break;
    prep(sqe, overflow_[i]);
  }
  overflow_.erase(overflow_.begin(), overflow_.begin() + static_cast<long>(i));
  return overflow_.empty();
}

Status UringBackend::arm_wake_poll() {
  if (poll_armed_) return Status::Ok();
  struct io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    int ret = io_uring_submit(&ring_);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN)
      return Status::FromErrno("io_uring_submit", -ret);
    sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return Status::Ok();  // try again at the next reap
  }
  io_uring_prep_poll_add(sqe, event_fd_, POLLIN);
  io_uring_sqe_set_data64(sqe, kWakeTag);
  poll_armed_ = true;
  return Status::Ok();
}

Status UringBackend::flush_impl() {
  for (;;) {
    bool all_in = prepare_overflow();
    int ret = io_uring_submit(&ring_);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
      return Status::FromErrno("io_uring_submit", -ret);
    }
    if (all_in || ret <= 0) return Status::Ok();  // leftovers go in at the next flush/reap
  }
}

Status UringBackend::reap_impl(std::vector<IoCompletion>* out, bool block) {
  MOEPOOL_RETURN_IF_ERROR(arm_wake_poll());
  prepare_overflow();
  int ret = block ? io_uring_submit_and_wait(&ring_, 1) : io_uring_submit(&ring_);
  // EINTR: a signal; EAGAIN/EBUSY: the kernel is short of resources or the CQ is full;
  // in every case reap what is there and let the engine loop call again.
  if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME) {
    return Status::FromErrno("io_uring_submit_and_wait", -ret);
  }
  unsigned head;
  unsigned seen = 0;
  struct io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    uint64_t tag = io_uring_cqe_get_data64(cqe);
    if (tag == kWakeTag) {
      poll_armed_ = false;
      uint64_t count;
      // Drain the counter; a wake() after this re-fires the poll armed at the next reap.
      [[maybe_unused]] ssize_t n = ::read(event_fd_, &count, sizeof count);
      continue;
    }
    out->push_back({tag, static_cast<int64_t>(cqe->res)});
  }
  io_uring_cq_advance(&ring_, seen);
  return Status::Ok();
}

}  // namespace moepool
