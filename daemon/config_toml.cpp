// The helpers of daemon/config_toml.h: typed getters of TOML values with errors that
// name the file, line, column and key. toml++ exceptions are not used here.
#include "daemon/config_toml.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/units.h"

namespace moepool::config_detail {

namespace fs = std::filesystem;

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

Status wrong_type(const Origin& o, const toml::node& n, const std::string& key,
                  const char* expected) {
  return o.error(n.source(), key + ": expected " + expected + ", got " + type_name(n.type()));
}

Result<std::string> get_string(const Origin& o, const toml::node& n, const std::string& key) {
  const auto* s = n.as_string();
  if (s == nullptr) return wrong_type(o, n, key, "a string");
  return s->get();
}

// A path from the file: non-empty; relative paths are taken relative to the file's dir.
Result<std::string> get_path(const Origin& o, const toml::node& n, const std::string& key) {
  auto s = get_string(o, n, key);
  if (!s.ok()) return s.status();
  if (s->empty()) return o.error(n.source(), key + ": must not be empty");
  fs::path p(*s);
  if (p.is_relative()) p = fs::path(o.dir) / p;
  return p.lexically_normal().string();
}

// A byte size: a string with a suffix ("512M") or an integer count of bytes.
Result<uint64_t> get_size(const Origin& o, const toml::node& n, const std::string& key) {
  if (const auto* i = n.as_integer()) {
    if (i->get() < 0) return o.error(n.source(), key + ": must not be negative");
    return static_cast<uint64_t>(i->get());
  }
  const auto* s = n.as_string();
  if (s == nullptr) return wrong_type(o, n, key, "a size string like \"512M\" or an integer");
  auto v = parse_size(s->get());
  if (!v.ok()) return o.error(n.source(), key + ": " + v.status().message());
  return *v;
}

Result<std::string> get_choice(const Origin& o, const toml::node& n, const std::string& key,
                               std::initializer_list<std::string_view> allowed) {
  auto s = get_string(o, n, key);
  if (!s.ok()) return s.status();
  for (auto a : allowed) {
    if (*s == a) return *s;
  }
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : "|") + std::string(a);
  return o.error(n.source(), key + ": '" + *s + "' is not one of " + list);
}

namespace {

// Returns the Levenshtein distance of a and b (for "did you mean" hints).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string suggestion(std::string_view got, const std::vector<std::string_view>& known) {
  std::string_view best;
  size_t best_d = 3;  // suggest only close matches
  for (auto k : known) {
    size_t d = edit_distance(got, k);
    if (d < best_d) best_d = d, best = k;
  }
  return best.empty() ? "" : " (did you mean '" + std::string(best) + "'?)";
}

Result<bool> get_bool(const Origin& o, const toml::node& n, const std::string& key) {
  const auto* b = n.as_boolean();
  if (b == nullptr) return wrong_type(o, n, key, "a boolean");
  return b->get();
}

Result<double> get_number(const Origin& o, const toml::node& n, const std::string& key,
                          double lo, double hi) {
  double v = 0;
  if (const auto* i = n.as_integer())
    v = static_cast<double>(i->get());
  else if (const auto* f = n.as_floating_point())
    v = f->get();
  else
    return wrong_type(o, n, key, "a number");
  if (!std::isfinite(v) || v < lo || v > hi) {
    char buf[128];
    std::snprintf(buf, sizeof buf, ": %g is out of range %g..%g", v, lo, hi);
    return o.error(n.source(), key + buf);
  }
  return v;
}

}  // namespace moepool::config_detail
