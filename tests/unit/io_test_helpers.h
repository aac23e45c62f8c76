// Helpers of the I/O engine tests: a small model file of random bytes, aligned buffers
// filled with a pattern, spans with their own regions, and submit-and-wait with futures.
// Thread: test code; the helpers hold no shared state.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "daemon/io_engine.h"
#include "daemon/model_file.h"
#include "tests/unit/temp_dir.h"

namespace moepool::io_test {

namespace fs = std::filesystem;

inline constexpr uint64_t kFileBytes = (3ULL << 20) + 1000;  // not a multiple of 4096

inline std::vector<uint8_t> random_bytes(uint64_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  for (uint64_t i = 0; i < n; i += 8) {
    uint64_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<uint64_t>(8, n - i));
  }
  return v;
}

inline void write_file(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << p;
}

// A 4096-aligned buffer, filled with a pattern so stale bytes show.
struct AlignedBuffer {
  explicit AlignedBuffer(uint64_t n) : size(n) {
    ptr = static_cast<uint8_t*>(std::aligned_alloc(kIoAlign, n));
    std::memset(ptr, 0xA5, n);
  }
  ~AlignedBuffer() { std::free(ptr); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  uint8_t* ptr;
  uint64_t size;
};

// One span with its own region (its bytes wanted at data_at, when given).
struct SpanBuffer {
  SpanBuffer(const ModelFile* f, uint64_t off, uint64_t n,
             std::optional<uint64_t> data_at = std::nullopt)
      : buf(region_capacity_for(ReadSpan{f, off, n, nullptr, data_at})),
        span{f, off, n, buf.ptr, data_at} {}
  AlignedBuffer buf;
  ReadSpan span;
  const uint8_t* data() const {
    return buf.ptr + span.data_at.value_or(data_offset_in_region(span.offset));
  }
};

inline ReadRequest request_of(std::vector<ReadSpan> spans, ReadPriority prio,
                              std::function<void(Status)> done) {
  ReadRequest r;
  r.spans = std::move(spans);
  r.priority = prio;
  r.done = std::move(done);
  return r;
}

// Submits and returns a future of the status.
inline std::future<Status> submit_async(IoEngine& engine, std::vector<ReadSpan> spans,
                                        ReadPriority prio = ReadPriority::kDemand) {
  auto p = std::make_shared<std::promise<Status>>();
  auto f = p->get_future();
  engine.submit(
      request_of(std::move(spans), prio, [p](Status st) { p->set_value(std::move(st)); }));
  return f;
}

inline Status read_sync(IoEngine& engine, std::vector<ReadSpan> spans) {
  return submit_async(engine, std::move(spans)).get();
}

inline bool ready(std::future<Status>& f) {
  return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

// A model file of kFileBytes random bytes (seeded), open for the engine.
class ModelFileFixture {
 public:
  explicit ModelFileFixture(uint64_t seed = 42) : bytes_(random_bytes(kFileBytes, seed)) {
    path_ = dir_.path() / "model.gguf";
    write_file(path_, bytes_);
    auto f = open_model_file(path_.string());
    EXPECT_TRUE(f.ok()) << f.status().to_string();
    if (f.ok()) file_ = f.value();
  }
  ~ModelFileFixture() { close_model_file(&file_); }
  ModelFileFixture(const ModelFileFixture&) = delete;
  ModelFileFixture& operator=(const ModelFileFixture&) = delete;
  // Closes the file's descriptors early (their numbers become free for reuse).
  void close() { close_model_file(&file_); }
  const ModelFile* file() const { return &file_; }
  const uint8_t* expect(uint64_t off) const { return bytes_.data() + off; }
  const std::string& path() const { return file_.path; }

 private:
  TempDir dir_;
  fs::path path_;
  std::vector<uint8_t> bytes_;
  ModelFile file_;
};

// Expects each span's wanted bytes where the default data_at puts them.
inline void expect_spans_read(const std::vector<ReadSpan>& spans, const ModelFileFixture& m) {
  for (const ReadSpan& s : spans) {
    EXPECT_EQ(std::memcmp(s.region + data_offset_in_region(s.offset), m.expect(s.offset), s.bytes),
              0)
        << "span at " << s.offset;
  }
}

}  // namespace moepool::io_test
