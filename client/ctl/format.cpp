// Formatting helpers of moepoolctl (client/ctl/commands.h).
#include <cinttypes>
#include <cstdio>
#include <limits>

#include "commands.h"

namespace moepool::ctl {

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

std::string weight_text(double w) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", w);
  return buf;
}

}  // namespace moepool::ctl
