// Loading routing traces: a tiny JSON reader for P.json, streaming zstd for the arrays.
#include "common/trace.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string_view>

namespace moepool {
namespace {

constexpr uint64_t kMaxJsonBytes = 64ull << 20;
constexpr int kMaxJsonDepth = 64;

// A parsed JSON value; numbers keep their source text so integers stay exact.
struct JsonValue {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  std::string text;  // string contents, or a number's source text
  std::vector<JsonValue> items;
  std::map<std::string, JsonValue> fields;
  size_t offset = 0;  // byte offset of the value in the file
};

// Recursive-descent JSON parser; errors name the file and the byte offset.
class JsonParser {
 public:
  JsonParser(std::string_view src, std::string file) : src_(src), file_(std::move(file)) {}

  Result<JsonValue> parse_document() {
    JsonValue v;
    MOEPOOL_RETURN_IF_ERROR(parse_value(v, 0));
    skip_ws();
    if (pos_ != src_.size()) return error("unexpected data after the JSON value");
    return v;
  }

 private:
  Status error(const std::string& what) const {
    return InvalidArgument(file_ + ": byte " + std::to_string(pos_) + ": " + what);
  }
  void skip_ws() {
    while (pos_ < src_.size() &&
           (src_[pos_] == ' ' || src_[pos_] == '\n' || src_[pos_] == '\r' || src_[pos_] == '\t'))
      ++pos_;
  }
  bool consume(std::string_view word) {
    if (src_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Status parse_value(JsonValue& v, int depth) {
    if (depth > kMaxJsonDepth) return error("JSON nested too deeply");
    skip_ws();
    if (pos_ >= src_.size()) return error("unexpected end of file");
    v.offset = pos_;
    char c = src_[pos_];
    if (c == '{') return parse_object(v, depth);
    if (c == '[') return parse_array(v, depth);
    if (c == '"') {
      v.kind = JsonValue::Kind::kString;
      return parse_string(v.text);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(v);
    if (consume("true") || consume("false")) {
      v.kind = JsonValue::Kind::kBool;
      v.boolean = c == 't';
      return Status::Ok();
    }
    if (consume("null")) return Status::Ok();
    return error(std::string("unexpected character '") + c + "'");
  }

  Status parse_object(JsonValue& v, int depth) {
    v.kind = JsonValue::Kind::kObject;
    ++pos_;  // '{'
    skip_ws();
    if (pos_ < src_.size() && src_[pos_] == '}') {
      ++pos_;
      return Status::Ok();
    }
    for (;;) {
      skip_ws();
      if (pos_ >= src_.size() || src_[pos_] != '"') return error("expected a field name");
      std::string key;
      MOEPOOL_RETURN_IF_ERROR(parse_string(key));
      skip_ws();
      if (pos_ >= src_.size() || src_[pos_] != ':') return error("expected ':'");
      ++pos_;
      JsonValue item;
      MOEPOOL_RETURN_IF_ERROR(parse_value(item, depth + 1));
      v.fields[key] = std::move(item);
      skip_ws();
      if (pos_ < src_.size() && src_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < src_.size() && src_[pos_] == '}') {
        ++pos_;
        return Status::Ok();
      }
      return error("expected ',' or '}'");
    }
  }

  Status parse_array(JsonValue& v, int depth) {
    v.kind = JsonValue::Kind::kArray;
    ++pos_;  // '['
    skip_ws();
    if (pos_ < src_.size() && src_[pos_] == ']') {
      ++pos_;
      return Status::Ok();
    }
    for (;;) {
      JsonValue item;
      MOEPOOL_RETURN_IF_ERROR(parse_value(item, depth + 1));
      v.items.push_back(std::move(item));
      skip_ws();
      if (pos_ < src_.size() && src_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < src_.size() && src_[pos_] == ']') {
        ++pos_;
        return Status::Ok();
      }
      return error("expected ',' or ']'");
    }
  }

  // Parses a string; \uXXXX escapes become UTF-8 (surrogate pairs are kept as-is
  // code units, enough for the labels a trace carries).
  Status parse_string(std::string& out) {
    ++pos_;  // '"'
    while (pos_ < src_.size()) {
      char c = src_[pos_++];
      if (c == '"') return Status::Ok();
      if (static_cast<unsigned char>(c) < 0x20) return error("control character in string");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= src_.size()) break;
      char e = src_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out.push_back(e);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          if (pos_ + 4 > src_.size()) return error("truncated \\u escape");
          uint32_t cp = 0;
          for (int i = 0; i < 4; ++i) {
            char h = src_[pos_++];
            cp <<= 4;
            if (h >= '0' && h <= '9')
              cp |= h - '0';
            else if (h >= 'a' && h <= 'f')
              cp |= h - 'a' + 10;
            else if (h >= 'A' && h <= 'F')
              cp |= h - 'A' + 10;
            else
              return error("bad hex digit in \\u escape");
          }
          if (cp < 0x80) {
            out.push_back(static_cast<char>(cp));
          } else if (cp < 0x800) {
            out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          } else {
            out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
            out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          }
          break;
        }
        default:
          return error(std::string("bad escape '\\") + e + "'");
      }
    }
    return error("unterminated string");
  }

  Status parse_number(JsonValue& v) {
    v.kind = JsonValue::Kind::kNumber;
    size_t start = pos_;
    if (src_[pos_] == '-') ++pos_;
    auto digits = [&] {
      size_t d = pos_;
      while (pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '9') ++pos_;
      return pos_ - d;
    };
    if (digits() == 0) return error("bad number");
    if (pos_ < src_.size() && src_[pos_] == '.') {
      ++pos_;
      if (digits() == 0) return error("bad number");
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < src_.size() && (src_[pos_] == '+' || src_[pos_] == '-')) ++pos_;
      if (digits() == 0) return error("bad number");
    }
    v.text.assign(src_.substr(start, pos_ - start));
    return Status::Ok();
  }

  std::string_view src_;
  std::string file_;
  size_t pos_ = 0;
};

Result<std::string> read_small_file(const std::string& path, uint64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + path, errno);
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status st = Status::FromErrno("read " + path, errno);
      ::close(fd);
      return st;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      return InvalidArgument(path + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  ::close(fd);
  return out;
}

// Reads a non-negative integer field of `obj`; `where` names the object in errors.
Result<uint64_t> get_uint(const JsonValue& obj, const std::string& key, const std::string& where,
                          bool required = true, uint64_t fallback = 0) {
  auto it = obj.fields.find(key);
  if (it == obj.fields.end()) {
    if (!required) return fallback;
    return InvalidArgument(where + ": missing field \"" + key + "\"");
  }
  const JsonValue& v = it->second;
  const std::string bad = where + ": field \"" + key + "\" at byte " + std::to_string(v.offset) +
                          " must be a non-negative integer";
  if (v.kind != JsonValue::Kind::kNumber || v.text.empty() || v.text[0] == '-' ||
      v.text.find_first_of(".eE") != std::string::npos || v.text.size() > 19)
    return InvalidArgument(bad);
  return std::stoull(v.text);
}

Status check_dim(uint64_t value, const char* field, uint64_t max, const std::string& where) {
  if (value == 0 || value > max)
    return InvalidArgument(where + ": field \"" + field + "\" is " + std::to_string(value) +
                           ", must be in [1, " + std::to_string(max) + "]");
  return Status::Ok();
}

Status check_sequences(const std::vector<TraceSequence>& seqs, uint64_t steps,
                       const std::string& where) {
  for (size_t i = 0; i < seqs.size(); ++i) {
    const TraceSequence& s = seqs[i];
    if (s.offset > steps || s.n_tokens > steps - s.offset)
      return InvalidArgument(where + ": sequence " + std::to_string(i) + " (offset " +
                             std::to_string(s.offset) + ", n_tokens " + std::to_string(s.n_tokens) +
                             ") runs past the " + std::to_string(steps) + " steps");
  }
  return Status::Ok();
}

struct ParsedHeader {
  TraceShape shape;
  std::vector<TraceSequence> sequences;
};

Result<ParsedHeader> parse_header(const std::string& path) {
  auto text = read_small_file(path, kMaxJsonBytes);
  if (!text.ok()) return text.status();
  auto doc = JsonParser(*text, path).parse_document();
  if (!doc.ok()) return doc.status();
  if (doc->kind != JsonValue::Kind::kObject)
    return InvalidArgument(path + ": top level must be a JSON object");

  ParsedHeader h;
  auto layers = get_uint(*doc, "layers", path);
  if (!layers.ok()) return layers.status();
  auto experts = get_uint(*doc, "experts", path);
  if (!experts.ok()) return experts.status();
  auto top_k = get_uint(*doc, "top_k", path);
  if (!top_k.ok()) return top_k.status();
  // The step count is "tokens" in the published files; "steps" is accepted too.
  const char* steps_key = doc->fields.count("tokens") ? "tokens" : "steps";
  auto steps = get_uint(*doc, steps_key, path);
  if (!steps.ok()) return InvalidArgument(path + ": missing field \"tokens\" (the step count)");
  MOEPOOL_RETURN_IF_ERROR(check_dim(*layers, "layers", 65536, path));
  MOEPOOL_RETURN_IF_ERROR(check_dim(*experts, "experts", kTraceMaxExperts, path));
  MOEPOOL_RETURN_IF_ERROR(check_dim(*top_k, "top_k", *experts, path));
  MOEPOOL_RETURN_IF_ERROR(check_dim(*steps, steps_key, uint64_t{1} << 40, path));
  h.shape = {static_cast<uint32_t>(*layers), static_cast<uint32_t>(*experts),
             static_cast<uint32_t>(*top_k), *steps};

  auto seqs = doc->fields.find("sequences");
  if (seqs != doc->fields.end()) {
    if (seqs->second.kind != JsonValue::Kind::kArray)
      return InvalidArgument(path + ": field \"sequences\" must be an array");
    for (size_t i = 0; i < seqs->second.items.size(); ++i) {
      const JsonValue& item = seqs->second.items[i];
      std::string where = path + ": sequences[" + std::to_string(i) + "]";
      if (item.kind != JsonValue::Kind::kObject)
        return InvalidArgument(where + " must be an object");
      TraceSequence s;
      auto off = get_uint(item, "offset", where);
      if (!off.ok()) return off.status();
      auto n = get_uint(item, "n_tokens", where);
      if (!n.ok()) return n.status();
      s.offset = *off;
      s.n_tokens = *n;
      auto ds = item.fields.find("dataset");
      if (ds != item.fields.end() && ds->second.kind == JsonValue::Kind::kString)
        s.dataset = ds->second.text;
      h.sequences.push_back(std::move(s));
    }
  }
  MOEPOOL_RETURN_IF_ERROR(check_sequences(h.sequences, h.shape.steps, path));
  return h;
}

// Returns the first id that is out of range as an error naming step, layer and slot.
Status check_ids(const std::vector<uint8_t>& ids, const TraceShape& shape,
                 const std::string& where) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < shape.experts) continue;
    size_t per_step = size_t{shape.layers} * shape.top_k;
    return InvalidArgument(where + ": expert id " + std::to_string(ids[i]) + " at step " +
                           std::to_string(i / per_step) + ", layer " +
                           std::to_string((i % per_step) / shape.top_k) + ", slot " +
                           std::to_string(i % shape.top_k) +
                           " is not below experts=" + std::to_string(shape.experts));
  }
  return Status::Ok();
}

std::string base_name(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

Result<std::vector<uint8_t>> read_zstd_file(const std::string& path, uint64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + path, errno);
  std::unique_ptr<ZSTD_DStream, size_t (*)(ZSTD_DStream*)> ds(ZSTD_createDStream(),
                                                              ZSTD_freeDStream);
  if (!ds) {
    ::close(fd);
    return Internal(path + ": cannot allocate a zstd stream");
  }
  std::vector<uint8_t> in(ZSTD_DStreamInSize());
  std::vector<uint8_t> out;
  std::vector<uint8_t> chunk(ZSTD_DStreamOutSize());
  uint64_t compressed = 0;
  size_t last_ret = 0;
  Status failure;
  for (bool done = false; !done && failure.ok();) {
    ssize_t n = ::read(fd, in.data(), in.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      failure = Status::FromErrno("read " + path, errno);
      break;
    }
    if (n == 0) {
      done = true;
      break;
    }
    ZSTD_inBuffer ib{in.data(), static_cast<size_t>(n), 0};
    while (ib.pos < ib.size) {
      ZSTD_outBuffer ob{chunk.data(), chunk.size(), 0};
      size_t ret = ZSTD_decompressStream(ds.get(), &ob, &ib);
      if (ZSTD_isError(ret)) {
        failure =
            InvalidArgument(path + ": corrupt zstd data near compressed byte " +
                            std::to_string(compressed + ib.pos) + ": " + ZSTD_getErrorName(ret));
        break;
      }
      last_ret = ret;
      if (out.size() + ob.pos > max_bytes) {
        failure = InvalidArgument(path + ": decompresses to more than the " +
                                  std::to_string(max_bytes) + " bytes the shape allows");
        break;
      }
      out.insert(out.end(), chunk.data(), chunk.data() + ob.pos);
    }
    compressed += static_cast<uint64_t>(n);
  }
  ::close(fd);
  if (!failure.ok()) return failure;
  if (compressed == 0) return InvalidArgument(path + ": empty file");
  if (last_ret != 0)
    return InvalidArgument(path + ": truncated zstd data (the last frame is incomplete)");
  return out;
}

float f16_to_float(uint16_t h) {
  int sign = (h >> 15) & 1;
  int exp = (h >> 10) & 0x1F;
  int mant = h & 0x3FF;
  float v;
  if (exp == 0)
    v = std::ldexp(static_cast<float>(mant), -24);
  else if (exp == 31)
    v = mant ? NAN : INFINITY;
  else
    v = std::ldexp(static_cast<float>(mant | 0x400), exp - 25);
  return sign ? -v : v;
}

Result<Trace> Trace::from_ids(std::string name, TraceShape shape,
                              std::vector<TraceSequence> sequences, std::vector<uint8_t> ids) {
  MOEPOOL_RETURN_IF_ERROR(check_dim(shape.layers, "layers", 65536, name));
  MOEPOOL_RETURN_IF_ERROR(check_dim(shape.experts, "experts", kTraceMaxExperts, name));
  MOEPOOL_RETURN_IF_ERROR(check_dim(shape.top_k, "top_k", shape.experts, name));
  MOEPOOL_RETURN_IF_ERROR(check_dim(shape.steps, "steps", uint64_t{1} << 40, name));
  uint64_t want = shape.steps * shape.layers * shape.top_k;
  if (ids.size() != want)
    return InvalidArgument(
        name + ": " + std::to_string(ids.size()) +
        " expert ids, the shape needs steps*layers*top_k = " + std::to_string(want));
  MOEPOOL_RETURN_IF_ERROR(check_ids(ids, shape, name));
  if (sequences.empty()) sequences.push_back({0, shape.steps, ""});
  MOEPOOL_RETURN_IF_ERROR(check_sequences(sequences, shape.steps, name));
  Trace t;
  t.name_ = std::move(name);
  t.shape_ = shape;
  t.sequences_ = std::move(sequences);
  t.ids_ = std::move(ids);
  return t;
}

Result<Trace> Trace::load(const std::string& prefix, bool with_weights) {
  auto header = parse_header(prefix + ".json");
  if (!header.ok()) return header.status();
  const TraceShape& shape = header->shape;
  const uint64_t n = shape.steps * shape.layers * shape.top_k;

  const std::string experts_path = prefix + ".experts.u8.zst";
  auto ids = read_zstd_file(experts_path, n);
  if (!ids.ok()) return ids.status();
  if (ids->size() != n)
    return InvalidArgument(experts_path + ": decompressed to " + std::to_string(ids->size()) +
                           " bytes, but " + prefix + ".json says tokens*layers*top_k = " +
                           std::to_string(shape.steps) + "*" + std::to_string(shape.layers) + "*" +
                           std::to_string(shape.top_k) + " = " + std::to_string(n));
  MOEPOOL_RETURN_IF_ERROR(check_ids(*ids, shape, experts_path));

  auto trace = from_ids(base_name(prefix), shape, std::move(header->sequences), std::move(*ids));
  if (!trace.ok()) return trace.status();
  if (with_weights) {
    const std::string weights_path = prefix + ".weights.f16.zst";
    auto raw = read_zstd_file(weights_path, n * 2);
    if (!raw.ok()) return raw.status();
    if (raw->size() != n * 2)
      return InvalidArgument(weights_path + ": decompressed to " + std::to_string(raw->size()) +
                             " bytes, the shape needs " + std::to_string(n * 2));
    trace->weights_.resize(n);
    for (uint64_t i = 0; i < n; ++i)
      trace->weights_[i] = static_cast<uint16_t>((*raw)[2 * i] | ((*raw)[2 * i + 1] << 8));
  }
  return trace;
}

}  // namespace moepool
