#include "daemon/pread_backend.h"

#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace moepool {

Result<std::unique_ptr<IoBackend>> PreadBackend::create(uint32_t threads, uint32_t queue_depth) {
  if (threads == 0) return InvalidArgument("pread backend: threads must be > 0");
  if (queue_depth == 0) return InvalidArgument("pread backend: queue_depth must be > 0");
  std::unique_ptr<PreadBackend> backend(new PreadBackend(queue_depth));
  try {
    for (uint32_t i = 0; i < threads; ++i)
      backend->threads_.emplace_back([b = backend.get()] { b->worker(); });
  } catch (const std::system_error& e) {
    return Status::FromErrno("pread backend: start thread", e.code().value());
  }
  return std::unique_ptr<IoBackend>(std::move(backend));
}

PreadBackend::~PreadBackend() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void PreadBackend::read_impl(const IoOp& op) { unflushed_.push_back(op); }

Status PreadBackend::flush_impl() {
  if (unflushed_.empty()) return Status::Ok();
  {
    std::lock_guard<std::mutex> lock(mu_);
    work_.insert(work_.end(), unflushed_.begin(), unflushed_.end());
  }
  if (unflushed_.size() == 1) {
    work_cv_.notify_one();
  } else {
    work_cv_.notify_all();
  }
  unflushed_.clear();
  return Status::Ok();
}

Status PreadBackend::reap_impl(std::vector<IoCompletion>* out, bool block) {
  MOEPOOL_RETURN_IF_ERROR(flush_impl());
  std::unique_lock<std::mutex> lock(mu_);
  if (block) done_cv_.wait(lock, [&] { return !done_.empty() || woken_; });
  woken_ = false;
  out->insert(out->end(), done_.begin(), done_.end());
  done_.clear();
  return Status::Ok();
}

void PreadBackend::wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  done_cv_.notify_all();
}

void PreadBackend::worker() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return !work_.empty() || stopping_; });
    if (stopping_) return;
    IoOp op = work_.front();
    work_.pop_front();
    lock.unlock();
    ssize_t n = ::pread(op.fd, op.buf, op.len, static_cast<off_t>(op.offset));
    int64_t res = n >= 0 ? static_cast<int64_t>(n) : -static_cast<int64_t>(errno);
    lock.lock();
    done_.push_back({op.tag, res});
    done_cv_.notify_all();
  }
}

}  // namespace moepool
