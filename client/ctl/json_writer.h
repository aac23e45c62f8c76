// A minimal JSON writer for moepoolctl's --json output: objects, arrays, strings
// (escaped per RFC 8259, invalid UTF-8 replaced by U+FFFD), integers, doubles, booleans
// and null, written compactly on one line.
// Thread safety: one writer per thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moepool::ctl {

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

}  // namespace moepool::ctl
