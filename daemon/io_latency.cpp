#include "daemon/io_latency.h"

#include <algorithm>
#include <vector>

namespace moepool {
namespace {

// The nearest-rank percentile p (1..100) of v, which it reorders: the smallest value with
// at least p% of v at or below it.
uint64_t nearest_rank(std::vector<uint64_t>& v, uint64_t p) {
  size_t rank = static_cast<size_t>((p * v.size() + 99) / 100);  // ceil(p/100 * n), >= 1
  auto nth = v.begin() + static_cast<long>(std::max<size_t>(rank, 1) - 1);
  std::nth_element(v.begin(), nth, v.end());
  return *nth;
}

}  // namespace

void LatencyWindow::record(uint64_t us) {
  std::lock_guard<std::mutex> lock(mu_);
  ring_[next_] = us;
  next_ = (next_ + 1) % kCapacity;
  count_ = std::min(count_ + 1, kCapacity);
}

LatencyWindow::Percentiles LatencyWindow::percentiles() const {
  std::vector<uint64_t> v;
  {
    std::lock_guard<std::mutex> lock(mu_);
    v.assign(ring_.begin(), ring_.begin() + static_cast<long>(count_));
  }
  Percentiles p;
  if (v.empty()) return p;
  p.p50 = nearest_rank(v, 50);
  p.p99 = nearest_rank(v, 99);
  return p;
}

size_t LatencyWindow::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_;
}

}  // namespace moepool
