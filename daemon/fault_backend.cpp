#include "daemon/fault_backend.h"

#include <algorithm>

namespace moepool {

FaultyBackend::FaultyBackend(std::unique_ptr<IoBackend> inner)
    : inner_(std::move(inner)), rule_(pass_all()) {}

FaultyBackend::Rule FaultyBackend::pass_all() {
  return [](uint64_t, const IoOp&) { return Fault{}; };
}

FaultyBackend::Rule FaultyBackend::fail_nth(uint64_t n, int err) {
  return [n, err](uint64_t i, const IoOp&) {
    return i == n ? Fault{Action::kFail, err, 0} : Fault{};
  };
}

FaultyBackend::Rule FaultyBackend::short_nth(uint64_t n, uint64_t bytes) {
  return [n, bytes](uint64_t i, const IoOp&) {
    return i == n ? Fault{Action::kShort, 0, bytes} : Fault{};
  };
}

FaultyBackend::Rule FaultyBackend::short_all(uint64_t bytes) {
  return [bytes](uint64_t, const IoOp&) { return Fault{Action::kShort, 0, bytes}; };
}

FaultyBackend::Rule FaultyBackend::stall_nth(uint64_t n) {
  return [n](uint64_t i, const IoOp&) { return i == n ? Fault{Action::kStall} : Fault{}; };
}

FaultyBackend::Rule FaultyBackend::stall_all() {
  return [](uint64_t, const IoOp&) { return Fault{Action::kStall}; };
}

FaultyBackend::Rule FaultyBackend::corrupt_file_offset(uint64_t offset) {
  return [offset](uint64_t, const IoOp& op) {
    Fault f;
    if (offset >= op.offset && offset - op.offset < op.len) {
      f.action = Action::kCorrupt;
      f.corrupt_at = offset - op.offset;
    }
    return f;
  };
}

void FaultyBackend::set_rule(Rule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  rule_ = std::move(rule);
}

void FaultyBackend::release_stalled() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    released_.insert(released_.end(), stalled_.begin(), stalled_.end());
    stalled_.clear();
  }
  inner_->wake();  // the engine thread forwards them at its next reap
}

void FaultyBackend::wait_stalled(uint64_t n) {
  std::unique_lock<std::mutex> lock(mu_);
  stalled_cv_.wait(lock, [&] { return stalled_total_ >= n; });
}

size_t FaultyBackend::stalled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stalled_.size();
}

std::vector<IoOp> FaultyBackend::issued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return issued_;
}

void FaultyBackend::read_impl(const IoOp& op) {
  Fault fault;
  {
    std::lock_guard<std::mutex> lock(mu_);
    issued_.push_back(op);
    fault = rule_(++n_, op);
    if (fault.action == Action::kStall) {
      stalled_.push_back(op);
      ++stalled_total_;
      stalled_cv_.notify_all();
      return;
    }
  }
  switch (fault.action) {
    case Action::kFail:
      synthetic_.push_back({op.tag, -static_cast<int64_t>(fault.err)});
      return;
    case Action::kShort: {
      if (fault.short_bytes == 0) {
        synthetic_.push_back({op.tag, 0});  // as at end of file
        return;
      }
      // Read it all (an O_DIRECT length must stay aligned) but report fewer bytes.
      short_limits_[op.tag] = fault.short_bytes;
      inner_->read(op);
      return;
    }
    case Action::kCorrupt:
      corrupt_[op.tag] = {op.buf, fault.corrupt_at};
      inner_->read(op);
      return;
    default:
      inner_->read(op);
  }
}

void FaultyBackend::forward_released() {
  std::vector<IoOp> go;
  {
    std::lock_guard<std::mutex> lock(mu_);
    go.swap(released_);
  }
  for (const IoOp& op : go) inner_->read(op);
}

Status FaultyBackend::flush_impl() {
  forward_released();
  return inner_->flush();
}

Status FaultyBackend::reap_impl(std::vector<IoCompletion>* out, bool block) {
  forward_released();
  if (!synthetic_.empty()) {
    out->insert(out->end(), synthetic_.begin(), synthetic_.end());
    synthetic_.clear();
    block = false;
  }
  size_t first = out->size();
  Status st = inner_->reap(out, block);
  for (size_t i = first; i < out->size(); ++i) {
    IoCompletion& c = (*out)[i];
    if (auto it = short_limits_.find(c.tag); it != short_limits_.end()) {
      if (c.res > static_cast<int64_t>(it->second)) c.res = static_cast<int64_t>(it->second);
      short_limits_.erase(it);
    }
    if (auto it = corrupt_.find(c.tag); it != corrupt_.end()) {
      auto [buf, at] = it->second;
      if (c.res > static_cast<int64_t>(at)) {
        buf[at] ^= 0xFF;
        corrupted_.fetch_add(1, std::memory_order_relaxed);
      }
      corrupt_.erase(it);
    }
  }
  return st;
}

}  // namespace moepool
