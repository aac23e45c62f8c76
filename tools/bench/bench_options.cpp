// moepool-bench's command line, through CLI11 (its exceptions stay in this file).
#include "tools/bench/bench_options.h"

#include <CLI/CLI.hpp>

namespace moepool::bench {

ParsedCommandLine parse_bench_options(int argc, char** argv) {
  ParsedCommandLine out;
  BenchOptions& o = out.options;
  CLI::App app{
      "moepool-bench: N worker processes replay MoE routing traces against moepoold through "
      "libmoepool, acquiring each step's experts layer by layer, optionally checking every "
      "leased byte against the model file. Prints per-worker and total hit rate, disk bytes "
      "and acquire latency; the last line is 'verified <bytes> bytes, <n> mismatches'. Exits "
      "non-zero on any mismatch or worker error. An acquire refused because other workers pin "
      "every slot is retried (1 ms apart, up to 1000 times; the wait counts in its latency).\n"
      "Subcommand: 'moepool-bench kernels [flags]' times the Vulkan MoE decode and prefill "
      "kernels instead (see 'moepool-bench kernels --help').",
      "moepool-bench"};
  app.add_option("--socket", o.socket, "moepoold's Unix socket")->required();
  app.add_option("--model", o.model, "GGUF model file (under one of the daemon's model roots)")
      ->required();
  auto* trace = app.add_option("--trace", o.trace_prefix,
                               "real routing trace: file prefix P of P.json and "
                               "P.experts.u8.zst; trace layer l drives the model's l-th MoE layer");
  auto* synth = app.add_option(
      "--synthetic", o.synthetic_spec,
      "synthetic trace spec: a preset (deepseek, qwen3, gpt-oss, mixtral) and/or key=value "
      "pairs, e.g. 'layers=24,experts=32,top_k=4,skew=0.8,reuse=0.4,xlayer=0.3,seed=1'; "
      "worker i uses seed+i and --steps overrides steps=");
  trace->excludes(synth);
  synth->excludes(trace);
  app.add_option("--workers", o.workers, "worker processes")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  app.add_option("--steps", o.steps, "decode steps each worker replays")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32))
      ->capture_default_str();
  app.add_option("--first-sequence", o.first_sequence,
                 "worker i starts at trace sequence K+i and continues into the following "
                 "ones (wrapping around) until it has replayed --steps steps")
      ->capture_default_str();
  app.add_flag("--verify", o.verify,
               "compare every leased projection's bytes with the model file at the expert's "
               "extent (read each time, nothing cached)");
  app.add_flag("--json", o.json,
               "print the summary as one JSON object on stdout (the human report goes to "
               "stderr)");
  app.add_flag("--prefetch", o.prefetch,
               "while at layer l, hint layer l+1 with the experts this step uses there");
  try {
    app.parse(argc, argv);
    if (o.trace_prefix.empty() == o.synthetic_spec.empty())
      throw CLI::ValidationError("give exactly one of --trace PREFIX or --synthetic SPEC");
  } catch (const CLI::ParseError& e) {
    out.exit_now = true;
    out.exit_code = app.exit(e);
    if (out.exit_code != 0) out.exit_code = 2;
  }
  return out;
}

}  // namespace moepool::bench
