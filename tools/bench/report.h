// moepool-bench's summary: per-worker and total lines for people, or one JSON object,
// and the final line "verified <bytes> bytes, <n> mismatches".
// Thread safety: functions on caller-owned data.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tools/bench/bench_options.h"
#include "tools/bench/worker_result.h"

namespace moepool::bench {

struct LatencySummary {
  uint64_t samples = 0;
  double p50_us = 0, p99_us = 0, max_us = 0;
};

// Returns the nearest-rank percentiles of `ns` (nanoseconds); sorts `ns` in place.
LatencySummary summarize_latency(std::vector<uint64_t>& ns);

// What the daemon counted for the model during the run (stats after minus before).
struct DaemonDelta {
  bool valid = false;  // false if the stats could not be read
  std::string note;    // why not, or which counters were used
  uint64_t bytes_read = 0, hits = 0, misses = 0, evictions = 0, read_errors = 0;
};

struct BenchReport {
  const BenchOptions* options = nullptr;
  std::string model_name;
  std::string trace_desc;  // "gpt-oss-20b (real)" or "synthetic:..."
  std::vector<WorkerResult> workers;
  std::vector<std::string> errors;  // failures outside the workers
  DaemonDelta daemon;
  double wall_seconds = 0;

  uint64_t total_bytes_verified() const;
  uint64_t total_mismatches() const;
  // True iff every worker succeeded, there were no other errors and no mismatches.
  bool ok() const;
};

// Prints the human report to `out`, ending with the "verified ..." line.
void print_human(FILE* out, const BenchReport& report);
// Prints the report as one JSON object and a newline to `out`.
void print_json(FILE* out, const BenchReport& report);

}  // namespace moepool::bench
