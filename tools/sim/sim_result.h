// What one policy achieved over a replay stream, and the I/O model it ran under.
// Thread safety: plain data.
#pragma once

#include <cstdint>
#include <vector>

namespace moepool::sim {

// Simulated I/O: a read takes expert_bytes / bandwidth on one shared channel (reads
// queue behind each other, demand reads ahead of queued prefetches) plus latency; every
// layer computes for compute_s once its experts arrived, which is a prefetch's window.
struct IoModel {
  double expert_bytes = 13219200;  // gpt-oss-20b MXFP4: 3 x 2880 x 2880 x 17/32 bytes
  double bandwidth = 6.0e9;        // bytes per second
  double latency_s = 100e-6;
  double compute_s = 0.6e-3;       // per layer
  // Per model (the stream's model index): its expert bytes; empty = expert_bytes for all.
  std::vector<double> model_bytes;
  // When > 0 the cache holds experts of different sizes within this many bytes, instead
  // of a count of experts.
  double budget_bytes = 0;
  double bytes_of(uint32_t model) const {
    return model < model_bytes.size() ? model_bytes[model] : expert_bytes;
  }
};

struct SimResult {
  uint64_t accesses = 0;    // demanded experts
  uint64_t hits = 0;        // resident (ready or loading) when demanded
  uint64_t stall_free = 0;  // ready when demanded: the layer did not wait for it
  uint64_t bytes_read = 0;  // demand and prefetch reads
  uint64_t steps = 0;
  uint64_t prefetches = 0;       // prefetch reads issued
  uint64_t prefetches_used = 0;  // of those, demanded before eviction
  double time_s = 0;             // simulated wall time of the replay

  // Adds `b`'s counts (and time) to this one: results of disjoint replays combined.
  SimResult& operator+=(const SimResult& b) {
    accesses += b.accesses;
    hits += b.hits;
    stall_free += b.stall_free;
    bytes_read += b.bytes_read;
    steps += b.steps;
    prefetches += b.prefetches;
    prefetches_used += b.prefetches_used;
    time_s += b.time_s;
    return *this;
  }
  double hit_rate() const { return accesses ? double(hits) / accesses : 0; }
  double stall_free_rate() const { return accesses ? double(stall_free) / accesses : 0; }
  double bytes_per_step() const { return steps ? double(bytes_read) / steps : 0; }
};

}  // namespace moepool::sim
