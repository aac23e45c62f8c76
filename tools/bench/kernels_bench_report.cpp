// Tables and JSON of `moepool-bench kernels`.
#include "tools/bench/kernels_bench_report.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "common/json_writer.h"

namespace moepool::bench {
namespace {

double gbs(double bytes_per_s) { return bytes_per_s / 1e9; }

void print_decode(FILE* out, const KernelsReport& r) {
  bool any = false, ceiling = false;
  for (const KernelRow& k : r.rows)
    if (k.kernel == "decode" && k.ceiling_median_s > 0) ceiling = true;
  for (const KernelRow& k : r.rows) {
    if (k.kernel != "decode") continue;
    if (!any) {
      fprintf(out, "\ndecode (fresh routing per call; bytes = distinct experts' gate+up+down)\n");
      if (ceiling)
        fprintf(out,
                "ceil GB/s: a streaming read of the same calls' expert bytes in the same "
                "segments (%s);\nceil2: the same bytes as two reads, gate+up then down, as the "
                "kernels split them\n",
                r.device.ceiling.c_str());
      fprintf(out, "%-9s %-5s %6s %8s %10s %10s %10s %9s%s%s %12s\n", "shape", "type", "tokens",
              "experts", "MB/call", "median us", "mean us", "GB/s", r.peak_gbs > 0 ? "  %peak" : "",
              ceiling ? "  ceil GB/s  %ceil ceil2 GB/s %ceil2" : "", "tokens/s");
      any = true;
    }
    fprintf(out, "%-9s %-5s %6u %8.1f %10.2f %10.1f %10.1f %9.1f", k.shape.c_str(), k.type.c_str(),
            k.tokens, k.distinct_experts, k.weight_bytes / 1e6, k.median_s * 1e6, k.mean_s * 1e6,
            gbs(k.bytes_per_s()));
    if (r.peak_gbs > 0) fprintf(out, " %6.1f%%", 100.0 * gbs(k.bytes_per_s()) / r.peak_gbs);
    if (ceiling && k.ceiling_median_s > 0)
      fprintf(out, " %10.1f %5.1f%% %10.1f %5.1f%%", gbs(k.ceiling_bytes_per_s()),
              k.pct_of_ceiling(), gbs(k.ceiling_split_bytes_per_s()), k.pct_of_split_ceiling());
    else if (ceiling)
      fprintf(out, " %10s %6s %10s %6s", "-", "-", "-", "-");  // its ceiling failed (see errors)
    fprintf(out, " %12.0f\n", k.tokens_per_s());
  }
}

void print_prefill(FILE* out, const KernelsReport& r) {
  // Rows of one (shape, type, tokens) are printed together, then the tiles side by side.
  using Key = std::tuple<std::string, std::string, uint32_t>;
  std::vector<Key> order;
  std::map<Key, std::vector<const KernelRow*>> groups;
  for (const KernelRow& k : r.rows) {
    if (k.kernel != "prefill") continue;
    Key key{k.shape, k.type, k.tokens};
    if (!groups.count(key)) order.push_back(key);
    groups[key].push_back(&k);
  }
  if (order.empty()) return;
  fprintf(out, "\nprefill (bytes = every distinct expert once per call)\n");
  fprintf(out, "%-9s %-5s %6s %5s %8s %10s %10s %9s %12s %8s\n", "shape", "type", "tokens", "tile",
          "experts", "median ms", "mean ms", "GB/s", "tokens/s", "vs t32");
  for (const Key& key : order) {
    const auto& rows = groups[key];
    double t32 = 0;
    for (const KernelRow* k : rows)
      if (k->tile == 32) t32 = k->median_s;
    for (const KernelRow* k : rows) {
      fprintf(out, "%-9s %-5s %6u %5u %8.1f %10.3f %10.3f %9.2f %12.0f", k->shape.c_str(),
              k->type.c_str(), k->tokens, k->tile, k->distinct_experts, k->median_s * 1e3,
              k->mean_s * 1e3, gbs(k->bytes_per_s()), k->tokens_per_s());
      if (t32 > 0 && k->median_s > 0)
        fprintf(out, " %7.2fx\n", t32 / k->median_s);
      else
        fprintf(out, " %8s\n", "-");
    }
    fprintf(out, "  ms per tile:");
    for (const KernelRow* k : rows) fprintf(out, "  t%u %.3f", k->tile, k->median_s * 1e3);
    fprintf(out, "\n");
  }
}

void print_cpu(FILE* out, const KernelsReport& r) {
  bool any = false;
  for (const KernelRow& k : r.rows) {
    if (k.kernel.rfind("cpu_", 0) != 0) continue;
    if (!any) {
      fprintf(out, "\nCPU decode, one thread (auto path on this CPU: %s)\n", r.cpu_path.c_str());
      fprintf(out, "%-14s %-9s %-5s %6s %10s %10s %9s %12s\n", "kernel", "shape", "type", "tokens",
              "MB/call", "median ms", "GB/s", "tokens/s");
      any = true;
    }
    fprintf(out, "%-14s %-9s %-5s %6u %10.2f %10.3f %9.2f %12.1f\n", k.kernel.c_str(),
            k.shape.c_str(), k.type.c_str(), k.tokens, k.weight_bytes / 1e6, k.median_s * 1e3,
            gbs(k.bytes_per_s()), k.tokens_per_s());
  }
}

}  // namespace

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void print_kernels_table(FILE* out, const KernelsReport& r) {
  if (r.has_device) {
    fprintf(out, "device: %s, driver %s, deviceUUID %s, subgroup %u, segments of %.0f MiB\n",
            r.device.name.c_str(), r.device.driver.c_str(), r.device.uuid.c_str(),
            r.device.subgroup_size, r.device.segment_bytes / 1048576.0);
    fprintf(out, "tuning: %s (0: the kernels' default)\n", r.device.tuning.c_str());
  }
  print_decode(out, r);
  print_prefill(out, r);
  print_cpu(out, r);
  for (const std::string& e : r.errors) fprintf(out, "error: %s\n", e.c_str());
}

std::string kernels_json(const KernelsReport& r) {
  JsonWriter w;
  w.begin_object();
  w.key("device");
  if (r.has_device) {
    w.begin_object();
    w.field("api", r.device.api);
    w.field("name", r.device.name);
    w.field("driver", r.device.driver);
    w.field("uuid", r.device.uuid);
    w.field("subgroup_size", r.device.subgroup_size);
    w.field("segment_bytes", r.device.segment_bytes);
    w.field("tuning", r.device.tuning);
    if (!r.device.ceiling.empty()) w.field("ceiling", r.device.ceiling);
    w.end_object();
  } else {
    w.null();
  }
  w.field("peak_gbs", r.peak_gbs);
  if (!r.cpu_path.empty()) w.field("cpu_path", r.cpu_path);
  w.key("rows");
  w.begin_array();
  for (const KernelRow& k : r.rows) {
    w.begin_object();
    w.field("kernel", k.kernel);
    w.field("shape", k.shape);
    w.field("type", k.type);
    w.field("n_experts", k.n_experts);
    w.field("top_k", k.top_k);
    w.field("n_embd", k.n_embd);
    w.field("n_ff", k.n_ff);
    w.field("tokens", k.tokens);
    w.field("tile", k.tile);
    w.field("reps", k.reps);
    w.field("distinct_experts", k.distinct_experts);
    w.field("weight_bytes", k.weight_bytes);
    w.field("median_s", k.median_s);
    w.field("mean_s", k.mean_s);
    w.field("min_s", k.min_s);
    w.field("tokens_per_s", k.tokens_per_s());
    w.field("gb_per_s", gbs(k.bytes_per_s()));
    if (k.ceiling_median_s > 0) {
      w.field("ceiling_median_s", k.ceiling_median_s);
      w.field("ceiling_bytes", k.ceiling_bytes);
      w.field("ceiling_gb_per_s", gbs(k.ceiling_bytes_per_s()));
      w.field("pct_of_ceiling", k.pct_of_ceiling());
      w.field("ceiling_split_median_s", k.ceiling_split_median_s);
      w.field("ceiling_split_gb_per_s", gbs(k.ceiling_split_bytes_per_s()));
      w.field("pct_of_split_ceiling", k.pct_of_split_ceiling());
    }
    w.end_object();
  }
  w.end_array();
  w.key("errors");
  w.begin_array();
  for (const std::string& e : r.errors) w.value(e);
  w.end_array();
  w.end_object();
  return w.str();
}

}  // namespace moepool::bench
