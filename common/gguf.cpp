#include "common/gguf.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <numeric>

namespace moepool {
namespace {

constexpr uint32_t kMaxDims = 4;
// Deepest array nesting accepted (an array of arrays is depth 2).
constexpr int kMaxArrayDepth = 8;
// Most nested arrays (arrays whose elements are arrays' elements) in one file.
constexpr uint64_t kMaxNestedArrays = uint64_t{1} << 20;
// A file header larger than this is refused (real tokenizers take a few MiB).
constexpr uint64_t kMaxHeaderBytes = uint64_t{256} << 20;
constexpr uint64_t kFirstChunk = 64 << 10;
// Smallest encodings, for rejecting counts the remaining bytes could not hold.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, u8 value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // empty name, n_dims=0, type, offset

std::string quoted(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 80) out += "...";
  return out + "'";
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::kU8:
      return "u8";
    case GgufType::kI8:
      return "i8";
    case GgufType::kU16:
      return "u16";
    case GgufType::kI16:
      return "i16";
    case GgufType::kU32:
      return "u32";
    case GgufType::kI32:
      return "i32";
    case GgufType::kF32:
      return "f32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kU64:
      return "u64";
    case GgufType::kI64:
      return "i64";
    case GgufType::kF64:
      return "f64";
  }
  return "?";
}

uint32_t gguf_type_size(GgufType type) {
  switch (type) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    default:
      return 0;
  }
}

// Parses one header from a file descriptor or a memory buffer.
// Thread safety: one thread per parser.
class GgufParser {
 public:
  GgufParser(std::string name, int fd, std::span<const uint8_t> mem, uint64_t file_size)
      : name_(std::move(name)), fd_(fd), file_size_(file_size) {
    if (fd_ < 0) {
      data_ = mem.data();
      avail_ = mem.size();
    }
  }

  Result<GgufFile> run();

 private:
  // Returns the error for `field`, at byte `at`, with the reason `what`.
  Status fail(const std::string& field, uint64_t at, const std::string& what) const {
    return InvalidArgument(name_ + ": " + field + " at byte " + std::to_string(at) + ": " + what);
  }
  uint64_t remaining() const { return file_size_ - pos_; }
  // Makes bytes [pos_, pos_ + n) readable; `field()` names what is being read.
  template <typename F>
  Status need(uint64_t n, F&& field) {
    if (n <= avail_ - pos_) return Status::Ok();
    if (n > remaining())
      return fail(field(), pos_,
                  "truncated: needs " + std::to_string(n) + " bytes, only " +
                      std::to_string(remaining()) + " left in the file");
    return fetch(pos_ + n, field());
  }
  Status fetch(uint64_t end, const std::string& field);
  template <typename T>
  T take() {
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  template <typename T, typename F>
  Status read(T* out, F&& field) {
    MOEPOOL_RETURN_IF_ERROR(need(sizeof(T), field));
    *out = take<T>();
    return Status::Ok();
  }
  // Reads a u64 length and that many bytes; `field()` names the string.
  template <typename F>
  Status read_string(std::string* out, F&& field);
  Status read_value(GgufType type, const std::string& field, int depth, GgufValue* out);
  Status read_array(const std::string& field, int depth, GgufArray* out);
  Status read_kvs(GgufFile* f, uint64_t kv_count);
  Status read_tensor_info(GgufFile* f, uint64_t i);
  Status check_tensors(GgufFile* f);

  std::string name_;
  int fd_;
  uint64_t file_size_;
  const uint8_t* data_ = nullptr;
  uint64_t avail_ = 0;  // bytes [0, avail_) are readable at data_
  std::vector<uint8_t> owned_;
  uint64_t pos_ = 0;
  uint64_t nested_arrays_ = 0;
};

Status GgufParser::fetch(uint64_t end, const std::string& field) {
  if (fd_ < 0)
    return fail(field, pos_, "header extends past the " + std::to_string(avail_) + " bytes given");
  if (end > kMaxHeaderBytes)
    return fail(field, pos_,
                "header larger than " + std::to_string(kMaxHeaderBytes >> 20) + " MiB");
  uint64_t want = std::max({end, avail_ * 2, kFirstChunk});
  want = std::min({want, file_size_, kMaxHeaderBytes});
  owned_.resize(want);
  while (avail_ < want) {
    ssize_t r = ::pread(fd_, owned_.data() + avail_, want - avail_, static_cast<off_t>(avail_));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read " + name_, errno);
    }
    if (r == 0)
      return Unavailable("read " + name_ + ": file shrank to " + std::to_string(avail_) +
                         " bytes while reading its header");
    avail_ += static_cast<uint64_t>(r);
  }
  data_ = owned_.data();
  return Status::Ok();
}

template <typename F>
Status GgufParser::read_string(std::string* out, F&& field) {
  uint64_t at = pos_;
  uint64_t len{};
  MOEPOOL_RETURN_IF_ERROR(read(&len, [&] { return field() + " length"; }));
  if (len > remaining())
    return fail(field() + " length", at,
                "string length " + std::to_string(len) + " exceeds the " +
                    std::to_string(remaining()) + " bytes left in the file");
  MOEPOOL_RETURN_IF_ERROR(need(len, field));
  out->assign(reinterpret_cast<const char*>(data_ + pos_), len);
  pos_ += len;
  return Status::Ok();
}

Status GgufParser::read_value(GgufType type, const std::string& field, int depth, GgufValue* out) {
  auto f = [&] { return field; };
  uint64_t at = pos_;
  switch (type) {
    case GgufType::kU8: {
      uint8_t v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      *out = v;
      break;
    }
    case GgufType::kI8: {
      int8_t v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      *out = v;
      break;
    }
    case GgufType::kU16: {
      uint16_t v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      *out = v;
      break;
    }
    case GgufType::kI16: {
      int16_t v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      *out = v;
      break;
    }
    case GgufType::kU32: {
      uint32_t v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      *out = v;
      break;
    }
    case GgufType::kI32: {
      int32_t v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      *out = v;
      break;
    }
    case GgufType::kF32: {
      float v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      *out = v;
      break;
    }
    case GgufType::kU64: {
      uint64_t v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      *out = v;
      break;
    }
    case GgufType::kI64: {
      int64_t v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      *out = v;
      break;
    }
    case GgufType::kF64: {
      double v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      *out = v;
      break;
    }
    case GgufType::kBool: {
      uint8_t v{};
      MOEPOOL_RETURN_IF_ERROR(read(&v, f));
      if (v > 1) return fail(field, at, "bool value " + std::to_string(v) + " is not 0 or 1");
      *out = v == 1;
      break;
    }
    case GgufType::kString: {
      std::string s;
      MOEPOOL_RETURN_IF_ERROR(read_string(&s, [&] { return field + " string"; }));
      *out = std::move(s);
      break;
    }
    case GgufType::kArray: {
      GgufArray a;
      MOEPOOL_RETURN_IF_ERROR(read_array(field, depth + 1, &a));
      *out = std::move(a);
      break;
    }
    default:
      return fail(field + " type", at,
                  "unknown value type " + std::to_string(static_cast<uint32_t>(type)));
  }
  return Status::Ok();
}

Status GgufParser::read_array(const std::string& field, int depth, GgufArray* out) {
  uint64_t at = pos_;
  uint32_t tag{};
  MOEPOOL_RETURN_IF_ERROR(read(&tag, [&] { return field + " array type"; }));
  GgufType type = static_cast<GgufType>(tag);
  if (tag > static_cast<uint32_t>(GgufType::kF64))
    return fail(field + " array type", at, "unknown element type " + std::to_string(tag));
  if (type == GgufType::kArray && depth >= kMaxArrayDepth)
    return fail(field + " array type", at,
                "arrays nested deeper than " + std::to_string(kMaxArrayDepth));
  at = pos_;
  uint64_t count{};
  MOEPOOL_RETURN_IF_ERROR(read(&count, [&] { return field + " array count"; }));
  uint64_t elem_min = type == GgufType::kString  ? 8
                      : type == GgufType::kArray ? 12
                                                 : gguf_type_size(type);
  if (count > remaining() / elem_min)
    return fail(field + " array count", at,
                std::to_string(count) + " " + gguf_type_name(type) +
                    " elements cannot fit in the " + std::to_string(remaining()) +
                    " bytes left in the file");
  out->elem_type_ = type;
  out->count_ = count;
  if (type == GgufType::kString) {
    out->string_ends_.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t len_at = pos_;
      auto name = [&] { return field + "[" + std::to_string(i) + "] string"; };
      uint64_t len{};
      MOEPOOL_RETURN_IF_ERROR(read(&len, [&] { return name() + " length"; }));
      if (len > remaining())
        return fail(name() + " length", len_at,
                    "string length " + std::to_string(len) + " exceeds the " +
                        std::to_string(remaining()) + " bytes left in the file");
      MOEPOOL_RETURN_IF_ERROR(need(len, name));
      out->blob_.append(reinterpret_cast<const char*>(data_ + pos_), len);
      pos_ += len;
      out->string_ends_.push_back(out->blob_.size());
    }
  } else if (type == GgufType::kArray) {
    nested_arrays_ += count;
    if (nested_arrays_ > kMaxNestedArrays)
      return fail(field + " array count", at,
                  "more than " + std::to_string(kMaxNestedArrays) + " nested arrays in the file");
    out->arrays_.resize(count);
    for (uint64_t i = 0; i < count; ++i)
      MOEPOOL_RETURN_IF_ERROR(
          read_array(field + "[" + std::to_string(i) + "]", depth + 1, &out->arrays_[i]));
  } else {
    uint64_t bytes = count * elem_min;  // cannot overflow: count <= remaining / elem_min
    MOEPOOL_RETURN_IF_ERROR(need(bytes, [&] { return field + " array data"; }));
    if (type == GgufType::kBool) {
      for (uint64_t i = 0; i < count; ++i)
        if (data_[pos_ + i] > 1)
          return fail(field + "[" + std::to_string(i) + "]", pos_ + i,
                      "bool value " + std::to_string(data_[pos_ + i]) + " is not 0 or 1");
    }
    out->raw_.assign(data_ + pos_, data_ + pos_ + bytes);
    pos_ += bytes;
  }
  return Status::Ok();
}

Status GgufParser::read_kvs(GgufFile* f, uint64_t kv_count) {
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string prefix = "kv[" + std::to_string(i) + "]";
    GgufKv kv;
    kv.offset = pos_;
    MOEPOOL_RETURN_IF_ERROR(read_string(&kv.key, [&] { return prefix + " key"; }));
    std::string field = prefix + " " + quoted(kv.key);
    uint64_t type_at = pos_;
    uint32_t tag{};
    MOEPOOL_RETURN_IF_ERROR(read(&tag, [&] { return field + " type"; }));
    if (tag > static_cast<uint32_t>(GgufType::kF64))
      return fail(field + " type", type_at, "unknown value type " + std::to_string(tag));
    MOEPOOL_RETURN_IF_ERROR(read_value(static_cast<GgufType>(tag), field, 0, &kv.value));
    auto [it, inserted] = f->kv_index_.emplace(kv.key, f->kvs_.size());
    if (!inserted)
      return fail(
          prefix + " key", kv.offset,
          "duplicate key " + quoted(kv.key) + " (first at kv[" + std::to_string(it->second) + "])");
    f->kvs_.push_back(std::move(kv));
  }
  // general.alignment: a nonzero power of two, stored as u32 (as ggml requires).
  auto it = f->kv_index_.find("general.alignment");
  if (it != f->kv_index_.end()) {
    const GgufKv& kv = f->kvs_[it->second];
    std::string field = "kv[" + std::to_string(it->second) + "] 'general.alignment'";
    const auto* a = std::get_if<uint32_t>(&kv.value);
    if (a == nullptr)
      return fail(field, kv.offset,
                  std::string("must be u32, is ") + gguf_type_name(gguf_value_type(kv.value)));
    if (*a == 0 || (*a & (*a - 1)) != 0)
      return fail(field, kv.offset,
                  "alignment " + std::to_string(*a) + " is not a nonzero power of two");
    f->alignment_ = *a;
  }
  return Status::Ok();
}

Status GgufParser::read_tensor_info(GgufFile* f, uint64_t i) {
  std::string prefix = "tensor_info[" + std::to_string(i) + "]";
  GgufTensorInfo t;
  t.info_offset = pos_;
  MOEPOOL_RETURN_IF_ERROR(read_string(&t.name, [&] { return prefix + ".name"; }));
  std::string which = " (tensor " + quoted(t.name) + ")";
  uint64_t at = pos_;
  MOEPOOL_RETURN_IF_ERROR(read(&t.n_dims, [&] { return prefix + ".n_dims"; }));
  if (t.n_dims > kMaxDims)
    return fail(
        prefix + ".n_dims", at,
        "n_dims " + std::to_string(t.n_dims) + " exceeds " + std::to_string(kMaxDims) + which);
  uint64_t ne_at[kMaxDims] = {pos_, pos_, pos_, pos_};
  uint64_t elements = 1;
  for (uint32_t d = 0; d < t.n_dims; ++d) {
    std::string field = prefix + ".ne[" + std::to_string(d) + "]";
    ne_at[d] = pos_;
    MOEPOOL_RETURN_IF_ERROR(read(&t.ne[d], [&] { return field; }));
    if (t.ne[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return fail(field, ne_at[d], "ne " + std::to_string(t.ne[d]) + " is negative" + which);
    if (__builtin_mul_overflow(elements, t.ne[d], &elements) ||
        elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return fail(field, ne_at[d], "element count overflows" + which);
  }
  at = pos_;
  uint32_t type_id{};
  MOEPOOL_RETURN_IF_ERROR(read(&type_id, [&] { return prefix + ".type"; }));
  auto traits = ggml_type_traits(type_id);
  if (!traits)
    return fail(prefix + ".type", at, "unknown ggml type id " + std::to_string(type_id) + which);
  t.type = traits->type;
  if (t.ne[0] % traits->block_size != 0)
    return fail(prefix + ".ne[0]", ne_at[0],
                "ne[0] " + std::to_string(t.ne[0]) + " is not a multiple of " +
                    std::string(traits->name) + "'s block size " +
                    std::to_string(traits->block_size) + which);
  std::optional<uint64_t> row = ggml_row_bytes(t.type, t.ne[0]);
  if (!row) return fail(prefix + ".ne[0]", ne_at[0], "byte size overflows" + which);
  uint64_t bytes = *row;
  for (uint32_t d = 1; d < kMaxDims; ++d)
    if (__builtin_mul_overflow(bytes, t.ne[d], &bytes))
      return fail(prefix + ".ne[" + std::to_string(d) + "]", ne_at[d],
                  "byte size overflows" + which);
  t.bytes = bytes;
  at = pos_;
  MOEPOOL_RETURN_IF_ERROR(read(&t.offset, [&] { return prefix + ".offset"; }));
  if (t.offset % f->alignment_ != 0)
    return fail(prefix + ".offset", at,
                "offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                    std::to_string(f->alignment_) + which);
  auto [it, inserted] = f->tensor_index_.emplace(t.name, f->tensors_.size());
  if (!inserted)
    return fail(prefix + ".name", t.info_offset,
                "duplicate tensor name " + quoted(t.name) + " (first at tensor_info[" +
                    std::to_string(it->second) + "])");
  f->tensors_.push_back(std::move(t));
  return Status::Ok();
}

// Checks every tensor's data lies inside the file and no two overlap.
Status GgufParser::check_tensors(GgufFile* f) {
  auto& ts = f->tensors_;
  // Where the offset field of tensor i sits: after its name, n_dims, ne[] and type.
  auto offset_at = [&](size_t i) {
    return ts[i].info_offset + 8 + ts[i].name.size() + 4 + 8 * ts[i].n_dims + 4;
  };
  for (size_t i = 0; i < ts.size(); ++i) {
    GgufTensorInfo& t = ts[i];
    uint64_t end;
    if (__builtin_add_overflow(f->data_offset_, t.offset, &t.data_offset) ||
        __builtin_add_overflow(t.data_offset, t.bytes, &end) || end > file_size_)
      return fail("tensor_info[" + std::to_string(i) + "].offset", offset_at(i),
                  "tensor " + quoted(t.name) + " data (offset " + std::to_string(t.offset) + ", " +
                      std::to_string(t.bytes) + " bytes) extends past the end of the file (" +
                      std::to_string(file_size_) + " bytes, data section at " +
                      std::to_string(f->data_offset_) + ")");
  }
  std::vector<size_t> order(ts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return ts[a].offset < ts[b].offset; });
  size_t prev = SIZE_MAX;  // the tensor with data ending last so far
  for (size_t i : order) {
    if (ts[i].bytes == 0) continue;
    if (prev != SIZE_MAX && ts[prev].offset + ts[prev].bytes > ts[i].offset)
      return fail("tensor_info[" + std::to_string(i) + "].offset", offset_at(i),
                  "tensor " + quoted(ts[i].name) + " data at offset " +
                      std::to_string(ts[i].offset) + " overlaps tensor " + quoted(ts[prev].name) +
                      " (tensor_info[" + std::to_string(prev) + "], offset " +
                      std::to_string(ts[prev].offset) + ", " + std::to_string(ts[prev].bytes) +
                      " bytes)");
    if (prev == SIZE_MAX || ts[i].offset + ts[i].bytes > ts[prev].offset + ts[prev].bytes) prev = i;
  }
  return Status::Ok();
}

Result<GgufFile> GgufParser::run() {
  GgufFile f;
  f.name_ = name_;
  f.file_size_ = file_size_;
  char magic[4];
  MOEPOOL_RETURN_IF_ERROR(need(4, [] { return std::string("magic"); }));
  std::memcpy(magic, data_, 4);
  if (std::memcmp(magic, "GGUF", 4) != 0) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "%02x %02x %02x %02x", static_cast<uint8_t>(magic[0]),
                  static_cast<uint8_t>(magic[1]), static_cast<uint8_t>(magic[2]),
                  static_cast<uint8_t>(magic[3]));
    return fail("magic", 0, std::string("not a GGUF file (magic bytes ") + hex + ")");
  }
  pos_ = 4;
  MOEPOOL_RETURN_IF_ERROR(read(&f.version_, [] { return std::string("version"); }));
  if (f.version_ != 2 && f.version_ != 3)
    return fail("version", 4,
                "unsupported GGUF version " + std::to_string(f.version_) + " (want 2 or 3)");
  uint64_t tensor_count = 0, kv_count = 0;
  MOEPOOL_RETURN_IF_ERROR(read(&tensor_count, [] { return std::string("tensor_count"); }));
  MOEPOOL_RETURN_IF_ERROR(read(&kv_count, [] { return std::string("kv_count"); }));
  if (tensor_count > remaining() / kMinTensorInfoBytes)
    return fail("tensor_count", 8,
                std::to_string(tensor_count) + " tensor infos cannot fit in the " +
                    std::to_string(remaining()) + " bytes left in the file");
  uint64_t left_for_kvs = remaining() - tensor_count * kMinTensorInfoBytes;
  if (kv_count > left_for_kvs / kMinKvBytes)
    return fail("kv_count", 16,
                std::to_string(kv_count) + " key/values cannot fit in the " +
                    std::to_string(left_for_kvs) + " bytes left in the file");
  MOEPOOL_RETURN_IF_ERROR(read_kvs(&f, kv_count));
  f.tensors_.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) MOEPOOL_RETURN_IF_ERROR(read_tensor_info(&f, i));
  uint64_t end_of_infos = pos_;
  f.data_offset_ = (end_of_infos + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (f.data_offset_ > file_size_)
    return fail("data section", end_of_infos,
                "aligned start " + std::to_string(f.data_offset_) +
                    " is past the end of the file (" + std::to_string(file_size_) + " bytes)");
  MOEPOOL_RETURN_IF_ERROR(check_tensors(&f));
  MOEPOOL_RETURN_IF_ERROR(need(f.data_offset_ - pos_, [] { return std::string("padding"); }));
  f.header_.assign(data_, data_ + f.data_offset_);
  return f;
}

Result<GgufFile> GgufFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Status s = Status::FromErrno("stat " + path, errno);
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument(path + ": not a regular file");
  }
  GgufParser parser(path, fd, {}, static_cast<uint64_t>(st.st_size));
  Result<GgufFile> r = parser.run();
  ::close(fd);
  return r;
}

Result<GgufFile> GgufFile::parse(std::span<const uint8_t> bytes, const std::string& name,
                                 std::optional<uint64_t> file_size) {
  uint64_t size = file_size.value_or(bytes.size());
  if (size < bytes.size()) bytes = bytes.first(static_cast<size_t>(size));
  GgufParser parser(name, -1, bytes, size);
  return parser.run();
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

const GgufArray* GgufFile::get_array(std::string_view key) const {
  const GgufValue* v = find(key);
  return v == nullptr ? nullptr : std::get_if<GgufArray>(v);
}

std::optional<uint64_t> GgufFile::get_uint(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  return std::visit(
      [](const auto& x) -> std::optional<uint64_t> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if constexpr (std::is_signed_v<T>)
            if (x < 0) return std::nullopt;
          return static_cast<uint64_t>(x);
        } else {
          return std::nullopt;
        }
      },
      *v);
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace moepool
