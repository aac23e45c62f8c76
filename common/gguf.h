// A strict GGUF v2/v3 reader: the header (metadata key/values and tensor infos) of one
// file, every count, length and offset bounds- and overflow-checked. A malformed file is
// a kInvalidArgument Status naming the file, the field and its byte offset, e.g.
//   "m.gguf: tensor_info[3].ne[1] at byte 1234: element count overflows".
// Only the header is read (pread in growing chunks), never the tensor data section.
// Thread safety: a GgufFile is immutable after parse; any thread may read it.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/ggml_types.h"
#include "common/status.h"

namespace moepool {

// GGUF value type tags, as stored in the file (gguf_type in ggml's gguf.h).
enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
// Returns "u8", "string", "array", ... or "?" for an unknown tag.
const char* gguf_type_name(GgufType type);
// Returns the byte size of a fixed-size type, 0 for string, array and unknown tags.
uint32_t gguf_type_size(GgufType type);

// An array value, stored compactly: fixed-size elements as raw little-endian bytes,
// strings as one blob plus end offsets, nested arrays as GgufArrays.
class GgufArray {
 public:
  GgufType elem_type() const { return elem_type_; }
  uint64_t size() const { return count_; }
  // Returns element `i` of a fixed-size array as T; T must match elem_type().
  template <typename T>
  T at(uint64_t i) const {
    T v;
    std::memcpy(&v, raw_.data() + i * sizeof(T), sizeof(T));
    return v;
  }
  // Returns element `i` of a string array.
  std::string_view string_at(uint64_t i) const {
    uint64_t begin = i == 0 ? 0 : string_ends_[i - 1];
    return std::string_view(blob_).substr(begin, string_ends_[i] - begin);
  }
  // Returns element `i` of an array of arrays.
  const GgufArray& array_at(uint64_t i) const { return arrays_[i]; }

 private:
  friend class GgufParser;
  GgufType elem_type_ = GgufType::kU8;
  uint64_t count_ = 0;
  std::vector<uint8_t> raw_;
  std::string blob_;
  std::vector<uint64_t> string_ends_;
  std::vector<GgufArray> arrays_;
};

// One metadata value; the variant index equals the GgufType tag.
using GgufValue = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                               std::string, GgufArray, uint64_t, int64_t, double>;
inline GgufType gguf_value_type(const GgufValue& v) { return static_cast<GgufType>(v.index()); }

struct GgufKv {
  std::string key;
  GgufValue value;
  uint64_t offset = 0;  // byte offset of the key/value in the file
};

struct GgufTensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  uint64_t ne[4] = {1, 1, 1, 1};  // ne[0] innermost; dims past n_dims are 1
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;       // relative to the data section, as stored
  uint64_t data_offset = 0;  // absolute file offset of the first byte
  uint64_t bytes = 0;        // byte size of the data
  uint64_t info_offset = 0;  // byte offset of this tensor info in the file
};

class GgufFile {
 public:
  // Parses the header of the file at `path`, reading it with pread in growing chunks.
  static Result<GgufFile> open(const std::string& path);
  // Parses a header held in memory. `name` prefixes error messages. `file_size` is the
  // size of the whole file when `bytes` holds only its beginning (default: bytes.size()).
  static Result<GgufFile> parse(std::span<const uint8_t> bytes,
                                const std::string& name = "<memory>",
                                std::optional<uint64_t> file_size = std::nullopt);

  const std::string& name() const { return name_; }  // the path or the given name
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return file_size_; }
  uint32_t alignment() const { return alignment_; }
  // Start of the tensor data section: the header's byte size, padding included.
  uint64_t data_offset() const { return data_offset_; }
  // The header bytes [0, data_offset()).
  const std::vector<uint8_t>& header_bytes() const { return header_; }

  // Metadata in file order.
  const std::vector<GgufKv>& kvs() const { return kvs_; }
  // Returns the value of `key`, or nullptr if there is none.
  const GgufValue* find(std::string_view key) const;
  // Each returns the value if `key` exists with exactly that type, else nullopt.
  std::optional<uint8_t> get_u8(std::string_view key) const { return get<uint8_t>(key); }
  std::optional<int8_t> get_i8(std::string_view key) const { return get<int8_t>(key); }
  std::optional<uint16_t> get_u16(std::string_view key) const { return get<uint16_t>(key); }
  std::optional<int16_t> get_i16(std::string_view key) const { return get<int16_t>(key); }
  std::optional<uint32_t> get_u32(std::string_view key) const { return get<uint32_t>(key); }
  std::optional<int32_t> get_i32(std::string_view key) const { return get<int32_t>(key); }
  std::optional<uint64_t> get_u64(std::string_view key) const { return get<uint64_t>(key); }
  std::optional<int64_t> get_i64(std::string_view key) const { return get<int64_t>(key); }
  std::optional<float> get_f32(std::string_view key) const { return get<float>(key); }
  std::optional<double> get_f64(std::string_view key) const { return get<double>(key); }
  std::optional<bool> get_bool(std::string_view key) const { return get<bool>(key); }
  std::optional<std::string> get_string(std::string_view key) const {
    return get<std::string>(key);
  }
  // Returns the array at `key`, or nullptr if absent or not an array.
  const GgufArray* get_array(std::string_view key) const;
  // Returns an integer of any width and signedness as uint64 if it is >= 0, else nullopt.
  std::optional<uint64_t> get_uint(std::string_view key) const;

  // Tensor infos in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  // Returns the tensor named `name`, or nullptr.
  const GgufTensorInfo* find_tensor(std::string_view name) const;

 private:
  friend class GgufParser;
  template <typename T>
  std::optional<T> get(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr || !std::holds_alternative<T>(*v)) return std::nullopt;
    return std::get<T>(*v);
  }

  std::string name_;
  uint32_t version_ = 0;
  uint64_t file_size_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<uint8_t> header_;
  std::vector<GgufKv> kvs_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace moepool
