// Byte sizes as people type and read them: "512M", "4G", "64K", "1.5G", "4096".
// Suffixes are binary (K = 1024): K, M, G, T, P, optionally followed by "iB" or "B"
// ("64KiB", "64KB"), any case; a size with no suffix is plain bytes.
// Thread safety: pure functions, any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace moepool {

// Parses a byte size. A fraction is allowed with a suffix and rounds down to a whole
// byte ("1.5G" = 1610612736); plain bytes must be a whole number. Empty text, a sign,
// garbage, an unknown suffix or a value above 2^64-1 is an error naming the text.
Result<uint64_t> parse_size(std::string_view text);

// Formats bytes for humans with two decimals in the largest binary unit that keeps the
// value at least 1: "1.50 GiB", "512.00 MiB", "64.00 KiB"; below 1 KiB "17 B".
std::string format_bytes(uint64_t bytes);

}  // namespace moepool
