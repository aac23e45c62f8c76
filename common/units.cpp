#include "common/units.h"

#include <cctype>
#include <cstdio>

namespace moepool {
namespace {

// Returns the shift (10 for K, 20 for M, ...) of a suffix, or -1 if it is not one.
int suffix_shift(std::string_view s) {
  if (s.empty()) return 0;
  int shift;
  switch (std::tolower(static_cast<unsigned char>(s[0]))) {
    case 'b':
      return s.size() == 1 ? 0 : -1;  // "B": plain bytes
    case 'k':
      shift = 10;
      break;
    case 'm':
      shift = 20;
      break;
    case 'g':
      shift = 30;
      break;
    case 't':
      shift = 40;
      break;
    case 'p':
      shift = 50;
      break;
    default:
      return -1;
  }
  std::string_view rest = s.substr(1);
  auto lower = [](std::string_view v) {
    std::string out(v);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  std::string r = lower(rest);
  if (r.empty() || r == "b" || r == "ib") return shift;
  return -1;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
  const std::string quoted = "size '" + std::string(text) + "'";
  std::string_view s = trim(text);
  if (s.empty()) return InvalidArgument("empty size: expected bytes or a number with K/M/G/T");
  if (s[0] == '-' || s[0] == '+')
    return InvalidArgument(quoted + ": a size must be an unsigned number");

  // Digits before and after an optional decimal point, then the suffix.
  size_t i = 0;
  unsigned __int128 mantissa = 0;  // all digits, the point removed
  uint32_t int_digits = 0, frac_digits = 0;
  bool overflow = false;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    mantissa = mantissa * 10 + static_cast<unsigned>(s[i] - '0');
    if (mantissa > UINT64_MAX) overflow = true;
    ++int_digits;
    ++i;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (frac_digits < 18) {  // more digits cannot change a whole-byte result
        mantissa = mantissa * 10 + static_cast<unsigned>(s[i] - '0');
        ++frac_digits;
      }
      ++i;
    }
  }
  if (int_digits == 0 && frac_digits == 0)
    return InvalidArgument(quoted + ": expected a number, e.g. 512M, 4G, 1.5G or 4096");
  if (overflow) return InvalidArgument(quoted + ": larger than 2^64-1 bytes");

  std::string_view suffix = trim(s.substr(i));
  int shift = suffix_shift(suffix);
  if (shift < 0)
    return InvalidArgument(quoted + ": unknown suffix '" + std::string(suffix) +
                           "' (use K, M, G, T or P, optionally with iB or B)");
  if (frac_digits > 0 && shift == 0)
    return InvalidArgument(quoted + ": a byte count must be a whole number");

  unsigned __int128 pow10 = 1;
  for (uint32_t d = 0; d < frac_digits; ++d) pow10 *= 10;
  // mantissa < 10^37 and shift <= 50 could overflow 128 bits; check before shifting.
  if (mantissa > (~static_cast<unsigned __int128>(0) >> shift))
    return InvalidArgument(quoted + ": larger than 2^64-1 bytes");
  unsigned __int128 bytes = (mantissa << shift) / pow10;
  if (bytes > UINT64_MAX) return InvalidArgument(quoted + ": larger than 2^64-1 bytes");
  return static_cast<uint64_t>(bytes);
}

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  int unit = 0;
  long double value = static_cast<long double>(bytes) / 1024.0L;
  while (value >= 1024.0L && unit < 5) {
    value /= 1024.0L;
    ++unit;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.2Lf %s", value, kUnits[unit]);
  return buf;
}

}  // namespace moepool
