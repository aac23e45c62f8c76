// A minimal JSON writer for moepoolctl's --json output: objects, arrays, strings
// (escaped per RFC 8259, invalid UTF-8 replaced by U+FFFD), integers, doubles, booleans
// and null, on one line in the common layout: ", " between elements, ": " after keys.
// Header-only so tests can include it. Thread safety: one writer per thread.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace moepool {

class JsonWriter {
 public:
  void begin_object();
  void end_object();
  void begin_array();
  void end_array();
  // Writes an object key; the next call writes its value.
  void key(std::string_view k);

  void value(std::string_view s);
  void value(const char* s) { value(std::string_view(s)); }
  void value(uint64_t v);
  void value(uint32_t v) { value(static_cast<uint64_t>(v)); }
  void value(bool b);
  // Non-finite values (NaN, inf) have no JSON form and are written as null.
  void value(double d);
  void null();

  // Shorthand for key(k) followed by value(v).
  template <typename T>
  void field(std::string_view k, const T& v) {
    key(k);
    value(v);
  }

  // The text written so far.
  const std::string& str() const { return out_; }

  // Returns `s` as a quoted, escaped JSON string.
  static std::string quote(std::string_view s);

 private:
  // Writes the comma that separates this element from the previous one, if any.
  void separate();
  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;   // a key was written; its value comes next, no comma
};

namespace json_detail {

// Returns the length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
inline size_t utf8_length(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

}  // namespace json_detail

inline std::string JsonWriter::quote(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        ++i;
        continue;
      case '\\':
        out += "\\\\";
        ++i;
        continue;
      case '\b':
        out += "\\b";
        ++i;
        continue;
      case '\f':
        out += "\\f";
        ++i;
        continue;
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      case '\t':
        out += "\\t";
        ++i;
        continue;
      default:
        break;
    }
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
      ++i;
      continue;
    }
    size_t n = json_detail::utf8_length(s, i);
    if (n == 0) {
      out += "\\ufffd";  // not UTF-8: JSON text must be
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  out += '"';
  return out;
}

inline void JsonWriter::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_ += ", ";
    first_.back() = false;
  }
}

inline void JsonWriter::begin_object() {
  separate();
  out_ += '{';
  first_.push_back(true);
}

inline void JsonWriter::end_object() {
  out_ += '}';
  first_.pop_back();
}

inline void JsonWriter::begin_array() {
  separate();
  out_ += '[';
  first_.push_back(true);
}

inline void JsonWriter::end_array() {
  out_ += ']';
  first_.pop_back();
}

inline void JsonWriter::key(std::string_view k) {
  separate();
  out_ += quote(k);
  out_ += ": ";
  after_key_ = true;
}

inline void JsonWriter::value(std::string_view s) {
  separate();
  out_ += quote(s);
}

inline void JsonWriter::value(uint64_t v) {
  separate();
  out_ += std::to_string(v);
}

inline void JsonWriter::value(bool b) {
  separate();
  out_ += b ? "true" : "false";
}

inline void JsonWriter::value(double d) {
  if (!std::isfinite(d)) return null();
  separate();
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", d);
  out_ += buf;
}

inline void JsonWriter::null() {
  separate();
  out_ += "null";
}

}  // namespace moepool
