// What a worker process tells the parent over its pipe: first a ready message (connected,
// model opened) or an early failure, then its result. Parent and workers are one binary
// (fork without exec), so the header is a fixed struct in host byte order.
// Thread safety: functions on caller-owned data; each fd is used by one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace moepool::bench {

struct WorkerResult {
  uint32_t index = 0;
  Status error;           // not ok if the worker failed (its counters cover what it did)
  uint64_t steps = 0;     // decode steps completed
  uint64_t accesses = 0;  // experts acquired (distinct per step and layer)
  uint64_t hits = 0;      // leases that came back with hit=true
  uint64_t acquire_calls = 0;
  uint64_t prefetch_calls = 0;
  uint64_t prefetch_reads = 0;  // reads the daemon said the hints started
  uint64_t bytes_verified = 0;
  uint64_t mismatches = 0;           // projections whose bytes differ from the file
  std::string first_mismatch;        // where the first mismatch was, "" if none
  double seconds = 0;                // wall time of the replay loop
  std::vector<uint64_t> acquire_ns;  // latency of every acquire call
};

enum class WorkerMessage : uint32_t { kReady = 1, kResult = 2 };

// Writes the ready message to `fd`.
Status write_ready(int fd);
// Writes `result` to `fd`.
Status write_result(int fd, const WorkerResult& result);

// Reads one message from `fd`: sets `*kind`; for kResult fills `*result`. A worker that
// died mid-message gives an error.
Status read_message(int fd, WorkerMessage* kind, WorkerResult* result);

}  // namespace moepool::bench
