// `moepool-bench io`: reads a file through the daemon's own IoEngine (daemon/io_engine.h)
// in one of three patterns (sequential blocks, random aligned blocks, or a list of
// "offset length" extents such as one token's routed experts) with Q requests in flight,
// into page-aligned memory registered with the engine, and reports the read rate. Also
// `--print-extents MODEL` writes such an extents list from a model's catalog.
// Thread safety: run_io_bench is called once, from main's thread.
#pragma once

#include <cstdint>
#include <string>

namespace moepool::bench {

struct IoBenchOptions {
  std::string file;
  uint64_t block = 1 << 20;   // bytes per read (seq, rand); the engine's max_request_bytes
  uint32_t queue_depth = 32;  // requests in flight; the engine's queue_depth
  std::string pattern = "seq";  // seq | rand (ignored with extents)
  bool direct = false;
  uint64_t offset = 0;          // seq: first offset (wraps to 0 at the end of the file)
  uint64_t bytes = 0;           // 0: the file size (seq, rand); one pass of the list (extents)
  std::string extents_path;     // "offset length" lines
  uint64_t seed = 1;
  std::string mode = "auto";    // IoEngine::Options::mode
  bool fixed_buffers = true;    // register the destination memory with the engine
  bool fixed_files = true;      // IoEngine::Options::register_files
  // --print-extents MODEL: print the extents of --top-k random experts per MoE layer of
  // the model's first --layers MoE layers (0: all) instead of reading.
  std::string print_extents_model;
  uint32_t layers = 0;
  uint32_t top_k = 8;
};

// Parses the subcommand's arguments (argv[0] is "io") and runs it. Returns the process
// exit code: 0 when every read succeeded, 1 on a runtime error (printed), 2 on a usage error.
int run_io_bench(int argc, char** argv);

}  // namespace moepool::bench
