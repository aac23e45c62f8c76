// Tests of io_uring fixed files and fixed buffers in the I/O engine: reads into a
// registered region use READ_FIXED and land right, registration replaces the set, the
// options turn it off, pread ignores it, a reused descriptor number never reads a closed
// file, and (with a fake device) the kernel's refusals fall back to plain reads.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "daemon/fault_backend.h"
#include "daemon/io_engine.h"
#include "daemon/pread_backend.h"
#include "daemon/uring_backend.h"
#include "tests/unit/io_test_helpers.h"

namespace moepool {
namespace {

using namespace io_test;  // NOLINT: the helpers of every I/O engine test

// ---- Fixed files and fixed buffers.

// An aligned anonymous mapping (what the pool's segments are, give or take shm).
struct Mapping {
  explicit Mapping(uint64_t n) : size(n) {
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ptr = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
    if (ptr) std::memset(ptr, 0xA5, n);
  }
  ~Mapping() {
    if (ptr) ::munmap(ptr, size);
  }
  uint8_t* ptr;
  uint64_t size;
};

constexpr uint64_t kRegionBytes = 4 << 20;

// An engine over FaultyBackend(io_uring), or a skip where io_uring is refused.
class IoEngineFixed : public ::testing::Test {
 protected:
  bool make(bool files = true, bool buffers = true) {
    auto ring = UringBackend::create(32);
    if (!ring.ok()) {
      skip_ = ring.status().to_string();
      return false;
    }
    auto faulty = std::make_unique<FaultyBackend>(std::move(ring).value());
    faulty_ = faulty.get();
    IoEngine::Options o;
    o.register_files = files;
    o.register_buffers = buffers;
    o.max_request_bytes = 64 << 10;
    auto e = IoEngine::create(o, std::move(faulty));
    EXPECT_TRUE(e.ok()) << e.status().to_string();
    if (!e.ok()) return false;
    engine_ = std::move(e).value();
    return true;
  }
  // Reads spans at several places of the region and checks their bytes.
  void read_into(uint8_t* region, const ModelFileFixture& m) {
    std::vector<ReadSpan> spans;
    for (uint64_t i = 0; i < 4; ++i) {  // 200000 bytes each, 1 MiB apart
      spans.push_back(
          ReadSpan{m.file(), i * 300000 + 96, 200000, region + (i << 20), std::nullopt});
    }
    Status st = read_sync(*engine_, spans);
    ASSERT_TRUE(st.ok()) << st.to_string();
    expect_spans_read(spans, m);
  }
  std::string skip_;
  ModelFileFixture m_;
  FaultyBackend* faulty_ = nullptr;
  std::unique_ptr<IoEngine> engine_;
};

#define MAKE_OR_SKIP(...)                                          \
  if (!make(__VA_ARGS__) && !skip_.empty()) GTEST_SKIP() << skip_; \
  ASSERT_TRUE(engine_)

TEST_F(IoEngineFixed, ReadsIntoARegisteredBufferUseReadFixedAndFixedFiles) {
  MAKE_OR_SKIP();
  Mapping region(kRegionBytes);
  ASSERT_NE(region.ptr, nullptr);
  Status st = engine_->register_buffers({{region.ptr, region.size}});
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(engine_->stats().fixed_buffers, 1u);
  read_into(region.ptr, m_);
  auto issued = faulty_->issued();
  ASSERT_FALSE(issued.empty());
  for (const IoOp& op : issued) {
    EXPECT_GE(op.buf_index, 0) << "read at " << op.offset;
    EXPECT_TRUE(op.fixed_file);
  }
  EXPECT_TRUE(engine_->stats().fixed_files);
  // Memory outside every registered buffer is read into with plain reads.
  SpanBuffer outside(m_.file(), 4096 * 7 + 64, 5000);
  size_t before = faulty_->issued().size();
  ASSERT_TRUE(read_sync(*engine_, {outside.span}).ok());
  EXPECT_EQ(std::memcmp(outside.data(), m_.expect(outside.span.offset), 5000), 0);
  EXPECT_EQ(faulty_->issued()[before].buf_index, -1);
}

TEST_F(IoEngineFixed, RegisteringAgainReplacesTheSet) {
  MAKE_OR_SKIP();
  Mapping a(kRegionBytes), b(kRegionBytes);
  ASSERT_TRUE(engine_->register_buffers({{a.ptr, a.size}, {b.ptr, b.size}}).ok());
  EXPECT_EQ(engine_->stats().fixed_buffers, 2u);
  ASSERT_TRUE(engine_->register_buffers({{b.ptr, b.size}}).ok());
  EXPECT_EQ(engine_->stats().fixed_buffers, 1u);
  read_into(a.ptr, m_);
  read_into(b.ptr, m_);
  bool a_fixed = false, b_fixed = false;
  for (const IoOp& op : faulty_->issued()) {
    bool in_a = op.buf >= a.ptr && op.buf < a.ptr + a.size;
    (in_a ? a_fixed : b_fixed) |= op.buf_index >= 0;
  }
  EXPECT_FALSE(a_fixed) << "a left the set";
  EXPECT_TRUE(b_fixed);
}

TEST_F(IoEngineFixed, OptionsOffRegisterNothing) {
  MAKE_OR_SKIP(/*files=*/false, /*buffers=*/false);
  Mapping region(kRegionBytes);
  ASSERT_TRUE(engine_->register_buffers({{region.ptr, region.size}}).ok());
  read_into(region.ptr, m_);
  auto s = engine_->stats();
  EXPECT_EQ(s.fixed_buffers, 0u);
  EXPECT_FALSE(s.fixed_files);
  for (const IoOp& op : faulty_->issued()) {
    EXPECT_EQ(op.buf_index, -1);
    EXPECT_FALSE(op.fixed_file);
  }
}

TEST_F(IoEngineFixed, ReusedDescriptorNumberReadsTheNewFile) {
  MAKE_OR_SKIP();
  auto first = std::make_unique<ModelFileFixture>(1);
  SpanBuffer a(first->file(), 4096 + 32, 5000);
  ASSERT_TRUE(read_sync(*engine_, {a.span}).ok());
  ASSERT_TRUE(faulty_->issued().back().fixed_file);
  int direct_fd = first->file()->direct_fd;
  first->close();
  ModelFileFixture second(2);  // takes the lowest free numbers: the ones just closed
  if (second.file()->direct_fd != direct_fd) GTEST_SKIP() << "descriptor number not reused";
  SpanBuffer b(second.file(), 4096 + 32, 5000);
  ASSERT_TRUE(read_sync(*engine_, {b.span}).ok());
  EXPECT_EQ(std::memcmp(b.data(), second.expect(b.span.offset), 5000), 0)
      << "a stale fixed-file slot read the closed file";
}

TEST(IoEngineFixedModes, PreadIgnoresRegistration) {
  ModelFileFixture m;
  IoEngine::Options o;
  o.mode = "pread";
  auto e = IoEngine::create(o);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  Mapping region(kRegionBytes);
  ASSERT_TRUE((*e)->register_buffers({{region.ptr, region.size}}).ok());
  std::vector<ReadSpan> spans = {ReadSpan{m.file(), 96, 300000, region.ptr, std::nullopt}};
  ASSERT_TRUE(read_sync(**e, spans).ok());
  expect_spans_read(spans, m);
  EXPECT_EQ((*e)->stats().fixed_buffers, 0u);
  EXPECT_FALSE((*e)->stats().fixed_files);
}

TEST(IoEngineFixedModes, IoUringEngineReadsRightIntoRegisteredBuffers) {
  ModelFileFixture m;
  IoEngine::Options o;
  o.mode = "io_uring";
  auto e = IoEngine::create(o);
  if (!e.ok()) GTEST_SKIP() << e.status().to_string();
  Mapping region(kRegionBytes);
  ASSERT_TRUE((*e)->register_buffers({{region.ptr, region.size}}).ok());
  EXPECT_EQ((*e)->stats().fixed_buffers, 1u);
  std::vector<ReadSpan> spans = {ReadSpan{m.file(), 96, 3 << 20, region.ptr, std::nullopt}};
  Status st = read_sync(**e, spans);
  ASSERT_TRUE(st.ok()) << st.to_string();
  expect_spans_read(spans, m);
  EXPECT_TRUE((*e)->stats().fixed_files);
}

TEST(IoEngineFixedModes, RegisterBuffersRejectsEmptyRegionsAndFailsAfterStop) {
  auto e = IoEngine::create(IoEngine::Options{});
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  Status st = (*e)->register_buffers({{nullptr, 4096}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  Mapping region(4096);
  st = (*e)->register_buffers({{region.ptr, 0}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  (*e)->stop();
  st = (*e)->register_buffers({{region.ptr, region.size}});
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.to_string();
}

// A device with a fixed-buffer table that refuses the region it is told to and records
// what it was asked, and (offer_files) a fixed-file table the kernel then refuses; reads go
// to pread, which ignores buf_index (it never sees fixed_file: no file is accepted).
class FakeFixedBackend : public FaultyBackend {
 public:
  using FaultyBackend::FaultyBackend;
  uint32_t fixed_file_slots() const override { return offer_files && !files_refused ? 4 : 0; }
  Status set_fixed_file(uint32_t, int) override {
    files_refused = true;
    return Unavailable("fake: file table refused");
  }
  uint32_t fixed_buffer_slots() const override { return 8; }
  Status set_fixed_buffer(uint32_t slot, uint8_t* base, uint64_t len) override {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back({base, len});
    if (base != nullptr && base == refused) return Unavailable("fake: ENOMEM");
    (void)slot;
    return Status::Ok();
  }
  std::vector<std::pair<uint8_t*, uint64_t>> buffer_calls() {
    std::lock_guard<std::mutex> lock(mu);
    return calls;
  }
  bool offer_files = false;
  std::atomic<bool> files_refused{false};
  uint8_t* refused = nullptr;
  std::mutex mu;
  std::vector<std::pair<uint8_t*, uint64_t>> calls;
};

struct FakeEngine {
  explicit FakeEngine(bool refuse_file_table = false) {
    auto inner = PreadBackend::create(2, 8);
    EXPECT_TRUE(inner.ok());
    auto fake = std::make_unique<FakeFixedBackend>(std::move(inner).value());
    fake->offer_files = refuse_file_table;
    dev = fake.get();
    auto e = IoEngine::create(IoEngine::Options{}, std::move(fake));
    EXPECT_TRUE(e.ok()) << e.status().to_string();
    engine = std::move(e).value();
  }
  FakeFixedBackend* dev;
  std::unique_ptr<IoEngine> engine;
};

TEST(IoEngineFixedFake, RefusedRegionFallsBackToPlainReads) {
  ModelFileFixture m;
  FakeEngine f;
  Mapping good(1 << 20), bad(1 << 20);
  f.dev->refused = bad.ptr;
  ASSERT_TRUE(f.engine->register_buffers({{good.ptr, good.size}, {bad.ptr, bad.size}}).ok());
  EXPECT_EQ(f.engine->stats().fixed_buffers, 1u);
  std::vector<ReadSpan> spans = {ReadSpan{m.file(), 96, 5000, good.ptr, std::nullopt},
                                 ReadSpan{m.file(), 65536, 5000, bad.ptr, std::nullopt}};
  ASSERT_TRUE(read_sync(*f.engine, spans).ok());
  expect_spans_read(spans, m);
  auto issued = f.dev->issued();
  ASSERT_EQ(issued.size(), 2u);
  EXPECT_GE(issued[0].buf_index, 0);
  EXPECT_EQ(issued[1].buf_index, -1);
}

TEST(IoEngineFixedFake, RegionsOverOneGibAreRegisteredInPieces) {
  FakeEngine f;
  // Never read into: only its bounds reach the (fake) device.
  uint8_t* base = reinterpret_cast<uint8_t*>(uintptr_t{1} << 40);
  const uint64_t len = (3ULL << 30) + 4096;
  ASSERT_TRUE(f.engine->register_buffers({{base, len}}).ok());
  EXPECT_EQ(f.engine->stats().fixed_buffers, 1u);
  auto calls = f.dev->buffer_calls();
  ASSERT_EQ(calls.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(calls[i].first, base + (uint64_t(i) << 30));
    EXPECT_EQ(calls[i].second, 1ULL << 30);
  }
  EXPECT_EQ(calls[3].second, 4096u);
  // The same set again pins nothing new.
  ASSERT_TRUE(f.engine->register_buffers({{base, len}}).ok());
  EXPECT_EQ(f.dev->buffer_calls().size(), 4u);
  // An empty set clears the four slots.
  ASSERT_TRUE(f.engine->register_buffers({}).ok());
  calls = f.dev->buffer_calls();
  ASSERT_EQ(calls.size(), 8u);
  for (size_t i = 4; i < 8; ++i) EXPECT_EQ(calls[i].first, nullptr);
  EXPECT_EQ(f.engine->stats().fixed_buffers, 0u);
}

TEST(IoEngineFixedFake, RefusedFileTableFallsBackToPlainDescriptors) {
  ModelFileFixture m;
  FakeEngine f(/*refuse_file_table=*/true);
  SpanBuffer a(m.file(), 96, 5000), b(m.file(), 65536, 5000);
  ASSERT_TRUE(read_sync(*f.engine, {a.span}).ok());
  ASSERT_TRUE(read_sync(*f.engine, {b.span}).ok());
  EXPECT_EQ(std::memcmp(b.data(), m.expect(b.span.offset), 5000), 0);
  EXPECT_FALSE(f.engine->stats().fixed_files);
  for (const IoOp& op : f.dev->issued()) {
    EXPECT_FALSE(op.fixed_file);
    EXPECT_EQ(op.fd, m.file()->direct_fd);
  }
}

}  // namespace
}  // namespace moepool
