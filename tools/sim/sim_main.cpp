// moepool-sim: replays routing traces through the daemon's residency policy code
// (daemon/policy.h) on a simulated cache and I/O channel, and reports per policy the
// demand hit rate, the stall-free rate and the bytes read per step, next to plain LRU
// and Belady's offline optimum computed here.
//   moepool-sim (--trace PREFIX | --synthetic SPEC)... --capacity FRACTION [--workers N]
//               [--steps S] [--json] [--expert-bytes B] [--bandwidth B/s]
//               [--latency-us U] [--compute-ms M] [--policy NAME...]
//               [--sequences A-B | --first-sequence K] [--cost-runs R]
// Capacity is a fraction of all the models' experts (every layer). Several sources are
// concurrent models sharing that budget, also compared with the best static split of it
// into private caches (policy "static_split"). --cost-runs measures each policy's CPU
// cost per demanded expert instead (tools/sim/policy_cost.h).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/json_writer.h"
#include "common/trace.h"
#include "daemon/policy.h"
#include "tools/sim/belady.h"
#include "tools/sim/cache_sim.h"
#include "tools/sim/policy_cost.h"
#include "tools/sim/replay_stream.h"
#include "tools/sim/sim_sources.h"
#include "tools/sim/static_split.h"

namespace moepool::sim {
namespace {

struct Row {
  std::string name;
  SimResult r;
};

// --cost-runs: the default policy, LRU and each --policy, timed as the daemon calls them.
int report_cost(const ReplayStream& stream, const std::vector<std::string>& extra,
                uint64_t capacity, const IoModel& io, uint32_t runs, bool json) {
  std::vector<std::string> names = {"default", "lru"};
  names.insert(names.end(), extra.begin(), extra.end());
  std::vector<PolicyCost> costs;
  for (const std::string& n : names) {
    auto c = measure_policy_cost(stream, n, capacity, io, runs);
    if (!c.ok()) {
      fprintf(stderr, "moepool-sim: %s\n", c.status().to_string().c_str());
      return 1;
    }
    costs.push_back(std::move(*c));
  }
  if (json) {
    JsonWriter w;
    w.begin_object();
    w.field("capacity_experts", capacity);
    w.field("runs", uint64_t{runs});
    w.key("cost");
    w.begin_object();
    for (const PolicyCost& c : costs) {
      w.key(c.policy);
      w.begin_object();
      w.field("ns_per_access", c.median_ns());
      w.field("accesses", c.accesses);
      w.field("misses", c.misses);
      w.key("runs_ns_per_access");
      w.begin_array();
      for (double v : c.ns_per_access) w.value(v);
      w.end_array();
      w.end_object();
    }
    w.end_object();
    w.end_object();
    printf("%s\n", w.str().c_str());
    return 0;
  }
  printf("policy cost per demanded expert (on_access; on a miss victim + erase + insert), "
         "capacity %llu experts, median of %u runs\n", (unsigned long long)capacity, runs);
  printf("%-18s %12s %12s %10s %10s\n", "policy", "ns/access", "accesses", "miss_rate",
         "min..max");
  for (const PolicyCost& c : costs) {
    auto [lo, hi] = std::minmax_element(c.ns_per_access.begin(), c.ns_per_access.end());
    printf("%-18s %12.1f %12llu %10.4f %5.0f..%.0f\n", c.policy.c_str(), c.median_ns(),
           (unsigned long long)c.accesses, c.accesses ? double(c.misses) / c.accesses : 0.0,
           *lo, *hi);
  }
  return 0;
}

int run(int argc, char** argv) {
  std::vector<std::string> prefixes, synthetic;
  double fraction = 0;
  uint32_t workers = 1;
  uint64_t max_steps = 0;
  bool json = false;
  IoModel io;
  double latency_us = io.latency_s * 1e6, compute_ms = io.compute_s * 1e3;
  std::vector<std::string> extra;
  PrefetchOptions pf;
  pf.enabled = true;
  pf.distance = 3;  // reads of 2.2 ms need more than one 0.6 ms layer of warning
  pf.deadline = true;
  std::string sequences;
  uint64_t first_sequence = 0;
  uint32_t cost_runs = 0;
  CLI::App app{"moepool-sim: replay MoE routing traces through moepoold's residency policy"};
  app.add_option("--trace", prefixes, "trace file prefix (P.json, P.experts.u8.zst), "
                 "optionally PREFIX:EXPERT_BYTES for the model's own expert size; repeat for "
                 "concurrent models");
  app.add_option("--synthetic", synthetic,
                 "synthetic trace spec, as moepool-bench takes it: a preset (deepseek, qwen3, "
                 "gpt-oss, mixtral) and/or key=value pairs (layers, experts, top_k, steps, "
                 "skew, reuse, xlayer, seed, seq), e.g. 'qwen3,skew=1.0'; repeat, and mix "
                 "with --trace, for concurrent models (after the traces); SPEC:EXPERT_BYTES "
                 "gives its own expert size");
  app.add_option("--capacity", fraction, "cache size as a fraction of all the models' experts")
      ->required()->check(CLI::Range(0.0, 1.0));
  app.add_option("--workers", workers, "workers per trace, replaying different sequences")
      ->check(CLI::Range(1u, 4096u));
  app.add_option("--steps", max_steps, "at most this many steps per worker (0 = all of a "
                 "trace; a synthetic source's steps=, else 5000)");
  app.add_flag("--json", json, "print one JSON object");
  app.add_option("--expert-bytes", io.expert_bytes, "bytes per expert read for sources "
                 "without their own :EXPERT_BYTES")
      ->check(CLI::PositiveNumber);
  app.add_option("--bandwidth", io.bandwidth, "read bandwidth in bytes per second")
      ->check(CLI::PositiveNumber);
  app.add_option("--latency-us", latency_us, "per-read latency")->check(CLI::NonNegativeNumber);
  app.add_option("--compute-ms", compute_ms, "compute time per layer (a prefetch's window)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--prefetch-min-p", pf.min_probability,
                 "predicted probability a prefetch needs")->check(CLI::Range(0.0, 1.0));
  app.add_option("--prefetch-distance", pf.distance,
                 "guess layers L+1..L+D after layer L (a table per distance), so reads can "
                 "start D layers before their use (default 3)")->check(CLI::Range(1u, 16u));
  app.add_option("--prefetch-deadline", pf.deadline,
                 "skip guesses whose read would arrive after their layer starts (default true)");
  app.add_option("--policy", extra, "also report these policies (lru, lrfu, lfu), each "
                 "with and without prefetch");
  auto* seq_opt = app.add_option("--sequences", sequences,
                                 "replay only sequences A-B (0-based, inclusive; 'A-' = from A "
                                 "to the end) of every --trace source, e.g. held-out ones");
  app.add_option("--first-sequence", first_sequence,
                 "skip the first K sequences of every --trace source (= --sequences K-)")
      ->excludes(seq_opt);
  app.add_option("--cost-runs", cost_runs,
                 "instead of simulating, time each policy's calls as the daemon makes them "
                 "(on_access; on a miss victim, erase, insert) over the demand stream, R "
                 "times, and report the median ns per demanded expert")
      ->check(CLI::Range(1u, 1000u));
  app.footer(
      "Several sources (--trace and --synthetic, in that order) are concurrent models whose "
      "workers share one cache of FRACTION of all their experts (of all their expert bytes "
      "when a source gives :EXPERT_BYTES; then experts of different sizes share one byte "
      "budget); with more than one, policy "
      "static_split reports the best split of that budget (steps of 1/16, chosen by hit rate) "
      "into private caches, each running the default policy with prefetch on its own "
      "model's workers. Policies: default (with prefetch), default_demand, lru, belady "
      "(offline optimum), static_split.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (prefixes.empty() && synthetic.empty()) {
    fprintf(stderr, "moepool-sim: give at least one --trace PREFIX or --synthetic SPEC\n");
    return 1;
  }
  io.latency_s = latency_us * 1e-6;
  io.compute_s = compute_ms * 1e-3;

  // PREFIX[:EXPERT_BYTES] / SPEC[:EXPERT_BYTES]: a source's own expert size.
  std::vector<double> own_bytes;
  bool any_bytes = false;
  auto split_bytes = [&](std::string& src) -> bool {
    size_t colon = src.rfind(':');
    double b = 0;
    if (colon != std::string::npos && colon + 1 < src.size() &&
        src.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
      b = std::strtod(src.c_str() + colon + 1, nullptr);
      src.resize(colon);
      if (!(b > 0)) {
        fprintf(stderr, "moepool-sim: '%s': the expert bytes after ':' must be positive\n",
                src.c_str());
        return false;
      }
      any_bytes = true;
    }
    own_bytes.push_back(b);
    return true;
  };
  for (std::string& p : prefixes)
    if (!split_bytes(p)) return 1;
  for (std::string& p : synthetic)
    if (!split_bytes(p)) return 1;
  SequenceRange range;
  if (!sequences.empty()) {
    auto r = parse_sequence_range(sequences);
    if (!r.ok()) {
      fprintf(stderr, "moepool-sim: %s\n", r.status().to_string().c_str());
      return 1;
    }
    range = *r;
  }
  if (first_sequence) range.first = first_sequence;
  std::vector<Trace> traces;
  for (const std::string& p : prefixes) {
    auto t = Trace::load(p);
    if (t.ok() && !range.all()) t = select_sequences(*t, range);
    if (!t.ok()) {
      fprintf(stderr, "moepool-sim: %s\n", t.status().to_string().c_str());
      return 1;
    }
    traces.push_back(std::move(*t));
  }
  for (const std::string& spec : synthetic) {
    auto t = make_synthetic_source(spec, max_steps, workers);
    if (!t.ok()) {
      fprintf(stderr, "moepool-sim: %s\n", t.status().to_string().c_str());
      return 1;
    }
    traces.push_back(std::move(*t));
  }
  std::vector<const Trace*> tp;
  uint32_t min_need = 0;
  for (const Trace& t : traces) {
    tp.push_back(&t);
    min_need += t.shape().top_k;
  }
  ReplayStream stream = build_stream(tp, workers, max_steps);
  uint64_t capacity = static_cast<uint64_t>(fraction * stream.total_experts + 0.5);
  if (any_bytes) {  // one byte budget: FRACTION of all the models' expert bytes
    double total = 0;
    for (size_t m = 0; m < traces.size(); ++m) {
      io.model_bytes.push_back(own_bytes[m] > 0 ? own_bytes[m] : io.expert_bytes);
      const TraceShape& sh = traces[m].shape();
      total += double(sh.layers) * sh.experts * io.model_bytes.back();
    }
    io.budget_bytes = fraction * total;
  }
  if (capacity < min_need) {
    fprintf(stderr, "moepool-sim: --capacity %g is %llu experts, fewer than one step's "
            "layer request needs (%u)\n", fraction, (unsigned long long)capacity, min_need);
    return 1;
  }

  if (cost_runs) return report_cost(stream, extra, capacity, io, cost_runs, json);

  std::vector<Row> rows;
  auto policy_row = [&](const std::string& label, const std::string& name, bool prefetch) {
    auto p = make_policy(name);
    if (!p.ok()) {
      fprintf(stderr, "moepool-sim: %s\n", p.status().to_string().c_str());
      return false;
    }
    PrefetchOptions o = pf;
    o.enabled = prefetch;
    rows.push_back({label, run_policy(stream, **p, capacity, io, o)});
    return true;
  };
  if (!policy_row("default", "default", true)) return 1;
  policy_row("default_demand", "default", false);
  policy_row("lru", "lru", false);
  for (const std::string& e : extra) {
    if (!policy_row(e, e, false)) return 1;
    policy_row(e + "_prefetch", e, true);
  }
  rows.push_back({"belady", run_belady(stream, capacity, io)});
  std::vector<uint64_t> split;  // the best static split's capacities, if several models
  if (traces.size() > 1) {
    StaticSplitOptions so;
    so.prefetch = pf;
    so.workers = workers;
    so.max_steps = max_steps;
    auto s = best_static_split(tp, capacity, io, so);
    if (!s.ok()) {
      fprintf(stderr, "moepool-sim: %s\n", s.status().to_string().c_str());
      return 1;
    }
    rows.push_back({"static_split", s->total});
    split = s->capacities;
  }

  if (json) {
    JsonWriter w;
    w.begin_object();
    w.key("traces");
    w.begin_array();
    for (const Trace& t : traces) w.value(t.name());
    w.end_array();
    w.field("capacity_fraction", fraction);
    w.field("capacity_experts", capacity);
    w.field("total_experts", stream.total_experts);
    w.field("budget_bytes", io.budget_bytes);
    w.field("workers", stream.workers);
    w.field("steps", stream.steps);
    w.key("io");
    w.begin_object();
    w.field("expert_bytes", io.expert_bytes);
    w.field("bandwidth", io.bandwidth);
    w.field("latency_s", io.latency_s);
    w.field("compute_s", io.compute_s);
    w.end_object();
    w.key("policies");
    w.begin_object();
    for (const Row& row : rows) {
      w.key(row.name);
      w.begin_object();
      w.field("hit_rate", row.r.hit_rate());
      w.field("stall_free_rate", row.r.stall_free_rate());
      w.field("bytes_per_step", row.r.bytes_per_step());
      w.field("accesses", row.r.accesses);
      w.field("prefetches", row.r.prefetches);
      w.field("prefetches_used", row.r.prefetches_used);
      w.field("ms_per_step", row.r.steps ? row.r.time_s * 1e3 / row.r.steps : 0.0);
      if (row.name == "static_split") {
        w.key("split_experts");
        w.begin_array();
        for (uint64_t c : split) w.value(c);
        w.end_array();
      }
      w.end_object();
    }
    w.end_object();
    w.end_object();
    printf("%s\n", w.str().c_str());
    return 0;
  }
  printf("capacity %llu of %llu experts (%.1f%%), %u worker(s), %llu steps\n",
         (unsigned long long)capacity, (unsigned long long)stream.total_experts,
         fraction * 100, stream.workers, (unsigned long long)stream.steps);
  printf("%-18s %9s %11s %14s %11s %11s\n", "policy", "hit_rate", "stall_free", "MiB/step",
         "prefetches", "ms/step");
  for (const Row& row : rows)
    printf("%-18s %9.4f %11.4f %14.2f %11llu %11.2f\n", row.name.c_str(), row.r.hit_rate(),
           row.r.stall_free_rate(), row.r.bytes_per_step() / (1 << 20),
           (unsigned long long)row.r.prefetches,
           row.r.steps ? row.r.time_s * 1e3 / row.r.steps : 0.0);
  if (!split.empty()) {
    printf("static_split: private caches of");
    for (size_t m = 0; m < split.size(); ++m)
      printf(" %llu (%s)", (unsigned long long)split[m], traces[m].name().c_str());
    printf(" experts, each running the default policy with prefetch\n");
  }
  return 0;
}

}  // namespace
}  // namespace moepool::sim

int main(int argc, char** argv) { return moepool::sim::run(argc, argv); }
