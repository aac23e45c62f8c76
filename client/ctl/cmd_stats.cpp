// `moepoolctl stats`: pool counters, per-model counters, quotas and warm-up, and the slot
// classes (the Admin.Stats reply), as tables or with --json as one object.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common/json_writer.h"
#include "common/units.h"
#include "table.h"

namespace moepool::ctl {
namespace {

// "running 12/40", "done 40/40", "none".
std::string warmup_text(const v1::ModelStats& m) {
  if (m.warmup_state().empty() || m.warmup_state() == "none") return "none";
  return m.warmup_state() + " " + n(m.warmup_loaded_experts()) + "/" +
         n(m.warmup_planned_experts()) + " (" + format_bytes(m.warmup_bytes_read()) + ")";
}

// GB/s of the staging -> VRAM copies while the transfer queue was busy (0 when none).
double upload_rate_gbs(const v1::StatsReply& r) {
  return r.upload_busy_ns() ? static_cast<double>(r.upload_bytes()) / r.upload_busy_ns() : 0.0;
}

void io_class_json(JsonWriter& w, const char* name, const v1::IoClassStats& c) {
  w.key(name);
  w.begin_object();
  w.field("requests", c.requests());
  w.field("reads", c.reads());
  w.field("bytes", c.bytes());
  w.field("errors", c.errors());
  w.field("cancelled", c.cancelled());
  w.field("latency_p50_us", c.latency_p50_us());
  w.field("latency_p99_us", c.latency_p99_us());
  w.end_object();
}

void io_json(JsonWriter& w, const v1::IoStats& io) {
  w.key("io");
  w.begin_object();
  w.field("mode", io.mode());
  w.field("queue_depth", io.queue_depth());
  w.field("in_flight", io.in_flight());
  w.field("in_flight_peak", io.in_flight_peak());
  io_class_json(w, "demand", io.demand());
  io_class_json(w, "prefetch", io.prefetch());
  w.field("retries", io.retries());
  w.field("short_reads", io.short_reads());
  w.field("merged_spans", io.merged_spans());
  w.field("fixed_buffers", io.fixed_buffers());
  w.field("fixed_files", io.fixed_files());
  w.field("prefetch_bytes_cap", io.prefetch_bytes_cap());
  w.end_object();
}

// The I/O engine block of the text output: one summary table, one row per request class.
void io_text(const v1::IoStats& io) {
  Table t({"", ""}, {false, false});
  t.add_row({"io mode", io.mode().empty() ? std::string("unknown") : io.mode()});
  t.add_row({"queue depth", n(io.queue_depth()) + ", in flight " + n(io.in_flight()) +
                                " (peak " + n(io.in_flight_peak()) + ")"});
  t.add_row({"retries", n(io.retries()) + ", short reads " + n(io.short_reads()) +
                            ", merged spans " + n(io.merged_spans())});
  t.add_row({"fixed", n(io.fixed_buffers()) + " buffers, files " +
                          (io.fixed_files() ? "yes" : "no")});
  t.add_row({"prefetch cap", format_bytes(io.prefetch_bytes_cap()) + " in flight"});
  std::string text = t.render();
  std::cout << '\n' << text.substr(text.find('\n') + 1) << '\n';
  Table c({"IO_CLASS", "REQUESTS", "READS", "BYTES", "P50_US", "P99_US", "ERRORS", "CANCELLED"},
          {false, true, true, true, true, true, true, true});
  auto row = [&](const char* name, const v1::IoClassStats& s) {
    c.add_row({name, n(s.requests()), n(s.reads()), format_bytes(s.bytes()),
               n(s.latency_p50_us()), n(s.latency_p99_us()), n(s.errors()), n(s.cancelled())});
  };
  row("demand", io.demand());
  row("prefetch", io.prefetch());
  std::cout << c.render();
}

void stats_json(const v1::StatsReply& r) {
  JsonWriter w;
  w.begin_object();
  w.field("pool_bytes", r.pool_bytes());
  w.field("used_bytes", r.used_bytes());
  w.field("pinned_bytes", r.pinned_bytes());
  w.field("hits", r.hits());
  w.field("misses", r.misses());
  w.field("hit_rate", hit_rate(r.hits(), r.misses()));
  w.field("bytes_read", r.bytes_read());
  w.field("reads", r.reads());
  w.field("read_errors", r.read_errors());
  w.field("evictions", r.evictions());
  w.field("prefetches", r.prefetches());
  w.field("sessions", r.sessions());
  w.field("segment_moves", r.segment_moves());
  w.field("pool_backend", r.pool_backend().empty() ? std::string("host") : r.pool_backend());
  w.field("upload_bytes", r.upload_bytes());
  w.field("upload_busy_ns", r.upload_busy_ns());
  w.field("upload_copies", r.upload_copies());
  w.field("upload_batches", r.upload_batches());
  w.field("upload_gb_per_s", upload_rate_gbs(r));
  w.field("staging_waits", r.staging_waits());
  io_json(w, r.io());
  w.key("models");
  w.begin_array();
  for (const v1::ModelStats& m : r.models()) {
    w.begin_object();
    w.field("model_id", hex_id(m.model_id()));
    w.field("name", m.name());
    w.field("resident_experts", m.resident_experts());
    w.field("used_bytes", m.used_bytes());
    w.field("pinned_bytes", m.pinned_bytes());
    w.field("hits", m.hits());
    w.field("misses", m.misses());
    w.field("hit_rate", hit_rate(m.hits(), m.misses()));
    w.field("bytes_read", m.bytes_read());
    w.field("read_errors", m.read_errors());
    w.field("evictions", m.evictions());
    w.field("prefetches", m.prefetches());
    w.field("predicted_prefetches", m.predicted_prefetches());
    w.field("weight", m.weight());
    w.field("min_bytes", m.min_bytes());
    w.field("max_bytes", m.max_bytes());
    w.field("share_bytes", m.share_bytes());
    w.field("active", m.active());
    w.key("warmup");
    w.begin_object();
    w.field("state", m.warmup_state().empty() ? std::string("none") : m.warmup_state());
    w.field("planned_experts", m.warmup_planned_experts());
    w.field("loaded_experts", m.warmup_loaded_experts());
    w.field("bytes_read", m.warmup_bytes_read());
    w.end_object();
    w.end_object();
  }
  w.end_array();
  w.key("classes");
  w.begin_array();
  for (const v1::SlotClassStats& c : r.classes()) {
    w.begin_object();
    w.field("stride", c.stride());
    w.field("segments", c.segments());
    w.field("slots_used", c.slots_used());
    w.field("ghost_hits", c.ghost_hits());
    w.field("segments_in", c.segments_in());
    w.field("segments_out", c.segments_out());
    w.end_object();
  }
  w.end_array();
  w.end_object();
  std::cout << w.str() << '\n';
}

}  // namespace

Status cmd_stats(AdminChannel& ch, const Options& o) {
  v1::StatsReply r;
  auto ctx = ch.context();
  grpc::Status gs = ch.stub()->Stats(ctx.get(), v1::StatsRequest(), &r);
  if (!gs.ok()) return ch.error(gs, "Stats");
  if (o.json) {
    stats_json(r);
    return Status::Ok();
  }
  Table t({"", ""}, {false, false});
  t.add_row({"pool", format_bytes(r.pool_bytes())});
  t.add_row({"used",
             format_bytes(r.used_bytes()) + " (" + percent(r.used_bytes(), r.pool_bytes()) + ")"});
  t.add_row({"pinned", format_bytes(r.pinned_bytes()) + " (" +
                           percent(r.pinned_bytes(), r.pool_bytes()) + ")"});
  t.add_row({"hits", n(r.hits())});
  t.add_row({"misses", n(r.misses())});
  t.add_row({"hit rate", percent(r.hits(), r.hits() + r.misses())});
  t.add_row({"bytes read", format_bytes(r.bytes_read())});
  t.add_row({"reads", n(r.reads())});
  t.add_row({"read errors", n(r.read_errors())});
  t.add_row({"evictions", n(r.evictions())});
  t.add_row({"prefetches", n(r.prefetches())});
  t.add_row({"sessions", n(r.sessions())});
  t.add_row({"segment moves", n(r.segment_moves())});
  if (r.pool_backend() == "vulkan") {
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.2f GB/s", upload_rate_gbs(r));
    t.add_row({"backend", "vulkan (VRAM)"});
    t.add_row({"uploaded", format_bytes(r.upload_bytes()) + " in " + n(r.upload_copies()) +
                               " copies, " + n(r.upload_batches()) + " batches"});
    t.add_row({"upload rate", std::string(rate) + " while copying"});
    t.add_row({"staging waits", n(r.staging_waits())});
  }
  std::string text = t.render();
  std::cout << text.substr(text.find('\n') + 1);
  io_text(r.io());
  if (!r.models().empty()) {
    std::cout << '\n';
    Table m({"MODEL_ID", "NAME", "RESIDENT", "USED", "PINNED", "HITS", "MISSES", "HIT_RATE",
             "BYTES_READ", "READ_ERRORS", "EVICTIONS"},
            {false, false, true, true, true, true, true, true, true, true, true});
    for (const v1::ModelStats& s : r.models()) {
      m.add_row({hex_id(s.model_id()), s.name(), n(s.resident_experts()),
                 format_bytes(s.used_bytes()), format_bytes(s.pinned_bytes()), n(s.hits()),
                 n(s.misses()), percent(s.hits(), s.hits() + s.misses()),
                 format_bytes(s.bytes_read()), n(s.read_errors()), n(s.evictions())});
    }
    std::cout << m.render() << '\n';
    Table q({"MODEL_ID", "NAME", "WEIGHT", "MIN", "MAX", "SHARE", "ACTIVE", "PREFETCHES",
             "PREDICTED", "WARM-UP"},
            {false, false, true, true, true, true, false, true, true, false});
    for (const v1::ModelStats& s : r.models()) {
      q.add_row({hex_id(s.model_id()), s.name(), weight_text(s.weight()),
                 format_bytes(s.min_bytes()),
                 s.max_bytes() ? format_bytes(s.max_bytes()) : std::string("none"),
                 format_bytes(s.share_bytes()), s.active() ? "yes" : "no", n(s.prefetches()),
                 n(s.predicted_prefetches()), warmup_text(s)});
    }
    std::cout << q.render();
  }
  if (!r.classes().empty()) {
    std::cout << '\n';
    Table c({"CLASS", "STRIDE", "SEGMENTS", "SLOTS_USED", "GHOST_HITS", "SEGMENTS_IN",
             "SEGMENTS_OUT"},
            {true, true, true, true, true, true, true});
    for (int i = 0; i < r.classes_size(); ++i) {
      const v1::SlotClassStats& s = r.classes(i);
      c.add_row({n(static_cast<uint64_t>(i)), format_bytes(s.stride()), n(s.segments()),
                 n(s.slots_used()), n(s.ghost_hits()), n(s.segments_in()), n(s.segments_out())});
    }
    std::cout << c.render();
  }
  return Status::Ok();
}

}  // namespace moepool::ctl
