// moepoold's configuration flags (CLI11) and their application over a DaemonConfig.
#include "daemon/config_cli.h"

#include <CLI/CLI.hpp>

#include "common/units.h"

namespace moepool {

void add_config_flags(CLI::App& app, CliOverrides* out) {
  app.add_option("--config", out->config_file,
                 "TOML config file (see config/moepoold.toml); flags override it")
      ->type_name("FILE");
  app.add_option_function<std::string>(
         "--socket", [out](const std::string& v) { out->socket_path = v; },
         "gRPC Unix socket path (fd side channel: PATH.fds)")
      ->type_name("PATH");
  app.add_option_function<std::string>(
         "--pool-size", [out](const std::string& v) { out->pool_size = v; },
         "pool size, e.g. 512M, 4G (minimum 1M)")
      ->type_name("SIZE");
  app.add_option_function<std::string>(
         "--segment-size", [out](const std::string& v) { out->segment_size = v; },
         "pool segment size, multiple of 4K dividing the pool; 0 = auto")
      ->type_name("SIZE");
  app.add_option("--model-root", out->model_roots,
                 "directory models may be opened from (repeatable; replaces models.roots)")
      ->type_name("DIR")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option_function<std::string>(
         "--state-dir", [out](const std::string& v) { out->state_dir = v; },
         "directory for persistent state (popularity)")
      ->type_name("DIR");
  app.add_option_function<std::string>(
         "--log-level", [out](const std::string& v) { out->log_level = v; },
         "trace|debug|info|warn|error")
      ->type_name("LEVEL");
  app.add_option_function<std::string>(
         "--io-mode", [out](const std::string& v) { out->io_mode = v; }, "auto|io_uring|pread")
      ->type_name("MODE");
  app.add_flag("--no-direct", out->no_direct, "do not use O_DIRECT (io.direct = off)");
  app.add_option_function<std::string>(
         "--direct", [out](const std::string& v) { out->direct = v; },
         "O_DIRECT reads: auto (per model: when its files do not fit in free RAM), on, off")
      ->type_name("auto|on|off");
  app.add_option_function<std::string>(
         "--lock", [out](const std::string& v) { out->lock_memory = v; },
         "lock pool memory: auto (try), on (fail if refused), off")
      ->type_name("auto|on|off");
  app.add_option_function<std::string>(
         "--policy", [out](const std::string& v) { out->policy = v; },
         "expert cache residency policy: default (adaptive decayed frequency on each layer's "
         "clock) or lru")
      ->type_name("NAME");
}

Status apply_overrides(const CliOverrides& o, DaemonConfig* cfg) {
  auto one_of = [](const std::string& v, std::initializer_list<std::string_view> allowed) {
    for (auto a : allowed) {
      if (v == a) return true;
    }
    return false;
  };
  if (o.socket_path) {
    if (o.socket_path->empty()) return InvalidArgument("--socket: must not be empty");
    cfg->socket_path = *o.socket_path;
  }
  if (o.pool_size) {
    auto v = parse_size(*o.pool_size);
    if (!v.ok()) return InvalidArgument("--pool-size: " + v.status().message());
    cfg->pool_bytes = *v;
  }
  if (o.segment_size) {
    auto v = parse_size(*o.segment_size);
    if (!v.ok()) return InvalidArgument("--segment-size: " + v.status().message());
    cfg->segment_bytes = *v;
  }
  if (!o.model_roots.empty()) {
    cfg->model_roots = o.model_roots;
    cfg->model_root_origins.clear();
  }
  if (o.state_dir) {
    if (o.state_dir->empty()) return InvalidArgument("--state-dir: must not be empty");
    cfg->state_dir = *o.state_dir;
  }
  if (o.log_level) {
    if (!one_of(*o.log_level, {"trace", "debug", "info", "warn", "error"})) {
      return InvalidArgument("--log-level: '" + *o.log_level +
                             "' is not one of trace|debug|info|warn|error");
    }
    cfg->log_level = *o.log_level;
  }
  if (o.io_mode) {
    if (!one_of(*o.io_mode, {"auto", "io_uring", "pread"})) {
      return InvalidArgument("--io-mode: '" + *o.io_mode + "' is not one of auto|io_uring|pread");
    }
    cfg->io_mode = *o.io_mode;
  }
  if (o.direct) {
    if (!one_of(*o.direct, {"auto", "on", "off"}))
      return InvalidArgument("--direct: '" + *o.direct + "' is not one of auto|on|off");
    cfg->io_direct = *o.direct == "on" ? kIoDirectOn : *o.direct == "off" ? kIoDirectOff : kIoDirectAuto;
  }
  if (o.no_direct) cfg->io_direct = kIoDirectOff;
  if (o.lock_memory) {
    if (!one_of(*o.lock_memory, {"auto", "on", "off"})) {
      return InvalidArgument("--lock: '" + *o.lock_memory + "' is not one of auto|on|off");
    }
    cfg->lock_memory = *o.lock_memory;
  }
  if (o.policy) {
    if (!one_of(*o.policy, {"default", "lru"})) {
      return InvalidArgument("--policy: '" + *o.policy + "' is not one of default|lru");
    }
    cfg->policy_name = *o.policy;
  }
  return Status::Ok();
}

Result<DaemonConfig> load_effective_config(const CliOverrides& o) {
  DaemonConfig cfg = default_config();
  if (!o.config_file.empty()) {
    auto loaded = load_config_file(o.config_file, cfg);
    if (!loaded.ok()) return loaded.status();
    cfg = std::move(loaded).value();
  }
  MOEPOOL_RETURN_IF_ERROR(apply_overrides(o, &cfg));
  MOEPOOL_RETURN_IF_ERROR(validate_config(&cfg));
  return cfg;
}

}  // namespace moepool
