// One moepool-bench worker: a forked process that connects to the daemon through
// libmoepool, opens the model and replays its share of the trace, layer by layer.
// Thread safety: runs on the worker process's main thread only.
#pragma once

#include <cstdint>

#include "common/catalog.h"
#include "common/synthetic_trace.h"
#include "common/trace.h"
#include "tools/bench/bench_options.h"

namespace moepool::bench {

struct WorkerPlan {
  uint32_t index = 0;
  const BenchOptions* options = nullptr;
  const Catalog* catalog = nullptr;
  const Trace* trace = nullptr;  // the real trace, or nullptr for a synthetic one
  SyntheticTraceSpec synthetic;  // the synthetic spec before this worker's seed offset
};

// Runs the worker in this freshly forked process (the gRPC client is created here, after
// the fork): connect, open the model, write the ready message to `result_fd`, wait for
// one byte on `go_fd` (EOF means the run was called off), replay, write the result.
// Returns the process exit code.
int run_worker(const WorkerPlan& plan, int go_fd, int result_fd);

}  // namespace moepool::bench
