// Formatting moepool-bench results for people and for scripts.
#include "tools/bench/report.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>

#include "common/json_writer.h"
#include "common/units.h"

namespace moepool::bench {
namespace {

double percentile_us(const std::vector<uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  size_t idx = rank == 0 ? 0 : std::min(rank, sorted.size()) - 1;
  return static_cast<double>(sorted[idx]) / 1000.0;
}

double ratio(uint64_t a, uint64_t b) {
  return b ? static_cast<double>(a) / static_cast<double>(b) : 0.0;
}

// The totals over all workers, latency included.
WorkerResult total_of(const std::vector<WorkerResult>& workers) {
  WorkerResult t;
  for (const WorkerResult& w : workers) {
    t.steps += w.steps;
    t.accesses += w.accesses;
    t.hits += w.hits;
    t.acquire_calls += w.acquire_calls;
    t.prefetch_calls += w.prefetch_calls;
    t.prefetch_reads += w.prefetch_reads;
    t.bytes_verified += w.bytes_verified;
    t.mismatches += w.mismatches;
    t.seconds = std::max(t.seconds, w.seconds);
    t.acquire_ns.insert(t.acquire_ns.end(), w.acquire_ns.begin(), w.acquire_ns.end());
  }
  return t;
}

std::string json_string(std::string_view s) { return JsonWriter::quote(s); }

void print_worker_json(FILE* out, const WorkerResult& w, LatencySummary lat) {
  fprintf(out,
          "\"steps\":%" PRIu64 ",\"accesses\":%" PRIu64 ",\"hits\":%" PRIu64
          ",\"hit_rate\":%.4f,\"acquire_calls\":%" PRIu64 ",\"prefetch_calls\":%" PRIu64
          ",\"prefetch_reads\":%" PRIu64 ",\"bytes_verified\":%" PRIu64 ",\"mismatches\":%" PRIu64
          ",\"seconds\":%.3f,\"acquire_p50_us\":%.1f"
          ",\"acquire_p99_us\":%.1f,\"acquire_max_us\":%.1f",
          w.steps, w.accesses, w.hits, ratio(w.hits, w.accesses), w.acquire_calls, w.prefetch_calls,
          w.prefetch_reads, w.bytes_verified, w.mismatches, w.seconds, lat.p50_us, lat.p99_us,
          lat.max_us);
}

}  // namespace

LatencySummary summarize_latency(std::vector<uint64_t>& ns) {
  std::sort(ns.begin(), ns.end());
  LatencySummary s;
  s.samples = ns.size();
  s.p50_us = percentile_us(ns, 0.50);
  s.p99_us = percentile_us(ns, 0.99);
  s.max_us = ns.empty() ? 0 : static_cast<double>(ns.back()) / 1000.0;
  return s;
}

uint64_t BenchReport::total_bytes_verified() const {
  uint64_t n = 0;
  for (const WorkerResult& w : workers) n += w.bytes_verified;
  return n;
}

uint64_t BenchReport::total_mismatches() const {
  uint64_t n = 0;
  for (const WorkerResult& w : workers) n += w.mismatches;
  return n;
}

bool BenchReport::ok() const {
  if (!errors.empty() || total_mismatches() != 0) return false;
  for (const WorkerResult& w : workers)
    if (!w.error.ok()) return false;
  return true;
}

void print_human(FILE* out, const BenchReport& r) {
  const BenchOptions& o = *r.options;
  fprintf(out, "moepool-bench: model %s, trace %s\n", r.model_name.c_str(), r.trace_desc.c_str());
  fprintf(out, "  %u workers x %" PRIu64 " steps, verify %s, prefetch %s\n", o.workers, o.steps,
          o.verify ? "on" : "off", o.prefetch ? "on" : "off");
  fprintf(out, "%-7s %9s %10s %8s %12s %12s %12s %9s\n", "worker", "steps", "accesses", "hit rate",
          "verified", "acquire p50", "acquire p99", "seconds");
  auto row = [&](const std::string& name, WorkerResult w) {
    LatencySummary lat = summarize_latency(w.acquire_ns);
    fprintf(out, "%-7s %9" PRIu64 " %10" PRIu64 " %8.3f %12s %9.1f us %9.1f us %9.2f\n",
            name.c_str(), w.steps, w.accesses, ratio(w.hits, w.accesses),
            format_bytes(w.bytes_verified).c_str(), lat.p50_us, lat.p99_us, w.seconds);
  };
  for (const WorkerResult& w : r.workers) row(std::to_string(w.index), w);
  WorkerResult total = total_of(r.workers);
  row("total", total);
  if (o.prefetch)
    fprintf(out, "prefetch: %" PRIu64 " hints, %" PRIu64 " reads started\n", total.prefetch_calls,
            total.prefetch_reads);
  if (r.daemon.valid) {
    fprintf(out,
            "daemon (this model, during the run): %s read from disk, %" PRIu64 " hits, %" PRIu64
            " misses, %" PRIu64 " evictions, %" PRIu64 " read errors\n",
            format_bytes(r.daemon.bytes_read).c_str(), r.daemon.hits, r.daemon.misses,
            r.daemon.evictions, r.daemon.read_errors);
  } else {
    fprintf(out, "daemon stats: unavailable (%s)\n", r.daemon.note.c_str());
  }
  if (r.wall_seconds > 0)
    fprintf(out, "wall %.2f s, %.1f steps/s over all workers\n", r.wall_seconds,
            static_cast<double>(total.steps) / r.wall_seconds);
  for (const WorkerResult& w : r.workers) {
    if (!w.first_mismatch.empty())
      fprintf(out, "worker %u: %" PRIu64 " mismatches, first: %s\n", w.index, w.mismatches,
              w.first_mismatch.c_str());
    if (!w.error.ok()) fprintf(out, "worker %u: error: %s\n", w.index, w.error.to_string().c_str());
  }
  for (const std::string& e : r.errors) fprintf(out, "error: %s\n", e.c_str());
  fprintf(out, "verified %" PRIu64 " bytes, %" PRIu64 " mismatches\n", r.total_bytes_verified(),
          r.total_mismatches());
  fflush(out);
}

void print_json(FILE* out, const BenchReport& r) {
  const BenchOptions& o = *r.options;
  fprintf(out,
          "{\"ok\":%s,\"model\":%s,\"model_path\":%s,\"trace\":%s,\"workers\":%u,\"steps\":%" PRIu64
          ",\"verify\":%s,\"prefetch\":%s,\"wall_seconds\":%.3f,\"per_worker\":[",
          r.ok() ? "true" : "false", json_string(r.model_name).c_str(),
          json_string(o.model).c_str(), json_string(r.trace_desc).c_str(), o.workers, o.steps,
          o.verify ? "true" : "false", o.prefetch ? "true" : "false", r.wall_seconds);
  for (size_t i = 0; i < r.workers.size(); ++i) {
    WorkerResult w = r.workers[i];
    LatencySummary lat = summarize_latency(w.acquire_ns);
    fprintf(out, "%s{\"worker\":%u,", i ? "," : "", w.index);
    print_worker_json(out, w, lat);
    fprintf(out, ",\"error\":%s,\"first_mismatch\":%s}",
            w.error.ok() ? "null" : json_string(w.error.to_string()).c_str(),
            w.first_mismatch.empty() ? "null" : json_string(w.first_mismatch).c_str());
  }
  WorkerResult total = total_of(r.workers);
  LatencySummary lat = summarize_latency(total.acquire_ns);
  fprintf(out, "],\"total\":{");
  print_worker_json(out, total, lat);
  fprintf(out, "},\"daemon\":");
  if (r.daemon.valid) {
    fprintf(out,
            "{\"bytes_read\":%" PRIu64 ",\"hits\":%" PRIu64 ",\"misses\":%" PRIu64
            ",\"evictions\":%" PRIu64 ",\"read_errors\":%" PRIu64 "}",
            r.daemon.bytes_read, r.daemon.hits, r.daemon.misses, r.daemon.evictions,
            r.daemon.read_errors);
  } else {
    fprintf(out, "null");
  }
  fprintf(out, ",\"errors\":[");
  for (size_t i = 0; i < r.errors.size(); ++i)
    fprintf(out, "%s%s", i ? "," : "", json_string(r.errors[i]).c_str());
  fprintf(out, "],\"verified_bytes\":%" PRIu64 ",\"mismatches\":%" PRIu64 "}\n",
          r.total_bytes_verified(), r.total_mismatches());
  fflush(out);
}

}  // namespace moepool::bench
