// Tests of the I/O engine: reads land where the contract says in every mode, end-of-file
// tails, concurrency, demand-before-prefetch, the prefetch cap, and faults injected at the
// backend seam (EIO, EINTR, short reads, stalls) — ordered with futures, never sleeps.
#include "daemon/io_engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "daemon/fault_backend.h"
#include "daemon/pread_backend.h"
#include "daemon/uring_backend.h"
#include "tests/unit/io_test_helpers.h"
#include "tests/unit/temp_dir.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;
using namespace io_test;  // NOLINT: the helpers of every I/O engine test

TEST(IoEngineLayout, RegionBytesAndDataOffset) {
  EXPECT_EQ(region_bytes_for(0, 1), 4096u);
  EXPECT_EQ(region_bytes_for(0, 4096), 4096u);
  EXPECT_EQ(region_bytes_for(32, 4096), 8192u);
  EXPECT_EQ(region_bytes_for(4064, 32), 4096u);
  EXPECT_EQ(region_bytes_for(4064, 33), 8192u);
  EXPECT_EQ(data_offset_in_region(0), 0u);
  EXPECT_EQ(data_offset_in_region(4096 * 7 + 96), 96u);
  EXPECT_EQ(region_capacity_for(ReadSpan{nullptr, 96, 4000, nullptr, std::nullopt}), 4096u);
  EXPECT_EQ(region_capacity_for(ReadSpan{nullptr, 96, 4000, nullptr, 0}), 4096u);
  EXPECT_EQ(region_capacity_for(ReadSpan{nullptr, 96, 4000, nullptr, 128}), 8192u);
  EXPECT_EQ(region_capacity_for(ReadSpan{nullptr, 4064, 64, nullptr, 0}), 8192u);
}

TEST(ModelFile, OpensBothDescriptors) {
  ModelFileFixture m;
  EXPECT_GE(m.file()->buffered_fd, 0);
  EXPECT_GE(m.file()->direct_fd, 0) << "the test dir should be on a filesystem with O_DIRECT";
}

TEST(ModelFile, MissingFileNamesThePath) {
  auto f = open_model_file("/nonexistent/io_engine_test/model.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Code::kNotFound);
  EXPECT_NE(f.status().message().find("/nonexistent/io_engine_test/model.gguf"), std::string::npos);
}

TEST(ModelFile, DirectoryIsRejected) {
  TempDir dir;
  auto f = open_model_file(dir.path().string());
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("not a regular file"), std::string::npos);
}

TEST(IoEngineOptions, RejectsBadOptions) {
  IoEngine::Options o;
  o.mode = "mmap";
  auto e = IoEngine::create(o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("mmap"), std::string::npos);
  o = {};
  o.queue_depth = 0;
  EXPECT_FALSE(IoEngine::create(o).ok());
}

// ---- Both real devices, with and without O_DIRECT.

struct ModeParam {
  const char* mode;
  bool direct;
};

class IoEngineModes : public ::testing::TestWithParam<ModeParam> {
 protected:
  std::unique_ptr<IoEngine> make(uint64_t max_request_bytes = 1 << 20, uint32_t depth = 32) {
    IoEngine::Options o;
    o.mode = GetParam().mode;
    o.direct = GetParam().direct;
    o.max_request_bytes = max_request_bytes;
    o.queue_depth = depth;
    auto e = IoEngine::create(o);
    if (!e.ok()) {
      if (o.mode == "io_uring") {
        skip_reason_ = e.status().to_string();
        return nullptr;
      }
      ADD_FAILURE() << e.status().to_string();
      return nullptr;
    }
    return std::move(e).value();
  }
  std::string skip_reason_;
  ModelFileFixture m_;
};

#define MAKE_ENGINE_OR_SKIP(var, ...)                              \
  auto var = make(__VA_ARGS__);                                    \
  if (!var && !skip_reason_.empty()) GTEST_SKIP() << skip_reason_; \
  ASSERT_TRUE(var)

TEST_P(IoEngineModes, ModeNameSaysThePath) {
  MAKE_ENGINE_OR_SKIP(e);
  std::string want = std::string(GetParam().mode) + (GetParam().direct ? "+O_DIRECT" : "");
  EXPECT_EQ(e->mode_name(), want);
}

TEST_P(IoEngineModes, ReadsUnalignedSpansIntoAlignedRegions) {
  // Small max_request_bytes so spans split into several reads.
  MAKE_ENGINE_OR_SKIP(e, 64 << 10);
  std::vector<std::unique_ptr<SpanBuffer>> bufs;
  for (auto [off, n] : std::vector<std::pair<uint64_t, uint64_t>>{{32, 100},
                                                                  {4064, 64},
                                                                  {8192, 4096},
                                                                  {12288 + 96, 300000},
                                                                  {1 << 20, 1 << 20},
                                                                  {777 * 32, 65536}}) {
    bufs.push_back(std::make_unique<SpanBuffer>(m_.file(), off, n));
  }
  std::vector<ReadSpan> spans;
  for (auto& b : bufs) spans.push_back(b->span);
  Status st = read_sync(*e, spans);
  ASSERT_TRUE(st.ok()) << st.to_string();
  for (auto& b : bufs) {
    EXPECT_EQ(std::memcmp(b->data(), m_.expect(b->span.offset), b->span.bytes), 0)
        << "span at " << b->span.offset;
  }
  // Reads per span at 64 KiB a read: O_DIRECT 1+1+1+5+16+2 (the last span's aligned
  // superset crosses a chunk boundary), buffered 1+1+1+5+16+1.
  EXPECT_EQ(e->stats().reads, GetParam().direct ? 26u : 25u);
  EXPECT_EQ(e->stats().errors, 0u);
}

TEST_P(IoEngineModes, WantedBytesEndUpAtDataAtMovedOnlyWhereODirectLandedThemElsewhere) {
  MAKE_ENGINE_OR_SKIP(e, 64 << 10);  // a moved span may cover several reads
  struct Case {
    uint64_t off, bytes, data_at;
  };
  std::vector<Case> cases = {{4096 + 96, 5000, 0},          // moves down
                             {8192 + 3072, 300000, 32},     // down, across many reads
                             {3 * 4096 + 64, 70000, 4000},  // moves up (overlapping)
                             {5 * 4096 + 160, 1000, 160}};  // already in place
  std::vector<std::unique_ptr<SpanBuffer>> bufs;
  std::vector<ReadSpan> spans;
  uint64_t want_moves = 0, want_moved_bytes = 0;
  for (const Case& c : cases) {
    bufs.push_back(std::make_unique<SpanBuffer>(m_.file(), c.off, c.bytes, c.data_at));
    spans.push_back(bufs.back()->span);
    if (GetParam().direct && data_offset_in_region(c.off) != c.data_at) {
      ++want_moves;
      want_moved_bytes += c.bytes;
    }
  }
  Status st = read_sync(*e, spans);
  ASSERT_TRUE(st.ok()) << st.to_string();
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(
        std::memcmp(bufs[i]->buf.ptr + cases[i].data_at, m_.expect(cases[i].off), cases[i].bytes),
        0)
        << "span at " << cases[i].off << " wanted at " << cases[i].data_at;
  }
  EXPECT_EQ(e->stats().moves, want_moves) << "buffered reads go straight to data_at";
  EXPECT_EQ(e->stats().moved_bytes, want_moved_bytes);
}

TEST_P(IoEngineModes, ReadsSpanEndingAtEndOfFile) {
  MAKE_ENGINE_OR_SKIP(e, 8192);
  // The aligned O_DIRECT read runs past EOF; everything wanted still arrives.
  uint64_t off = kFileBytes - 20000 - 8;  // 32-byte aligned
  ASSERT_EQ(off % 32, 0u);
  SpanBuffer b(m_.file(), off, kFileBytes - off);
  Status st = read_sync(*e, {b.span});
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(std::memcmp(b.data(), m_.expect(off), b.span.bytes), 0);
}

TEST_P(IoEngineModes, SpanPastEndOfFileIsAShortRead) {
  MAKE_ENGINE_OR_SKIP(e);
  uint64_t off = kFileBytes - 1000 + 8;
  SpanBuffer b(m_.file(), off, 5000);
  Status st = read_sync(*e, {b.span});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("short read"), std::string::npos) << st.to_string();
  EXPECT_NE(st.message().find(m_.path()), std::string::npos) << st.to_string();
}

TEST_P(IoEngineModes, ManyConcurrentRequestsFromSeveralThreads) {
  MAKE_ENGINE_OR_SKIP(e, 16384, 8);
  constexpr int kThreads = 4, kPerThread = 50;
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  std::atomic<int> bad{0};
  std::vector<std::unique_ptr<SpanBuffer>> bufs(kThreads * kPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < kPerThread; ++i) {
        uint64_t n = 1 + rng() % 100000;
        uint64_t off = (rng() % ((kFileBytes - n) / 32)) * 32;
        auto& b = bufs[t * kPerThread + i];
        b = std::make_unique<SpanBuffer>(m_.file(), off, n);
        SpanBuffer* raw = b.get();
        e->submit(request_of({raw->span}, i % 3 ? ReadPriority::kPrefetch : ReadPriority::kDemand,
                             [&, raw, this](Status st) {
                               if (!st.ok() || std::memcmp(raw->data(), m_.expect(raw->span.offset),
                                                           raw->span.bytes) != 0) {
                                 ++bad;
                               }
                               std::lock_guard<std::mutex> lock(mu);
                               ++finished;
                               cv.notify_all();
                             }));
      }
    });
  }
  for (auto& t : threads) t.join();
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished == kThreads * kPerThread; });
  EXPECT_EQ(bad.load(), 0);
  auto s = e->stats();
  EXPECT_EQ(s.reads, s.demand_reads + s.prefetch_reads);
  EXPECT_GT(s.prefetch_reads, 0u);
}

TEST_P(IoEngineModes, DoneCallbackMaySubmitAgain) {
  MAKE_ENGINE_OR_SKIP(e);
  constexpr int kChain = 20;
  std::vector<std::unique_ptr<SpanBuffer>> bufs;
  for (int i = 0; i < kChain; ++i)
    bufs.push_back(std::make_unique<SpanBuffer>(m_.file(), i * 4096 + 64, 5000));
  std::promise<int> all;
  std::function<void(int)> step = [&](int i) {
    e->submit(request_of({bufs[i]->span}, ReadPriority::kDemand, [&, i](Status st) {
      if (!st.ok() || i + 1 == kChain) {
        all.set_value(st.ok() ? i + 1 : -1);
        return;
      }
      step(i + 1);  // on the engine thread
    }));
  };
  step(0);
  ASSERT_EQ(all.get_future().get(), kChain);
  for (auto& b : bufs)
    EXPECT_EQ(std::memcmp(b->data(), m_.expect(b->span.offset), b->span.bytes), 0);
}

TEST_P(IoEngineModes, RejectsBadSpans) {
  MAKE_ENGINE_OR_SKIP(e);
  AlignedBuffer buf(8192);
  Status st = read_sync(*e, {ReadSpan{m_.file(), 0, 100, buf.ptr + 32, std::nullopt}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("aligned"), std::string::npos) << st.to_string();
  st = read_sync(*e, {ReadSpan{m_.file(), 0, 0, buf.ptr, std::nullopt}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  st = read_sync(*e, {ReadSpan{nullptr, 0, 10, buf.ptr, std::nullopt}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  st = read_sync(*e, {});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
}

TEST_P(IoEngineModes, SubmitAfterStopFailsUnavailable) {
  MAKE_ENGINE_OR_SKIP(e);
  e->stop();
  e->stop();  // idempotent
  SpanBuffer b(m_.file(), 0, 100);
  Status st = read_sync(*e, {b.span});
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("shutting down"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Modes, IoEngineModes,
                         ::testing::Values(ModeParam{"io_uring", true},
                                           ModeParam{"io_uring", false}, ModeParam{"pread", true},
                                           ModeParam{"pread", false}),
                         [](const ::testing::TestParamInfo<ModeParam>& p) {
                           return std::string(p.param.mode) +
                                  (p.param.direct ? "_direct" : "_buffered");
                         });

// tmpfs refuses O_DIRECT before Linux 6.6 (open fails with EINVAL, direct_fd stays -1)
// and accepts it since; either way a file there opens and reads correctly.
TEST(IoEngineTmpfs, FileOnTmpfsOpensAndReads) {
  fs::path shm = "/dev/shm";
  if (!fs::is_directory(shm) || !is_tmpfs(shm)) GTEST_SKIP() << "no tmpfs at /dev/shm";
  std::string tmpl = (shm / "io_engine_test.XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  fs::path dir = tmpl;
  auto bytes = random_bytes(200000, 7);
  write_file(dir / "m.gguf", bytes);
  auto f = open_model_file((dir / "m.gguf").string());
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  ModelFile file = f.value();
  EXPECT_GE(file.buffered_fd, 0);
  {
    auto e = IoEngine::create(IoEngine::Options{});  // auto, direct on
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    SpanBuffer b(&file, 4096 + 32, 150000);
    Status st = read_sync(**e, {b.span});
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(std::memcmp(b.data(), bytes.data() + b.span.offset, b.span.bytes), 0);
  }
  close_model_file(&file);
  fs::remove_all(dir);
}

// ---- Faults at the backend seam.

class IoEngineFaults : public ::testing::Test {
 protected:
  // An engine over FaultyBackend(pread); faulty_ stays valid while engine_ lives.
  void make(uint32_t depth = 32, uint64_t prefetch_cap = 64 << 20, bool direct = true) {
    auto inner = PreadBackend::create(2, depth);
    ASSERT_TRUE(inner.ok()) << inner.status().to_string();
    auto faulty = std::make_unique<FaultyBackend>(std::move(inner).value());
    faulty_ = faulty.get();
    IoEngine::Options o;
    o.queue_depth = depth;
    o.prefetch_bytes_in_flight = prefetch_cap;
    o.direct = direct;
    auto e = IoEngine::create(o, std::move(faulty));
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    engine_ = std::move(e).value();
  }
  ModelFileFixture m_;
  FaultyBackend* faulty_ = nullptr;
  std::unique_ptr<IoEngine> engine_;
};

TEST_F(IoEngineFaults, DemandReadsGoBeforePrefetchReads) {
  make(/*depth=*/1);
  faulty_->set_rule(FaultyBackend::stall_nth(1));
  std::vector<std::unique_ptr<SpanBuffer>> b;
  for (int i = 0; i < 5; ++i) b.push_back(std::make_unique<SpanBuffer>(m_.file(), i * 8192, 4096));
  std::mutex mu;
  std::vector<int> done_order;
  std::vector<std::future<Status>> f;
  auto submit = [&](int i, ReadPriority p) {
    auto pr = std::make_shared<std::promise<Status>>();
    f.push_back(pr->get_future());
    engine_->submit(request_of({b[i]->span}, p, [&, i, pr](Status st) {
      {
        std::lock_guard<std::mutex> lock(mu);
        done_order.push_back(i);
      }
      pr->set_value(st);
    }));
  };
  submit(0, ReadPriority::kPrefetch);
  faulty_->wait_stalled(1);  // the one slot is taken; everything below queues behind it
  submit(1, ReadPriority::kPrefetch);
  submit(2, ReadPriority::kPrefetch);
  submit(3, ReadPriority::kDemand);
  submit(4, ReadPriority::kDemand);
  faulty_->release_stalled();
  for (auto& x : f) {
    Status st = x.get();
    EXPECT_TRUE(st.ok()) << st.to_string();
  }
  std::vector<uint64_t> issued;
  for (const IoOp& op : faulty_->issued()) issued.push_back(op.offset / 8192);
  EXPECT_EQ(issued, (std::vector<uint64_t>{0, 3, 4, 1, 2}));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(done_order, (std::vector<int>{0, 3, 4, 1, 2}));
  auto s = engine_->stats();
  EXPECT_EQ(s.demand_reads, 2u);
  EXPECT_EQ(s.prefetch_reads, 3u);
}

TEST_F(IoEngineFaults, EioOnNthReadFailsOnlyThatRequest) {
  make();
  faulty_->set_rule(FaultyBackend::fail_nth(3, EIO));
  std::vector<std::unique_ptr<SpanBuffer>> b;
  for (int i = 0; i < 5; ++i)
    b.push_back(std::make_unique<SpanBuffer>(m_.file(), 100000 + i * 8192 + 32, 4000));
  std::vector<Status> results;
  for (auto& x : b) results.push_back(read_sync(*engine_, {x->span}));  // one read each
  for (int i = 0; i < 5; ++i) {
    if (i == 2) continue;
    EXPECT_TRUE(results[i].ok()) << i << ": " << results[i].to_string();
    EXPECT_EQ(std::memcmp(b[i]->data(), m_.expect(b[i]->span.offset), 4000), 0);
  }
  const Status& bad = results[2];
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), Code::kUnavailable);
  EXPECT_NE(bad.message().find(m_.path()), std::string::npos) << bad.to_string();
  EXPECT_NE(bad.message().find(std::to_string(b[2]->span.offset)), std::string::npos)
      << bad.to_string();
  EXPECT_NE(bad.message().find(std::strerror(EIO)), std::string::npos) << bad.to_string();
  EXPECT_EQ(engine_->stats().errors, 1u);
}

TEST_F(IoEngineFaults, FailedSpanFailsTheWholeRequestOnce) {
  make();
  faulty_->set_rule(FaultyBackend::fail_nth(2, EIO));
  SpanBuffer gate(m_.file(), 0, 4096), up(m_.file(), 8192, 4096), down(m_.file(), 16384, 4096);
  std::atomic<int> calls{0};
  std::promise<Status> p;
  engine_->submit(
      request_of({gate.span, up.span, down.span}, ReadPriority::kDemand, [&](Status st) {
        if (++calls == 1) p.set_value(st);
      }));
  Status st = p.get_future().get();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("offset 8192"), std::string::npos) << st.to_string();
  engine_->stop();  // any second callback would have run before stop() returns
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(IoEngineFaults, EintrIsRetried) {
  make();
  faulty_->set_rule(FaultyBackend::fail_nth(1, EINTR));
  SpanBuffer b(m_.file(), 4096 * 3 + 64, 10000);
  Status st = read_sync(*engine_, {b.span});
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(std::memcmp(b.data(), m_.expect(b.span.offset), b.span.bytes), 0);
  EXPECT_EQ(engine_->stats().reads, 2u);
}

TEST_F(IoEngineFaults, OneShortReadIsCompletedByResubmitting) {
  for (bool direct : {true, false}) {
    engine_.reset();
    make(32, 64 << 20, direct);
    faulty_->set_rule(FaultyBackend::short_nth(1, 1000));  // unaligned: O_DIRECT goes buffered
    SpanBuffer b(m_.file(), 4096 * 5 + 96, 20000);
    Status st = read_sync(*engine_, {b.span});
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(std::memcmp(b.data(), m_.expect(b.span.offset), b.span.bytes), 0) << direct;
    EXPECT_EQ(engine_->stats().reads, 2u);
  }
}

TEST_F(IoEngineFaults, ShortDirectReadFinishedBufferedIsStillMovedToDataAt) {
  make();
  faulty_->set_rule(FaultyBackend::short_nth(1, 1000));  // the rest goes buffered, same layout
  SpanBuffer b(m_.file(), 4096 * 5 + 96, 20000, /*data_at=*/0);
  Status st = read_sync(*engine_, {b.span});
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(std::memcmp(b.buf.ptr, m_.expect(b.span.offset), b.span.bytes), 0);
  EXPECT_EQ(engine_->stats().moves, 1u);
}

TEST_F(IoEngineFaults, FailedRequestMovesNothing) {
  make();
  faulty_->set_rule(FaultyBackend::fail_nth(2));
  SpanBuffer a(m_.file(), 96, 5000, 0), b(m_.file(), 65536 + 96, 5000, 0);
  Status st = read_sync(*engine_, {a.span, b.span});
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(engine_->stats().moves, 0u);
}

TEST_F(IoEngineFaults, CorruptInvertsExactlyTheByteAtTheFileOffsetWhereverItEndsUp) {
  for (bool direct : {true, false}) {
    engine_.reset();
    make(32, 64 << 20, direct);
    const uint64_t off = 4096 * 5 + 96, bytes = 20000, at = 12345;
    faulty_->set_rule(FaultyBackend::corrupt_file_offset(off + at));
    SpanBuffer moved(m_.file(), off, bytes, /*data_at=*/0), in_place(m_.file(), off, bytes);
    SpanBuffer elsewhere(m_.file(), off + bytes + 64, 5000);  // does not cover it
    Status st = read_sync(*engine_, {moved.span, in_place.span, elsewhere.span});
    ASSERT_TRUE(st.ok()) << st.to_string();
    for (const SpanBuffer* b : {&moved, &in_place}) {
      for (uint64_t i = 0; i < bytes; ++i) {
        uint8_t want = *m_.expect(off + i);
        if (i == at) want ^= 0xFF;
        ASSERT_EQ(b->data()[i], want) << "byte " << i << (direct ? " O_DIRECT" : " buffered");
      }
    }
    EXPECT_EQ(std::memcmp(elsewhere.data(), m_.expect(elsewhere.span.offset), 5000), 0);
    EXPECT_EQ(faulty_->corrupted(), 2u);
  }
}

TEST_F(IoEngineFaults, CorruptByteBeyondWhatTheReadReturnedIsNotWritten) {
  make();  // O_DIRECT: the aligned read of a span ending at EOF asks for bytes past it
  faulty_->set_rule(FaultyBackend::corrupt_file_offset(kFileBytes + 10));
  uint64_t off = kFileBytes - 1000 - 8;
  SpanBuffer b(m_.file(), off, kFileBytes - off);
  std::memset(b.buf.ptr, 0, b.buf.size);
  ASSERT_TRUE(read_sync(*engine_, {b.span}).ok());
  EXPECT_EQ(faulty_->issued().back().offset + faulty_->issued().back().len > kFileBytes + 10, true);
  EXPECT_EQ(faulty_->corrupted(), 0u);
  EXPECT_EQ(b.buf.ptr[data_offset_in_region(off) + (kFileBytes + 10 - off)], 0) << "left as it was";
}

TEST_F(IoEngineFaults, PersistentShortReadsFail) {
  make();
  faulty_->set_rule(FaultyBackend::short_all(0));  // as if the file ended
  SpanBuffer b(m_.file(), 64, 5000);
  Status st = read_sync(*engine_, {b.span});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("short read: got 0 of "), std::string::npos) << st.to_string();

  faulty_->set_rule(FaultyBackend::short_all(512));  // progress, but never enough
  st = read_sync(*engine_, {b.span});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("short read"), std::string::npos) << st.to_string();
  EXPECT_EQ(engine_->stats().errors, 2u);
}

TEST_F(IoEngineFaults, PrefetchBytesInFlightAreCapped) {
  make(/*depth=*/8, /*prefetch_cap=*/8192);
  faulty_->set_rule(FaultyBackend::stall_all());
  std::vector<std::unique_ptr<SpanBuffer>> b;
  for (int i = 0; i < 4; ++i)
    b.push_back(std::make_unique<SpanBuffer>(m_.file(), i * 65536 + 32, 6000));
  std::vector<std::future<Status>> f;
  for (int i = 0; i < 3; ++i)
    f.push_back(submit_async(*engine_, {b[i]->span}, ReadPriority::kPrefetch));
  faulty_->wait_stalled(1);
  f.push_back(submit_async(*engine_, {b[3]->span}, ReadPriority::kDemand));
  faulty_->wait_stalled(2);  // demand reads ignore the prefetch cap
  // Each prefetch read is 8192 bytes: one fills the cap, so only it and the demand are out.
  EXPECT_EQ(faulty_->issued().size(), 2u);
  faulty_->set_rule(FaultyBackend::pass_all());
  faulty_->release_stalled();
  for (int i = 0; i < 4; ++i) {
    Status st = f[i].get();
    EXPECT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(std::memcmp(b[i]->data(), m_.expect(b[i]->span.offset), 6000), 0);
  }
  EXPECT_EQ(engine_->stats().prefetch_reads, 3u);
}

TEST_F(IoEngineFaults, FileWithoutDirectFdIsReadBuffered) {
  make();  // O_DIRECT on, but this file (as on tmpfs before Linux 6.6) has no direct fd
  ModelFile no_direct = *m_.file();
  no_direct.direct_fd = -1;
  SpanBuffer b(&no_direct, 4096 * 9 + 160, 7000);
  Status st = read_sync(*engine_, {b.span});
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(std::memcmp(b.data(), m_.expect(b.span.offset), b.span.bytes), 0);
  auto issued = faulty_->issued();
  ASSERT_EQ(issued.size(), 1u);
  EXPECT_EQ(issued[0].fd, no_direct.buffered_fd);
  EXPECT_EQ(issued[0].offset, b.span.offset);  // just the wanted bytes
  EXPECT_EQ(issued[0].len, b.span.bytes);
  EXPECT_EQ(issued[0].buf, b.buf.ptr + data_offset_in_region(b.span.offset));
}

TEST_F(IoEngineFaults, DirectReadsAreAlignedSupersets) {
  make(32, 64 << 20, true);
  SpanBuffer b(m_.file(), 4096 * 9 + 160, 7000);
  ASSERT_TRUE(read_sync(*engine_, {b.span}).ok());
  auto issued = faulty_->issued();
  ASSERT_EQ(issued.size(), 1u);
  EXPECT_EQ(issued[0].fd, m_.file()->direct_fd);
  EXPECT_EQ(issued[0].offset, 4096u * 9);
  EXPECT_EQ(issued[0].len, 8192u);
  EXPECT_EQ(issued[0].buf, b.buf.ptr);
}

TEST_F(IoEngineFaults, StopFailsQueuedRequestsAndWaitsForInFlight) {
  make(/*depth=*/1);
  faulty_->set_rule(FaultyBackend::stall_nth(1));
  SpanBuffer a(m_.file(), 0, 4096), b(m_.file(), 8192, 4096), c(m_.file(), 16384, 4096);
  auto fa = submit_async(*engine_, {a.span});
  faulty_->wait_stalled(1);
  auto fb = submit_async(*engine_, {b.span});
  auto fc = submit_async(*engine_, {c.span}, ReadPriority::kPrefetch);
  auto stopped = std::async(std::launch::async, [&] { engine_->stop(); });
  Status sb = fb.get(), sc = fc.get();  // failed while `a` is still in flight
  EXPECT_EQ(sb.code(), Code::kUnavailable);
  EXPECT_NE(sb.message().find("shutting down"), std::string::npos) << sb.to_string();
  EXPECT_EQ(sc.code(), Code::kUnavailable);
  EXPECT_FALSE(ready(fa));
  faulty_->release_stalled();
  stopped.get();
  Status sa = fa.get();
  EXPECT_TRUE(sa.ok()) << sa.to_string();
  EXPECT_EQ(std::memcmp(a.data(), m_.expect(0), 4096), 0);
  EXPECT_EQ(faulty_->issued().size(), 1u);
}

}  // namespace
}  // namespace moepool
