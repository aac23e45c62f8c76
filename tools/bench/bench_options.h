// moepool-bench's command line. The flags are a stable interface (scripts/demo and the
// integration tests call them):
//   moepool-bench --socket PATH --model FILE (--trace PREFIX | --synthetic SPEC)
//                 --workers N --steps S [--verify] [--json] [--first-sequence K]
//                 [--prefetch]
//   moepool-bench kernels [flags]   (the kernel throughput subcommand, kernels_bench.h)
// Thread safety: plain data and a pure function.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace moepool::bench {

struct BenchOptions {
  std::string socket;
  std::string model;
  std::string trace_prefix;    // real trace, or
  std::string synthetic_spec;  // synthetic trace (exactly one of the two is set)
  uint32_t workers = 1;
  uint64_t steps = 1000;        // decode steps each worker replays
  uint64_t first_sequence = 0;  // worker i starts at sequence first_sequence + i
  bool verify = false;          // compare every leased projection with the model file
  bool json = false;            // final summary as JSON on stdout
  bool prefetch = false;        // hint layer l+1 with its experts while at layer l
};

// What parse_bench_options() decided: run with the options, or exit with `exit_code`
// after printing `text` (help, or a usage error) to stdout / stderr.
struct ParsedCommandLine {
  BenchOptions options;
  bool exit_now = false;
  int exit_code = 0;
};

// Parses argv; prints help or usage errors itself (CLI11 never throws out of here).
ParsedCommandLine parse_bench_options(int argc, char** argv);

}  // namespace moepool::bench
