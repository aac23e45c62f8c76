// moepoolctl: the admin CLI of moepoold, a thin client of the Admin gRPC service.
//
//   moepoolctl [--socket PATH] status|models|stats [--json]
//   moepoolctl [--socket PATH] evict MODEL_ID [--json]
//
// Exit status: 0 on success, 1 when the daemon cannot be reached or refuses the call,
// 2 on a command-line error.
// Thread safety: single-threaded program.
#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <string>

#include "admin_channel.h"
#include "common/units.h"
#include "common/json_writer.h"
#include "table.h"

namespace moepool::ctl {
namespace {

struct Options {
  std::string socket;
  bool json = false;
  std::string model_id;  // evict
};

// Model ids print as 16 hex digits, as in the daemon's log.
std::string hex_id(uint64_t id) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, id);
  return buf;
}

// Parses a model id as printed by `moepoolctl models`: hex digits, optional 0x prefix.
Result<uint64_t> parse_model_id(const std::string& text) {
  std::string s = text;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s = s.substr(2);
  if (s.empty() || s.size() > 16) {
    return InvalidArgument("MODEL_ID '" + text + "' is not 1 to 16 hex digits");
  }
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return InvalidArgument("MODEL_ID '" + text +
                             "' is not hex (as `moepoolctl models` prints it)");
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

std::string percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%", 100.0 * static_cast<double>(part) / whole);
  return buf;
}

// hits / (hits + misses) in [0, 1]; NaN (written as null) when nothing was looked up.
double hit_rate(uint64_t hits, uint64_t misses) {
  uint64_t total = hits + misses;
  return total == 0 ? std::numeric_limits<double>::quiet_NaN()
                    : static_cast<double>(hits) / static_cast<double>(total);
}

std::string duration(uint64_t s) {
  char buf[64];
  if (s >= 86400) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 "d %02" PRIu64 "h %02" PRIu64 "m", s / 86400,
                  s % 86400 / 3600, s % 3600 / 60);
  } else if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 "h %02" PRIu64 "m %02" PRIu64 "s", s / 3600,
                  s % 3600 / 60, s % 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 "m %02" PRIu64 "s", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 "s", s);
  }
  return buf;
}

std::string n(uint64_t v) { return std::to_string(v); }

// ---- status ---------------------------------------------------------------------------

Status cmd_status(AdminChannel& ch, const Options& o) {
  v1::StatusReply r;
  auto ctx = ch.context();
  grpc::Status gs = ch.stub()->Status(ctx.get(), v1::StatusRequest(), &r);
  if (!gs.ok()) return ch.error(gs, "Status");
  if (o.json) {
    JsonWriter w;
    w.begin_object();
    w.field("socket", o.socket);
    w.field("version", r.version());
    w.field("pid", r.pid());
    w.field("uptime_seconds", r.uptime_seconds());
    w.field("io_mode", r.io_mode());
    w.field("pool_bytes", r.pool_bytes());
    w.field("used_bytes", r.used_bytes());
    w.field("locked", r.locked());
    w.field("sessions", r.sessions());
    w.field("models", r.models());
    w.end_object();
    std::cout << w.str() << '\n';
    return Status::Ok();
  }
  Table t({"", ""}, {false, false});
  t.add_row({"moepoold", r.version() + " (pid " + n(r.pid()) + ") at " + o.socket});
  t.add_row({"uptime", duration(r.uptime_seconds())});
  t.add_row({"io mode", r.io_mode()});
  t.add_row({"pool", format_bytes(r.pool_bytes()) + ", " + format_bytes(r.used_bytes()) +
                         " used (" + percent(r.used_bytes(), r.pool_bytes()) + "), " +
                         (r.locked() ? "locked in memory" : "not locked in memory")});
  t.add_row({"sessions", n(r.sessions())});
  t.add_row({"models", n(r.models())});
  std::string text = t.render();
  std::cout << text.substr(text.find('\n') + 1);  // no header row
  return Status::Ok();
}

// ---- models ---------------------------------------------------------------------------

Status cmd_models(AdminChannel& ch, const Options& o) {
  v1::ListModelsReply r;
  auto ctx = ch.context();
  grpc::Status gs = ch.stub()->ListModels(ctx.get(), v1::ListModelsRequest(), &r);
  if (!gs.ok()) return ch.error(gs, "ListModels");
  if (o.json) {
    JsonWriter w;
    w.begin_object();
    w.key("models");
    w.begin_array();
    for (const v1::ModelSummary& m : r.models()) {
      w.begin_object();
      w.field("model_id", hex_id(m.model_id()));
      w.field("name", m.name());
      w.field("path", m.path());
      w.field("architecture", m.architecture());
      w.field("moe_layers", m.moe_layers());
      w.field("n_experts", m.n_experts());
      w.field("expert_bytes", m.expert_bytes());
      w.field("file_bytes", m.file_bytes());
      w.field("open_sessions", m.open_sessions());
      w.end_object();
    }
    w.end_array();
    w.end_object();
    std::cout << w.str() << '\n';
    return Status::Ok();
  }
  if (r.models().empty()) {
    std::cout << "no models open\n";
    return Status::Ok();
  }
  Table t({"MODEL_ID", "NAME", "ARCH", "MOE_LAYERS", "EXPERTS", "EXPERT_SIZE", "FILE_SIZE",
           "SESSIONS", "PATH"},
          {false, false, false, true, true, true, true, true, false});
  for (const v1::ModelSummary& m : r.models()) {
    t.add_row({hex_id(m.model_id()), m.name(), m.architecture(), n(m.moe_layers()),
               n(m.n_experts()), format_bytes(m.expert_bytes()), format_bytes(m.file_bytes()),
               n(m.open_sessions()), m.path()});
  }
  std::cout << t.render();
  return Status::Ok();
}

// ---- stats ----------------------------------------------------------------------------

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
    w.end_object();
  }
  w.end_array();
  w.end_object();
  std::cout << w.str() << '\n';
}

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
  std::string text = t.render();
  std::cout << text.substr(text.find('\n') + 1);
  if (r.models().empty()) return Status::Ok();
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
  std::cout << m.render();
  return Status::Ok();
}

// ---- evict ----------------------------------------------------------------------------

Status cmd_evict(AdminChannel& ch, const Options& o) {
  auto id = parse_model_id(o.model_id);
  if (!id.ok()) return id.status();
  v1::EvictModelRequest req;
  req.set_model_id(*id);
  v1::EvictModelReply r;
  auto ctx = ch.context();
  grpc::Status gs = ch.stub()->EvictModel(ctx.get(), req, &r);
  if (!gs.ok()) return ch.error(gs, "EvictModel");
  if (o.json) {
    JsonWriter w;
    w.begin_object();
    w.field("model_id", hex_id(*id));
    w.field("evicted", r.evicted());
    w.field("still_pinned", r.still_pinned());
    w.end_object();
    std::cout << w.str() << '\n';
  } else {
    std::cout << "model " << hex_id(*id) << ": evicted " << r.evicted() << " experts, "
              << r.still_pinned() << " still pinned\n";
  }
  return Status::Ok();
}

int run(int argc, char** argv) {
  Options o;
  o.socket = default_socket_path();
  CLI::App app{"moepoolctl: inspect and control moepoold, the MoE expert pool daemon.",
               "moepoolctl"};
  app.require_subcommand(1);
  app.fallthrough();  // --socket and --json may follow the command
  app.add_option("--socket", o.socket, "moepoold's Unix socket")
      ->envname("MOEPOOL_SOCKET")
      ->capture_default_str();
  app.add_flag("--json", o.json, "Print one JSON object instead of text");
  app.footer(
      "The default socket is $XDG_RUNTIME_DIR/moepool/moepool.sock, or\n"
      "/tmp/moepool-<uid>/moepool.sock when XDG_RUNTIME_DIR is unset (moepoold's default);\n"
      "MOEPOOL_SOCKET or --socket override it. Model ids are 16 hex digits.\n"
      "Exit status: 0 ok, 1 the daemon is unreachable or refused the call, 2 usage error.");
  auto* status = app.add_subcommand(
      "status", "Daemon version, pid, uptime, I/O mode, pool size and use, sessions, models");
  auto* models = app.add_subcommand("models", "Open models: id, name, shape, sizes, path");
  auto* stats = app.add_subcommand(
      "stats", "Pool and per-model counters: use, pins, hits, misses, reads, evictions");
  auto* evict = app.add_subcommand(
      "evict", "Drop every unpinned resident expert of a model (needs an admin uid or group)");
  evict->add_option("MODEL_ID", o.model_id, "Model id as printed by `moepoolctl models`")
      ->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  auto ch = AdminChannel::connect(o.socket);
  Status st = ch.status();
  if (st.ok()) {
    if (status->parsed())
      st = cmd_status(**ch, o);
    else if (models->parsed())
      st = cmd_models(**ch, o);
    else if (stats->parsed())
      st = cmd_stats(**ch, o);
    else if (evict->parsed())
      st = cmd_evict(**ch, o);
  }
  if (!st.ok()) {
    std::cerr << "moepoolctl: " << st.message() << '\n';
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace moepool::ctl

int main(int argc, char** argv) {
  try {
    return moepool::ctl::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "moepoolctl: " << e.what() << '\n';
    return 1;
  }
}
