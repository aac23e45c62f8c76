// Command-line flags of moepoold that override a DaemonConfig (precedence: embedded
// defaults < --config file < flags). main.cpp calls add_config_flags before parsing,
// then load_config_overlay (or: default_config, load_config_file, apply_overrides,
// validate_config).
//
// Threads: main thread only, at start.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/config.h"

namespace CLI {
class App;
}

namespace moepool {

// What was given on the command line; unset members leave the config as it is.
struct CliOverrides {
  std::string config_file;                  // --config FILE ("" = defaults only)
  std::optional<std::string> socket_path;   // --socket PATH
  std::optional<std::string> pool_size;     // --pool-size SIZE ("512M", "4G", bytes)
  std::optional<std::string> segment_size;  // --segment-size SIZE
  std::vector<std::string> model_roots;     // --model-root DIR (repeatable; replaces models.roots)
  std::optional<std::string> state_dir;     // --state-dir DIR
  std::optional<std::string> log_level;     // --log-level L
  std::optional<std::string> io_mode;       // --io-mode M
  bool no_direct = false;                   // --no-direct: io.direct = off
  std::optional<std::string> direct;        // --direct auto|on|off
  std::optional<std::string> lock_memory;   // --lock auto|on|off
  std::optional<std::string> policy;        // --policy default|lru
};

// Registers the flags above on `app`, writing into `*out` when parsed. `out` must outlive
// the parse.
void add_config_flags(CLI::App& app, CliOverrides* out);

// Applies the flags in `o` over `*cfg` (not --config: the caller loads that first).
// Errors name the flag, e.g. "--pool-size: bad size '12Q'".
Status apply_overrides(const CliOverrides& o, DaemonConfig* cfg);

// Convenience for main(): default_config(), then o.config_file when set, then
// apply_overrides, then validate_config.
Result<DaemonConfig> load_effective_config(const CliOverrides& o);

}  // namespace moepool
