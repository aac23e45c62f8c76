#include "common/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <type_traits>

namespace moepool {
namespace {

// GGUF value type tags (gguf_type in ggml's gguf.h).
constexpr uint32_t kTagU8 = 0, kTagU16 = 2, kTagI32 = 5, kTagF32 = 6, kTagBool = 7, kTagString = 8,
                   kTagArray = 9, kTagU32 = 4, kTagU64 = 10;
constexpr size_t kChunkBytes = size_t{1} << 20;
constexpr uint64_t kSaturated = std::numeric_limits<uint64_t>::max();

void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

// GGUF is little-endian; so is every host moepool targets.
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  put_bytes(out, &v, sizeof(v));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  put_bytes(out, s.data(), s.size());
}

uint64_t align_up(uint64_t v, uint64_t a) {
  if (a == 0) return v;
  uint64_t r = v % a;
  if (r == 0) return v;
  uint64_t pad = a - r;
  return v > kSaturated - pad ? kSaturated : v + pad;
}

uint64_t sat_add(uint64_t a, uint64_t b) { return a > kSaturated - b ? kSaturated : a + b; }

uint64_t sat_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? kSaturated : r;
}

// Bytes of a tensor; best effort for shapes the reader would reject (a partial block
// rounds up, an unknown type counts 0 bytes), so tests can write broken files.
uint64_t tensor_size(GgmlType type, const std::vector<uint64_t>& ne) {
  auto t = ggml_type_traits(static_cast<uint32_t>(type));
  if (!t) return 0;
  uint64_t ne0 = ne.empty() ? 1 : ne[0];
  uint64_t blocks = ne0 / t->block_size + (ne0 % t->block_size != 0 ? 1 : 0);
  uint64_t bytes = sat_mul(blocks, t->type_size);
  for (size_t i = 1; i < ne.size(); ++i) bytes = sat_mul(bytes, ne[i]);
  return bytes;
}

Status write_all(int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write " + path, errno);
    }
    if (w == 0) return Unavailable("write " + path + ": wrote 0 bytes");
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

}  // namespace

GgufWriter::GgufWriter(uint32_t version, uint32_t alignment)
    : version_(version), alignment_(alignment) {}

void GgufWriter::add_u8(const std::string& key, uint8_t v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagU8);
  put(kv.encoded, v);
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_u16(const std::string& key, uint16_t v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagU16);
  put(kv.encoded, v);
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_u32(const std::string& key, uint32_t v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagU32);
  put(kv.encoded, v);
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_i32(const std::string& key, int32_t v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagI32);
  put(kv.encoded, v);
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_u64(const std::string& key, uint64_t v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagU64);
  put(kv.encoded, v);
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_f32(const std::string& key, float v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagF32);
  put(kv.encoded, v);
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_bool(const std::string& key, bool v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagBool);
  put<uint8_t>(kv.encoded, v ? 1 : 0);
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_string(const std::string& key, const std::string& v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagString);
  put_string(kv.encoded, v);
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagArray);
  put(kv.encoded, kTagString);
  put<uint64_t>(kv.encoded, v.size());
  for (const auto& s : v) put_string(kv.encoded, s);
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagArray);
  put(kv.encoded, kTagI32);
  put<uint64_t>(kv.encoded, v.size());
  put_bytes(kv.encoded, v.data(), v.size() * sizeof(int32_t));
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_f32_array(const std::string& key, const std::vector<float>& v) {
  Kv kv{key, {}};
  put(kv.encoded, kTagArray);
  put(kv.encoded, kTagF32);
  put<uint64_t>(kv.encoded, v.size());
  put_bytes(kv.encoded, v.data(), v.size() * sizeof(float));
  kvs_.push_back(std::move(kv));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> ne,
                            Fill fill) {
  uint64_t bytes = tensor_size(type, ne);
  uint64_t rel = 0;
  if (!tensors_.empty()) {
    const Tensor& last = tensors_.back();
    rel = align_up(sat_add(last.rel_offset, last.bytes), alignment_);
  }
  tensors_.push_back({name, type, std::move(ne), bytes, rel, std::move(fill)});
}

std::vector<uint8_t> GgufWriter::header_bytes() const {
  std::vector<uint8_t> out;
  put_bytes(out, "GGUF", 4);
  put(out, version_);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kvs_.size());
  for (const auto& kv : kvs_) {
    put_string(out, kv.key);
    put_bytes(out, kv.encoded.data(), kv.encoded.size());
  }
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t n : t.ne) put(out, n);
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put(out, t.rel_offset);
  }
  out.resize(align_up(out.size(), alignment_), 0);
  return out;
}

uint64_t GgufWriter::data_offset() const {
  uint64_t n = 4 + 4 + 8 + 8;
  for (const auto& kv : kvs_) n += 8 + kv.key.size() + kv.encoded.size();
  for (const auto& t : tensors_) n += 8 + t.name.size() + 4 + 8 * t.ne.size() + 4 + 8;
  return align_up(n, alignment_);
}

uint64_t GgufWriter::tensor_offset(size_t index) const {
  return sat_add(data_offset(), tensors_.at(index).rel_offset);
}

uint64_t GgufWriter::tensor_bytes(size_t index) const { return tensors_.at(index).bytes; }

uint64_t GgufWriter::file_size() const {
  if (tensors_.empty()) return data_offset();
  const Tensor& last = tensors_.back();
  return sat_add(data_offset(), align_up(sat_add(last.rel_offset, last.bytes), alignment_));
}

Status GgufWriter::write(const std::string& path) const {
  if (file_size() == kSaturated) return InvalidArgument("gguf write " + path + ": size overflows");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("open " + path, errno);
  std::vector<uint8_t> header = header_bytes();
  Status st = write_all(fd, header.data(), header.size(), path);
  uint64_t pos = header.size();
  std::vector<uint8_t> buf;
  for (size_t i = 0; st.ok() && i <= tensors_.size(); ++i) {
    // Zero padding up to this tensor's start (or up to the aligned end of the file).
    uint64_t target = i < tensors_.size() ? tensor_offset(i) : file_size();
    buf.assign(std::min<uint64_t>(kChunkBytes, target - pos), 0);
    while (st.ok() && pos < target) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), target - pos));
      st = write_all(fd, buf.data(), n, path);
      pos += n;
    }
    if (i == tensors_.size()) break;
    const Tensor& t = tensors_[i];
    buf.resize(static_cast<size_t>(std::min<uint64_t>(kChunkBytes, t.bytes)));
    for (uint64_t done = 0; st.ok() && done < t.bytes;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), t.bytes - done));
      std::span<uint8_t> chunk(buf.data(), n);
      if (t.fill) {
        t.fill(done, chunk);
      } else {
        std::fill(chunk.begin(), chunk.end(), 0);
      }
      st = write_all(fd, chunk.data(), n, path);
      done += n;
      pos += n;
    }
  }
  if (::close(fd) != 0 && st.ok()) st = Status::FromErrno("close " + path, errno);
  return st;
}

}  // namespace moepool
