// Tests of the strict GGUF reader and the GGUF writer: round trips of every type and
// value kind, every malformed-header case naming its field, and no crash on any input.
#include "tests/unit/temp_dir.h"
#include "common/gguf.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/gguf_writer.h"

namespace moepool {
namespace {


// Little-endian byte assembly for hand-made headers.
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& header(uint32_t version, uint64_t tensors, uint64_t kvs) {
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    return put(version).put(tensors).put(kvs);
  }
  Bytes& pad(size_t alignment) {
    b.resize((b.size() + alignment - 1) / alignment * alignment, 0);
    return *this;
  }
};

template <typename T>
void poke(std::vector<uint8_t>& b, uint64_t at, T v) {
  ASSERT_LE(at + sizeof(T), b.size());
  std::memcpy(b.data() + at, &v, sizeof(T));
}

Result<GgufFile> parse(const std::vector<uint8_t>& b, std::optional<uint64_t> size = {}) {
  return GgufFile::parse(b, "test.gguf", size);
}

// Expects `r` to be an invalid-argument error whose message names `field`.
#define EXPECT_GGUF_ERROR(r, field)                                                           \
  do {                                                                                        \
    auto&& _r = (r);                                                                          \
    ASSERT_FALSE(_r.ok()) << "expected an error naming " << (field);                          \
    EXPECT_EQ(_r.status().code(), Code::kInvalidArgument) << _r.status().to_string();         \
    EXPECT_NE(_r.status().message().find(field), std::string::npos) << _r.status().message(); \
    EXPECT_EQ(_r.status().message().rfind("test.gguf: ", 0), 0u) << _r.status().message();    \
  } while (0)

uint8_t pattern(uint64_t tensor, uint64_t off) {
  return static_cast<uint8_t>((off * 131 + tensor * 7 + (off >> 9)) & 0xff);
}

// A small valid model: a few KVs, two tensors.
GgufWriter small_writer() {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("general.name", "tiny");
  w.add_u32("llama.block_count", 2);
  w.add_string_array("tokenizer.ggml.tokens", {"a", "bb", "ccc"});
  w.add_tensor("a", GgmlType::Q4_K, {256, 4}, nullptr);
  w.add_tensor("b", GgmlType::F32, {8, 2, 3}, nullptr);
  return w;
}

// Byte offset of each field of tensor info `i` in a parsed header.
struct InfoFields {
  uint64_t name_len, n_dims, ne[4], type, offset;
};
InfoFields info_fields(const GgufTensorInfo& t) {
  InfoFields f;
  f.name_len = t.info_offset;
  f.n_dims = t.info_offset + 8 + t.name.size();
  for (uint32_t d = 0; d < 4; ++d) f.ne[d] = f.n_dims + 4 + 8 * d;
  f.type = f.n_dims + 4 + 8 * t.n_dims;
  f.offset = f.type + 4;
  return f;
}

TEST(Gguf, EveryTypeRoundTrips) {
  TempDir dir;
  size_t n = 0;
  const GgmlTypeTraits* all = ggml_all_types(&n);
  for (uint32_t version : {2u, 3u}) {
    GgufWriter w(version);
    w.add_string("general.architecture", "test");
    for (size_t i = 0; i < n; ++i) {
      const auto& t = all[i];
      std::vector<uint64_t> ne = {uint64_t{t.block_size} * 2, 3, 1 + i % 4};
      if (i % 3 == 1) ne.push_back(2);
      if (i % 5 == 2) ne = {t.block_size};
      w.add_tensor(std::string("t.") + std::string(t.name), t.type, ne,
                   [i](uint64_t off, std::span<uint8_t> out) {
                     for (size_t k = 0; k < out.size(); ++k) out[k] = pattern(i, off + k);
                   });
    }
    std::string path = dir.file("all_v" + std::to_string(version) + ".gguf");
    ASSERT_TRUE(w.write(path).ok());
    ASSERT_EQ(std::filesystem::file_size(path), w.file_size());
    auto r = GgufFile::open(path);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    const GgufFile& f = *r;
    EXPECT_EQ(f.version(), version);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.data_offset(), w.data_offset());
    EXPECT_EQ(f.data_offset() % 32, 0u);
    EXPECT_EQ(f.header_bytes(), w.header_bytes());
    EXPECT_EQ(f.get_string("general.architecture"), "test");
    ASSERT_EQ(f.tensors().size(), n);
    int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    for (size_t i = 0; i < n; ++i) {
      const GgufTensorInfo& t = f.tensors()[i];
      EXPECT_EQ(t.name, std::string("t.") + std::string(all[i].name));
      EXPECT_EQ(t.type, all[i].type);
      EXPECT_EQ(f.find_tensor(t.name), &t);
      uint64_t ne0 = i % 5 == 2 ? all[i].block_size : uint64_t{all[i].block_size} * 2;
      uint64_t ne1 = i % 5 == 2 ? 1 : 3, ne2 = i % 5 == 2 ? 1 : 1 + i % 4;
      uint64_t ne3 = i % 5 != 2 && i % 3 == 1 ? 2 : 1;
      EXPECT_EQ(t.n_dims, i % 5 == 2 ? 1u : (i % 3 == 1 ? 4u : 3u));
      EXPECT_EQ(t.ne[0], ne0);
      EXPECT_EQ(t.ne[1], ne1);
      EXPECT_EQ(t.ne[2], ne2);
      EXPECT_EQ(t.ne[3], ne3);
      EXPECT_EQ(t.bytes, ne0 / all[i].block_size * all[i].type_size * ne1 * ne2 * ne3);
      EXPECT_EQ(t.bytes, w.tensor_bytes(i));
      EXPECT_EQ(t.data_offset, w.tensor_offset(i));
      EXPECT_EQ(t.data_offset, f.data_offset() + t.offset);
      EXPECT_EQ(t.offset % 32, 0u);
      // The writer streamed the fill pattern to exactly that range.
      std::vector<uint8_t> got(t.bytes);
      ASSERT_EQ(::pread(fd, got.data(), got.size(), static_cast<off_t>(t.data_offset)),
                static_cast<ssize_t>(got.size()));
      for (size_t k = 0; k < got.size(); ++k)
        ASSERT_EQ(got[k], pattern(i, k)) << t.name << " " << k;
    }
    ::close(fd);
  }
}

TEST(Gguf, WriterStreamsLargeTensorsInChunks) {
  TempDir dir;
  GgufWriter w(3, 64);
  w.add_u32("general.alignment", 64);
  std::vector<uint64_t> calls;
  w.add_tensor("big", GgmlType::I8, {(3u << 20) + 5}, [&](uint64_t off, std::span<uint8_t> out) {
    calls.push_back(off);
    EXPECT_LE(out.size(), size_t{1} << 20);
    for (size_t k = 0; k < out.size(); ++k) out[k] = pattern(0, off + k);
  });
  w.add_tensor("small", GgmlType::F16, {3}, nullptr);
  std::string path = dir.file("big.gguf");
  ASSERT_TRUE(w.write(path).ok());
  EXPECT_EQ(calls.size(), 4u);
  auto r = GgufFile::open(path);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->alignment(), 64u);
  EXPECT_EQ(r->tensors()[1].data_offset % 64, 0u);
  EXPECT_EQ(r->tensors()[1].data_offset, w.tensor_offset(1));
  EXPECT_EQ(r->file_size(), w.file_size());
}

TEST(Gguf, AllValueTypesAndNestedArrays) {
  Bytes b;
  b.header(3, 0, 16);
  b.str("u8").put<uint32_t>(0).put<uint8_t>(200);
  b.str("i8").put<uint32_t>(1).put<int8_t>(-5);
  b.str("u16").put<uint32_t>(2).put<uint16_t>(60000);
  b.str("i16").put<uint32_t>(3).put<int16_t>(-300);
  b.str("u32").put<uint32_t>(4).put<uint32_t>(4000000000u);
  b.str("i32").put<uint32_t>(5).put<int32_t>(-7);
  b.str("f32").put<uint32_t>(6).put<float>(1.5f);
  b.str("bool").put<uint32_t>(7).put<uint8_t>(1);
  b.str("string").put<uint32_t>(8).str("hello");
  b.str("u64").put<uint32_t>(10).put<uint64_t>(uint64_t{1} << 40);
  b.str("i64").put<uint32_t>(11).put<int64_t>(-(int64_t{1} << 40));
  b.str("f64").put<uint32_t>(12).put<double>(2.25);
  b.str("arr_u8").put<uint32_t>(9).put<uint32_t>(0).put<uint64_t>(3);
  b.put<uint8_t>(1).put<uint8_t>(2).put<uint8_t>(3);
  b.str("arr_str").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(3).str("x").str("").str("zz");
  // [[1, 2], [], [[true]]] as arrays of (i16, f64, array of bool)
  b.str("nested").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(3);
  b.put<uint32_t>(3).put<uint64_t>(2).put<int16_t>(1).put<int16_t>(2);
  b.put<uint32_t>(12).put<uint64_t>(0);
  b.put<uint32_t>(9).put<uint64_t>(1).put<uint32_t>(7).put<uint64_t>(1).put<uint8_t>(1);
  b.str("general.alignment").put<uint32_t>(4).put<uint32_t>(16);
  b.pad(16);
  auto r = parse(b.b);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const GgufFile& f = *r;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 16u);
  EXPECT_EQ(f.data_offset(), b.b.size());
  EXPECT_EQ(f.kvs().size(), 16u);
  EXPECT_EQ(f.get_u8("u8"), 200);
  EXPECT_EQ(f.get_i8("i8"), -5);
  EXPECT_EQ(f.get_u16("u16"), 60000);
  EXPECT_EQ(f.get_i16("i16"), -300);
  EXPECT_EQ(f.get_u32("u32"), 4000000000u);
  EXPECT_EQ(f.get_i32("i32"), -7);
  EXPECT_EQ(f.get_f32("f32"), 1.5f);
  EXPECT_EQ(f.get_bool("bool"), true);
  EXPECT_EQ(f.get_string("string"), "hello");
  EXPECT_EQ(f.get_u64("u64"), uint64_t{1} << 40);
  EXPECT_EQ(f.get_i64("i64"), -(int64_t{1} << 40));
  EXPECT_EQ(f.get_f64("f64"), 2.25);
  // Typed getters are exact; get_uint widens non-negative integers.
  EXPECT_FALSE(f.get_u32("u8"));
  EXPECT_FALSE(f.get_string("u8"));
  EXPECT_FALSE(f.get_u32("missing"));
  EXPECT_EQ(f.get_uint("u16"), 60000u);
  EXPECT_EQ(f.get_uint("u8"), 200u);
  EXPECT_FALSE(f.get_uint("i8"));
  EXPECT_FALSE(f.get_uint("string"));
  const GgufArray* a = f.get_array("arr_u8");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->elem_type(), GgufType::kU8);
  ASSERT_EQ(a->size(), 3u);
  EXPECT_EQ(a->at<uint8_t>(2), 3);
  const GgufArray* s = f.get_array("arr_str");
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->size(), 3u);
  EXPECT_EQ(s->string_at(0), "x");
  EXPECT_EQ(s->string_at(1), "");
  EXPECT_EQ(s->string_at(2), "zz");
  const GgufArray* nested = f.get_array("nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->size(), 3u);
  EXPECT_EQ(nested->array_at(0).elem_type(), GgufType::kI16);
  EXPECT_EQ(nested->array_at(0).at<int16_t>(1), 2);
  EXPECT_EQ(nested->array_at(1).size(), 0u);
  EXPECT_EQ(nested->array_at(2).array_at(0).at<bool>(0), true);
  EXPECT_EQ(f.get_array("u8"), nullptr);
  EXPECT_EQ(gguf_value_type(*f.find("f64")), GgufType::kF64);
}

TEST(Gguf, WriterValueKindsRoundTrip) {
  GgufWriter w(2);
  w.add_u8("a", 7);
  w.add_i32("b", -3);
  w.add_u64("c", 99);
  w.add_f32("d", 0.5f);
  w.add_bool("e", false);
  w.add_i32_array("f", {1, -2, 3});
  w.add_f32_array("g", {0.25f});
  w.add_string_array("h", {});
  auto r = parse(w.header_bytes());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->version(), 2u);
  EXPECT_EQ(r->get_u8("a"), 7);
  EXPECT_EQ(r->get_i32("b"), -3);
  EXPECT_EQ(r->get_u64("c"), 99u);
  EXPECT_EQ(r->get_f32("d"), 0.5f);
  EXPECT_EQ(r->get_bool("e"), false);
  EXPECT_EQ(r->get_array("f")->at<int32_t>(1), -2);
  EXPECT_EQ(r->get_array("g")->at<float>(0), 0.25f);
  EXPECT_EQ(r->get_array("h")->elem_type(), GgufType::kString);
  EXPECT_EQ(r->get_array("h")->size(), 0u);
  // Keys keep the order they were added in.
  std::vector<std::string> keys;
  for (const auto& kv : r->kvs()) keys.push_back(kv.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "c", "d", "e", "f", "g", "h"}));
  EXPECT_EQ(r->data_offset(), w.data_offset());
}

TEST(Gguf, RejectsBadMagicAndVersion) {
  std::vector<uint8_t> good = small_writer().header_bytes();
  uint64_t size = small_writer().file_size();
  ASSERT_TRUE(parse(good, size).ok());
  auto bad = good;
  bad[0] = 'X';
  EXPECT_GGUF_ERROR(parse(bad, size), "magic");
  for (uint32_t v : {0u, 1u, 4u, 0x03000000u}) {
    bad = good;
    poke<uint32_t>(bad, 4, v);
    EXPECT_GGUF_ERROR(parse(bad, size), "version");
  }
  EXPECT_GGUF_ERROR(parse({}), "magic");
  EXPECT_GGUF_ERROR(parse({'G', 'G', 'U', 'F', 3}), "version");
}

TEST(Gguf, RejectsTruncation) {
  GgufWriter w = small_writer();
  std::vector<uint8_t> good = w.header_bytes();
  for (size_t len : {size_t{10}, size_t{20}, size_t{30}, good.size() / 2, good.size() - 40}) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + len);
    auto r = parse(cut);
    ASSERT_FALSE(r.ok()) << len;
    const std::string& m = r.status().message();
    EXPECT_TRUE(m.find("truncated") != std::string::npos ||
                m.find("exceeds") != std::string::npos || m.find("cannot fit") != std::string::npos)
        << m;
  }
  // The header is whole but the file ends inside the last tensor's data.
  auto r = parse(good, w.tensor_offset(1) + w.tensor_bytes(1) - 1);
  EXPECT_GGUF_ERROR(r, "tensor_info[1].offset");
  EXPECT_NE(r.status().message().find("past the end"), std::string::npos);
  // Header without the padding to the data section.
  Bytes b;
  b.header(3, 0, 1).str("k").put<uint32_t>(4).put<uint32_t>(1);
  EXPECT_GGUF_ERROR(parse(b.b), "data section");
}

TEST(Gguf, RejectsBadLengthsAndCounts) {
  GgufWriter w = small_writer();
  std::vector<uint8_t> good = w.header_bytes();
  uint64_t size = w.file_size();
  auto ok = parse(good, size);
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  const auto& kvs = ok->kvs();

  auto bad = good;
  poke<uint64_t>(bad, 8, uint64_t{1} << 40);
  EXPECT_GGUF_ERROR(parse(bad, size), "tensor_count");
  bad = good;
  poke<uint64_t>(bad, 16, ~uint64_t{0});
  EXPECT_GGUF_ERROR(parse(bad, size), "kv_count");
  bad = good;
  poke<uint64_t>(bad, kvs[0].offset, uint64_t{1} << 33);
  EXPECT_GGUF_ERROR(parse(bad, size), "kv[0] key length");
  // kv[1] is general.name: key length, key, type, then the string's length.
  uint64_t name_len_at = kvs[1].offset + 8 + kvs[1].key.size() + 4;
  bad = good;
  poke<uint64_t>(bad, name_len_at, size);
  auto r = parse(bad, size);
  EXPECT_GGUF_ERROR(r, "kv[1] 'general.name' string length");
  EXPECT_NE(r.status().message().find("at byte " + std::to_string(name_len_at)), std::string::npos)
      << r.status().message();
  // kv[3] is the token array: type, element type, count.
  uint64_t count_at = kvs[3].offset + 8 + kvs[3].key.size() + 4 + 4;
  bad = good;
  poke<uint64_t>(bad, count_at, uint64_t{1} << 60);
  EXPECT_GGUF_ERROR(parse(bad, size), "kv[3] 'tokenizer.ggml.tokens' array count");
  bad = good;
  poke<uint64_t>(bad, count_at + 8, uint64_t{1} << 50);
  EXPECT_GGUF_ERROR(parse(bad, size), "kv[3] 'tokenizer.ggml.tokens'[0] string length");
  bad = good;
  poke<uint32_t>(bad, count_at - 4, 13);
  EXPECT_GGUF_ERROR(parse(bad, size), "kv[3] 'tokenizer.ggml.tokens' array type");
  bad = good;
  poke<uint32_t>(bad, kvs[2].offset + 8 + kvs[2].key.size(), 13);
  EXPECT_GGUF_ERROR(parse(bad, size), "kv[2] 'llama.block_count' type");
}

TEST(Gguf, RejectsBadTensorInfos) {
  GgufWriter w = small_writer();
  std::vector<uint8_t> good = w.header_bytes();
  uint64_t size = w.file_size();
  auto ok = parse(good, size);
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  InfoFields t0 = info_fields(ok->tensors()[0]);  // q4_K [256, 4]
  InfoFields t1 = info_fields(ok->tensors()[1]);  // f32 [8, 2, 3]

  auto bad = good;
  poke<uint32_t>(bad, t1.type, 31);
  auto r = parse(bad, size);
  EXPECT_GGUF_ERROR(r, "tensor_info[1].type");
  EXPECT_NE(r.status().message().find("unknown ggml type id 31"), std::string::npos);
  bad = good;
  poke<uint32_t>(bad, t1.type, 4);  // a retired id
  EXPECT_GGUF_ERROR(parse(bad, size), "tensor_info[1].type");

  bad = good;
  poke<uint32_t>(bad, t0.n_dims, 5);
  EXPECT_GGUF_ERROR(parse(bad, size), "tensor_info[0].n_dims");

  bad = good;
  poke<uint64_t>(bad, t0.ne[0], 100);
  EXPECT_GGUF_ERROR(parse(bad, size), "tensor_info[0].ne[0]");

  bad = good;
  poke<uint64_t>(bad, t1.ne[1], uint64_t{1} << 40);
  poke<uint64_t>(bad, t1.ne[2], uint64_t{1} << 40);
  EXPECT_GGUF_ERROR(parse(bad, size), "tensor_info[1].ne[2]");
  bad = good;
  poke<uint64_t>(bad, t1.ne[1], ~uint64_t{0});  // -1 as int64
  EXPECT_GGUF_ERROR(parse(bad, size), "tensor_info[1].ne[1]");
  bad = good;  // element count fits, byte size does not (f32: 4 bytes each)
  poke<uint64_t>(bad, t1.ne[0], uint64_t{1} << 62);
  poke<uint64_t>(bad, t1.ne[1], 1);
  poke<uint64_t>(bad, t1.ne[2], 1);
  EXPECT_GGUF_ERROR(parse(bad, size), "tensor_info[1].ne[0]");

  bad = good;
  poke<uint64_t>(bad, t1.offset, w.tensor_offset(1) - w.data_offset() + 4);
  r = parse(bad, size);
  EXPECT_GGUF_ERROR(r, "tensor_info[1].offset");
  EXPECT_NE(r.status().message().find("alignment"), std::string::npos);

  bad = good;  // tensor 1 moved to start inside tensor 0 (576 bytes)
  poke<uint64_t>(bad, t1.offset, 32);
  r = parse(bad, size);
  EXPECT_GGUF_ERROR(r, "tensor_info[1].offset");
  EXPECT_NE(r.status().message().find("overlaps"), std::string::npos);
  bad = good;  // both at offset 0
  poke<uint64_t>(bad, t1.offset, 0);
  EXPECT_GGUF_ERROR(parse(bad, size), "overlaps");

  bad = good;
  poke<uint64_t>(bad, t1.offset, uint64_t{1} << 40);
  EXPECT_GGUF_ERROR(parse(bad, size), "tensor_info[1].offset");
  bad = good;
  poke<uint64_t>(bad, t1.offset, ~uint64_t{31});  // offset + data_offset overflows
  EXPECT_GGUF_ERROR(parse(bad, size), "tensor_info[1].offset");

  bad = good;
  poke<uint64_t>(bad, t1.name_len, size);
  EXPECT_GGUF_ERROR(parse(bad, size), "tensor_info[1].name length");
}

TEST(Gguf, RejectsDuplicates) {
  GgufWriter w;
  w.add_u32("x", 1);
  w.add_string("y", "z");
  w.add_u32("x", 2);
  EXPECT_GGUF_ERROR(parse(w.header_bytes()), "kv[2] key");

  GgufWriter t;
  t.add_tensor("same", GgmlType::F32, {4}, nullptr);
  t.add_tensor("other", GgmlType::F32, {4}, nullptr);
  t.add_tensor("same", GgmlType::F32, {4}, nullptr);
  auto r = parse(t.header_bytes(), t.file_size());
  EXPECT_GGUF_ERROR(r, "tensor_info[2].name");
  EXPECT_NE(r.status().message().find("duplicate"), std::string::npos);
}

TEST(Gguf, RejectsBadAlignmentAndValues) {
  for (uint32_t a : {0u, 48u, 3u}) {
    GgufWriter w;
    w.add_u32("general.alignment", a);
    EXPECT_GGUF_ERROR(parse(w.header_bytes()), "general.alignment");
  }
  GgufWriter w64;
  w64.add_u64("general.alignment", 32);
  EXPECT_GGUF_ERROR(parse(w64.header_bytes()), "general.alignment");

  GgufWriter wb;
  wb.add_bool("flag", true);
  auto bad = wb.header_bytes();
  bad[24 + 8 + 4 + 4] = 2;
  EXPECT_GGUF_ERROR(parse(bad), "kv[0] 'flag'");

  // Arrays nested too deep.
  Bytes b;
  b.header(3, 0, 1).str("deep").put<uint32_t>(9);
  for (int i = 0; i < 20; ++i) b.put<uint32_t>(9).put<uint64_t>(1);
  b.put<uint32_t>(0).put<uint64_t>(0).pad(32);
  EXPECT_GGUF_ERROR(parse(b.b), "kv[0] 'deep'");
}

TEST(Gguf, OpensFromPathAndReadsOnlyTheHeader) {
  TempDir dir;
  std::vector<std::string> tokens;
  for (int i = 0; i < 100000; ++i) tokens.push_back("token_" + std::to_string(i));
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_tensor("huge", GgmlType::Q8_0, {4096, 4096, 64}, nullptr);  // ~1.1 GiB
  std::string path = dir.file("sparse.gguf");
  // Header written, data section left as a hole.
  std::vector<uint8_t> h = w.header_bytes();
  ASSERT_GT(h.size(), size_t{1} << 20);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, h.data(), h.size()), static_cast<ssize_t>(h.size()));
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(w.file_size())), 0);
  ::close(fd);
  auto r = GgufFile::open(path);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->header_bytes(), h);
  EXPECT_EQ(r->get_array("tokenizer.ggml.tokens")->size(), tokens.size());
  EXPECT_EQ(r->get_array("tokenizer.ggml.tokens")->string_at(99999), "token_99999");
  EXPECT_EQ(r->tensors()[0].bytes, uint64_t{4096} / 32 * 34 * 4096 * 64);
  // A truncated file names the path.
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(h.size() / 2)), 0);
  auto t = GgufFile::open(path);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(t.status().message().rfind(path + ": ", 0), 0u) << t.status().message();
  EXPECT_NE(t.status().message().find("tokenizer.ggml.tokens"), std::string::npos);

  auto missing = GgufFile::open(dir.file("nope.gguf"));
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  auto d = GgufFile::open(dir.file(""));
  EXPECT_FALSE(d.ok());
}

// A valid header with every kind of field, for the no-crash loops.
std::vector<uint8_t> fuzz_seed(uint64_t* file_size) {
  Bytes b;
  b.header(3, 3, 5);
  b.str("general.architecture").put<uint32_t>(8).str("qwen3moe");
  b.str("general.alignment").put<uint32_t>(4).put<uint32_t>(32);
  b.str("toks").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(3).str("a").str("bc").str("");
  b.str("nest").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(2);
  b.put<uint32_t>(5).put<uint64_t>(2).put<int32_t>(1).put<int32_t>(2);
  b.put<uint32_t>(7).put<uint64_t>(1).put<uint8_t>(0);
  b.str("f").put<uint32_t>(12).put<double>(1.0);
  b.str("blk.0.ffn_up_exps.weight").put<uint32_t>(3);
  b.put<uint64_t>(256).put<uint64_t>(2).put<uint64_t>(4).put<uint32_t>(12).put<uint64_t>(0);
  b.str("x").put<uint32_t>(1).put<uint64_t>(16).put<uint32_t>(0).put<uint64_t>(1152);
  b.str("y").put<uint32_t>(2).put<uint64_t>(32).put<uint64_t>(1).put<uint32_t>(8).put<uint64_t>(
      1216);
  b.pad(32);
  *file_size = b.b.size() + 1216 + 34;
  std::vector<uint8_t> full = b.b;
  full.resize(*file_size, 0xab);
  return full;
}

TEST(Gguf, NeverCrashesOnTruncationOrFlippedBytes) {
  uint64_t size = 0;
  std::vector<uint8_t> seed = fuzz_seed(&size);
  auto base = parse(seed);
  ASSERT_TRUE(base.ok()) << base.status().to_string();
  ASSERT_EQ(base->tensors().size(), 3u);
  uint64_t header = base->data_offset();
  for (size_t len = 0; len < header; ++len) {
    std::vector<uint8_t> cut(seed.begin(), seed.begin() + len);
    auto r = parse(cut);
    ASSERT_FALSE(r.ok()) << len;
    ASSERT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().to_string();
  }
  for (size_t len = header; len <= seed.size(); ++len) {
    std::vector<uint8_t> cut(seed.begin(), seed.begin() + len);
    auto r = parse(cut);
    ASSERT_EQ(r.ok(), len == seed.size()) << len << " " << r.status().to_string();
  }
  std::mt19937_64 rng(12345);
  int ok = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> bad = seed;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      size_t at = rng() % header;
      switch (rng() % 3) {
        case 0:
          bad[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 1:
          bad[at] = static_cast<uint8_t>(rng());
          break;
        default:
          bad[at] = 0xff;
          break;
      }
    }
    auto r = parse(bad);
    if (r.ok()) {
      ++ok;
      for (const auto& t : r->tensors()) ASSERT_LE(t.data_offset + t.bytes, bad.size());
    } else {
      ASSERT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().to_string();
      ASSERT_FALSE(r.status().message().empty());
    }
  }
  EXPECT_LT(ok, 20000);
}

}  // namespace
}  // namespace moepool
