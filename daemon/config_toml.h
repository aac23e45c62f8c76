// Helpers the parts of moepoold's config loader share (daemon/config.cpp,
// daemon/config_budget.cpp): where a TOML value came from, typed getters whose errors read
// "<file>:<line>:<col>: <key>: <reason>", and the table of known sections and keys.
// Internal to daemon/config*.cpp; toml++ exceptions never leave these files.
// Threads: plain functions on values; main thread at start.
#pragma once

#include <toml++/toml.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "daemon/config.h"

namespace moepool::config_detail {

// Where a value came from, for error messages: "<file>:<line>:<col>".
struct Origin {
  std::string file;
  std::string dir;  // directory of the file; relative paths in it are relative to this

  std::string at(const toml::source_region& r) const {
    return file + ":" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column);
  }
  Status error(const toml::source_region& r, const std::string& what) const {
    return InvalidArgument(at(r) + ": " + what);
  }
};

// "a table", "an integer", ... for error messages.
const char* type_name(toml::node_type t);
Status wrong_type(const Origin& o, const toml::node& n, const std::string& key,
                  const char* expected);
Result<std::string> get_string(const Origin& o, const toml::node& n, const std::string& key);
// A path from the file: non-empty; relative paths are taken relative to the file's dir.
Result<std::string> get_path(const Origin& o, const toml::node& n, const std::string& key);
// A byte size: a string with a suffix ("512M") or an integer count of bytes.
Result<uint64_t> get_size(const Origin& o, const toml::node& n, const std::string& key);
Result<std::string> get_choice(const Origin& o, const toml::node& n, const std::string& key,
                               std::initializer_list<std::string_view> allowed);
Result<bool> get_bool(const Origin& o, const toml::node& n, const std::string& key);
// A number (integer or float) within [lo, hi].
Result<double> get_number(const Origin& o, const toml::node& n, const std::string& key,
                          double lo, double hi);
// " (did you mean 'x'?)" when `got` is close to one of `known`, else "".
std::string suggestion(std::string_view got, const std::vector<std::string_view>& known);

using Setter = std::function<Status(const Origin&, const toml::node&, DaemonConfig*)>;
struct KeySpec {
  std::string_view name;
  Setter set;
};
struct SectionSpec {
  std::string_view name;
  std::vector<KeySpec> keys;
};

// The [io] section, defined in daemon/config_io.cpp.
const std::vector<SectionSpec>& io_schema();
// Range checks of the [io] keys (flags bypass the file's checks), for validate_config.
Status validate_io_config(const DaemonConfig& cfg);
// The io.* lines of describe_config.
std::string describe_io_config(const DaemonConfig& cfg);

// Sections defined in daemon/config_budget.cpp: [popularity] and [prefetch].
const std::vector<SectionSpec>& budget_schema();
// Applies [quota."<model name>"] tables (the value of the root key "quota").
Status apply_quota_section(const Origin& o, const toml::node& n, DaemonConfig* cfg);

// Cross-field checks of the quotas (weight > 0, max >= min, minimums fit the pool), for
// validate_config.
Status validate_budget_config(const DaemonConfig& cfg);
// The [quota], [popularity] and [prefetch] lines of describe_config.
std::string describe_budget_config(const DaemonConfig& cfg);

}  // namespace moepool::config_detail
