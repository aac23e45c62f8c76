// moepoolctl's commands and the formatting helpers they share. Each command calls one
// Admin RPC and prints its reply as text or, with --json, one JSON object.
// Thread safety: main thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "admin_channel.h"
#include "moepool/status.h"

namespace moepool::ctl {

struct Options {
  std::string socket;
  bool json = false;
  std::string model_id;  // evict
  // quota MODEL [--weight W] [--min SIZE] [--max SIZE]
  std::string quota_model;
  std::optional<double> weight;
  std::optional<std::string> min_size, max_size;
};

// Model ids print as 16 hex digits, as in the daemon's log.
std::string hex_id(uint64_t id);
// Parses a model id as printed by `moepoolctl models`: hex digits, optional 0x prefix.
Result<uint64_t> parse_model_id(const std::string& text);
// "12.5%" of part in whole; "-" when whole is 0.
std::string percent(uint64_t part, uint64_t whole);
// hits / (hits + misses) in [0, 1]; NaN (written as null) when nothing was looked up.
double hit_rate(uint64_t hits, uint64_t misses);
// "3d 04h 05m", "1h 02m 03s", "5m 07s", "42s".
std::string duration(uint64_t seconds);
std::string n(uint64_t v);
// A weight as people write it: "1", "2.5".
std::string weight_text(double w);

Status cmd_stats(AdminChannel& ch, const Options& o);
Status cmd_quota(AdminChannel& ch, const Options& o);

}  // namespace moepool::ctl
