// The latencies of the last kCapacity requests of one class of I/O engine request (a ring
// buffer), and their percentiles, computed when asked rather than on every request.
// Thread: any thread; record() and percentiles() serialize on an internal mutex.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace moepool {

class LatencyWindow {
 public:
  static constexpr size_t kCapacity = 4096;
  struct Percentiles {
    uint64_t p50 = 0;
    uint64_t p99 = 0;
  };

  // Adds one latency, dropping the oldest once kCapacity are held.
  void record(uint64_t us);
  // Nearest-rank p50 and p99 of the latencies held; zeros when none.
  Percentiles percentiles() const;
  // Latencies held (at most kCapacity).
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::array<uint64_t, kCapacity> ring_{};
  size_t next_ = 0;   // where the next latency goes
  size_t count_ = 0;  // latencies held
};

}  // namespace moepool
