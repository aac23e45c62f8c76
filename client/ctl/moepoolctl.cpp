// moepoolctl: the admin CLI of moepoold, a thin client of the Admin gRPC service.
//
//   moepoolctl [--socket PATH] status|models|stats [--json]
//   moepoolctl [--socket PATH] evict MODEL_ID [--json]
//   moepoolctl [--socket PATH] quota MODEL [--weight W] [--min SIZE] [--max SIZE] [--json]
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
#include "commands.h"
#include "common/units.h"
#include "common/json_writer.h"
#include "table.h"

namespace moepool::ctl {
namespace {

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
      "stats",
      "Pool and per-model counters (use, pins, hits, misses, reads, evictions, prefetches), "
      "quotas and shares, warm-up progress, slot classes");
  auto* evict = app.add_subcommand(
      "evict", "Drop every unpinned resident expert of a model (needs an admin uid or group)");
  evict->add_option("MODEL_ID", o.model_id, "Model id as printed by `moepoolctl models`")
      ->required();
  auto* quota = app.add_subcommand(
      "quota",
      "Show or set a model's share of the pool (setting needs an admin uid or group)");
  quota->add_option("MODEL", o.quota_model,
                    "Model name as `moepoolctl stats` shows it; need not be open yet")
      ->required();
  quota->add_option("--weight", o.weight,
                    "Relative share among the models demanding experts (> 0; default 1)");
  quota->add_option("--min", o.min_size,
                    "Kept for the model even when idle, e.g. 512M (all minimums must fit "
                    "the pool)");
  quota->add_option("--max", o.max_size,
                    "Most the model may hold, pins included, e.g. 4G (0: no maximum)");
  quota->footer(
      "Options not given keep their value; with none, the quota in force is printed.\n"
      "A model's share is its weight's part of the pool among active models, clamped to\n"
      "[min, max]; an idle model keeps its min, and unused share is lent to models with\n"
      "misses. Quotas set here last until moepoold restarts (persist them in\n"
      "[quota.\"<model name>\"] of moepoold.toml).");
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
    else if (quota->parsed())
      st = cmd_quota(**ch, o);
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
