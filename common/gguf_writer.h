// Writes GGUF v3 (or v2) files: metadata key/values, tensor infos and tensor data, with
// data aligned to general.alignment (default 32). Tensor bytes come from a fill callback
// at write time, so files of many GiB stream through a small buffer.
// Used by moepool-synth and by tests that need good and deliberately broken files.
// Thread safety: one thread per writer.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/ggml_types.h"
#include "common/status.h"

namespace moepool {

class GgufWriter {
 public:
  // Fills `out` with the tensor's bytes starting at byte `offset` inside the tensor.
  using Fill = std::function<void(uint64_t offset, std::span<uint8_t> out)>;

  explicit GgufWriter(uint32_t version = 3, uint32_t alignment = 32);

  void add_u8(const std::string& key, uint8_t v);
  void add_u16(const std::string& key, uint16_t v);
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);

  // Adds a tensor of shape `ne` (ne[0] innermost); its byte size follows from type and
  // shape. Tensors are laid out in the order added.
  void add_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> ne, Fill fill);

  // Size of everything before the data section, padding included.
  uint64_t data_offset() const;
  // Absolute file offset of tensor `index` (order of add_tensor).
  uint64_t tensor_offset(size_t index) const;
  // Bytes of tensor `index`.
  uint64_t tensor_bytes(size_t index) const;
  // Total file size.
  uint64_t file_size() const;

  // Writes the file (truncating an existing one).
  Status write(const std::string& path) const;
  // Returns the header bytes [0, data_offset()) — for tests that corrupt them.
  std::vector<uint8_t> header_bytes() const;

 private:
  struct Kv { std::string key; std::vector<uint8_t> encoded; };  // type tag + value
  struct Tensor { std::string name; GgmlType type; std::vector<uint64_t> ne; uint64_t bytes; uint64_t rel_offset; Fill fill; };
  uint32_t version_, alignment_;
  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace moepool
