// Tests of the I/O engine's accounting and control: per-class stats and the latency
// window, cancellation of queued requests, and merging of spans one read can cover.
// Reads are ordered with stalls at the fault seam and futures, never with sleeps.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "daemon/fault_backend.h"
#include "daemon/io_engine.h"
#include "daemon/io_latency.h"
#include "daemon/pread_backend.h"
#include "tests/unit/io_test_helpers.h"

namespace moepool {
namespace {

using namespace io_test;  // NOLINT: the helpers of every I/O engine test

// ---- The latency window.

TEST(IoLatencyWindow, EmptyWindowReportsZero) {
  LatencyWindow w;
  EXPECT_EQ(w.percentiles().p50, 0u);
  EXPECT_EQ(w.percentiles().p99, 0u);
}

TEST(IoLatencyWindow, NearestRankPercentiles) {
  LatencyWindow w;
  w.record(7);
  EXPECT_EQ(w.percentiles().p50, 7u);
  EXPECT_EQ(w.percentiles().p99, 7u);
  LatencyWindow v;
  for (uint64_t i = 1000; i >= 1; --i) v.record(i);  // any order
  EXPECT_EQ(v.percentiles().p50, 500u);
  EXPECT_EQ(v.percentiles().p99, 990u);
}

TEST(IoLatencyWindow, KeepsOnlyTheLast4096) {
  LatencyWindow w;
  for (size_t i = 0; i < LatencyWindow::kCapacity; ++i) w.record(1000000);
  for (size_t i = 0; i < LatencyWindow::kCapacity; ++i) w.record(5);
  EXPECT_EQ(w.size(), LatencyWindow::kCapacity);
  EXPECT_EQ(w.percentiles().p99, 5u) << "the old latencies must have left the window";
  w.record(9);  // the newest replaces the oldest 5
  EXPECT_EQ(w.percentiles().p50, 5u);
  EXPECT_EQ(w.size(), LatencyWindow::kCapacity);
}

// ---- An engine over FaultyBackend(pread): the read log and the stalls.

class IoEngineFeatures : public ::testing::Test {
 protected:
  void make(uint32_t depth = 32, bool direct = true, uint64_t max_request_bytes = 1 << 20,
            uint32_t options_depth = 0) {
    auto inner = PreadBackend::create(2, depth);
    ASSERT_TRUE(inner.ok()) << inner.status().to_string();
    auto faulty = std::make_unique<FaultyBackend>(std::move(inner).value());
    faulty_ = faulty.get();
    IoEngine::Options o;
    o.queue_depth = options_depth ? options_depth : depth;
    o.direct = direct;
    o.max_request_bytes = max_request_bytes;
    auto e = IoEngine::create(o, std::move(faulty));
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    engine_ = std::move(e).value();
  }
  // Submits with a cancel flag; the future gets the status, *calls counts callbacks.
  std::future<Status> submit_cancellable(std::vector<ReadSpan> spans, ReadPriority prio,
                                         std::shared_ptr<std::atomic<bool>> flag,
                                         std::atomic<int>* calls = nullptr) {
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    ReadRequest r = request_of(std::move(spans), prio, [p, calls](Status st) {
      if (calls == nullptr || calls->fetch_add(1) == 0) p->set_value(std::move(st));
    });
    r.cancelled = std::move(flag);
    engine_->submit(std::move(r));
    return f;
  }
  ModelFileFixture m_;
  FaultyBackend* faulty_ = nullptr;
  std::unique_ptr<IoEngine> engine_;
};

bool all_bytes(const AlignedBuffer& b, uint8_t v) {
  for (uint64_t i = 0; i < b.size; ++i)
    if (b.ptr[i] != v) return false;
  return true;
}

// ---- Stats.

TEST_F(IoEngineFeatures, StatsCountEachClassApart) {
  make();
  faulty_->set_rule(FaultyBackend::fail_nth(2, EIO));  // the second demand read fails
  std::vector<std::unique_ptr<SpanBuffer>> b;
  for (int i = 0; i < 5; ++i)
    b.push_back(std::make_unique<SpanBuffer>(m_.file(), 65536 * (i + 1), 4096));
  EXPECT_TRUE(read_sync(*engine_, {b[0]->span}).ok());
  EXPECT_FALSE(read_sync(*engine_, {b[1]->span}).ok());
  EXPECT_TRUE(read_sync(*engine_, {b[2]->span}).ok());
  EXPECT_TRUE(submit_async(*engine_, {b[3]->span}, ReadPriority::kPrefetch).get().ok());
  EXPECT_TRUE(submit_async(*engine_, {b[4]->span}, ReadPriority::kPrefetch).get().ok());
  auto s = engine_->stats();
  EXPECT_EQ(s.demand.requests, 3u);
  EXPECT_EQ(s.demand.reads, 3u);
  EXPECT_EQ(s.demand.bytes, 2u * 4096) << "the failed read returned nothing";
  EXPECT_EQ(s.demand.errors, 1u);
  EXPECT_EQ(s.demand.cancelled, 0u);
  EXPECT_EQ(s.prefetch.requests, 2u);
  EXPECT_EQ(s.prefetch.reads, 2u);
  EXPECT_EQ(s.prefetch.bytes, 2u * 4096);
  EXPECT_EQ(s.prefetch.errors, 0u);
  EXPECT_LE(s.demand.latency_p50_us, s.demand.latency_p99_us);
  EXPECT_LE(s.prefetch.latency_p50_us, s.prefetch.latency_p99_us);
  // The old fields still add up.
  EXPECT_EQ(s.demand_reads, s.demand.reads);
  EXPECT_EQ(s.prefetch_reads, s.prefetch.reads);
  EXPECT_EQ(s.reads, 5u);
  EXPECT_EQ(s.bytes_read, 4u * 4096);
  EXPECT_EQ(s.errors, 1u);
}

TEST_F(IoEngineFeatures, LatencyRunsFromSubmitToDone) {
  make();
  faulty_->set_rule(FaultyBackend::stall_nth(1));
  SpanBuffer b(m_.file(), 0, 4096);
  auto f = submit_async(*engine_, {b.span});
  faulty_->wait_stalled(1);
  // Holding the read stalled for at least 3 ms gives a lower bound on its latency (a
  // bound the clock guarantees, not a threshold the machine's speed decides).
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  faulty_->release_stalled();
  ASSERT_TRUE(f.get().ok());
  auto s = engine_->stats();
  EXPECT_GE(s.demand.latency_p50_us, 3000u);
  EXPECT_GE(s.demand.latency_p99_us, s.demand.latency_p50_us);
  EXPECT_EQ(s.prefetch.latency_p99_us, 0u) << "no prefetch finished";
}

TEST_F(IoEngineFeatures, InFlightPeakAndQueueDepth) {
  make(/*depth=*/4, true, 1 << 20, /*options_depth=*/64);  // capped by the device
  EXPECT_EQ(engine_->stats().queue_depth, 4u);
  faulty_->set_rule(FaultyBackend::stall_all());
  std::vector<std::unique_ptr<SpanBuffer>> b;
  std::vector<std::future<Status>> f;
  for (int i = 0; i < 3; ++i) {
    b.push_back(std::make_unique<SpanBuffer>(m_.file(), 8192 * i, 4096));
    f.push_back(submit_async(*engine_, {b.back()->span}));
  }
  faulty_->wait_stalled(3);
  auto s = engine_->stats();
  EXPECT_EQ(s.in_flight, 3u);
  EXPECT_EQ(s.in_flight_peak, 3u);
  faulty_->set_rule(FaultyBackend::pass_all());
  faulty_->release_stalled();
  for (auto& x : f) EXPECT_TRUE(x.get().ok());
  s = engine_->stats();
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.in_flight_peak, 3u);
}

TEST_F(IoEngineFeatures, RetriesAndShortReadsAreCounted) {
  make();
  faulty_->set_rule(FaultyBackend::fail_nth(1, EINTR));
  SpanBuffer a(m_.file(), 4096 + 64, 10000);
  ASSERT_TRUE(read_sync(*engine_, {a.span}).ok());
  EXPECT_EQ(engine_->stats().retries, 1u);
  EXPECT_EQ(engine_->stats().short_reads, 0u);
  faulty_->set_rule(FaultyBackend::short_nth(3, 1000));  // the next read
  SpanBuffer b(m_.file(), 8 * 4096 + 96, 20000);
  ASSERT_TRUE(read_sync(*engine_, {b.span}).ok());
  EXPECT_EQ(std::memcmp(b.data(), m_.expect(b.span.offset), b.span.bytes), 0);
  auto s = engine_->stats();
  EXPECT_EQ(s.short_reads, 1u);
  EXPECT_EQ(s.retries, 1u);
  EXPECT_EQ(s.errors, 0u);
}

// ---- Cancellation.

TEST_F(IoEngineFeatures, CancelledPrefetchBehindADemandIssuesNothing) {
  make(/*depth=*/1);
  faulty_->set_rule(FaultyBackend::stall_nth(1));
  SpanBuffer d(m_.file(), 0, 4096), p1(m_.file(), 65536 + 32, 6000), p2(m_.file(), 131072, 4096);
  auto fd = submit_async(*engine_, {d.span});
  faulty_->wait_stalled(1);  // the one slot is taken: the prefetch queues behind it
  auto flag = std::make_shared<std::atomic<bool>>(false);
  auto fp = submit_cancellable({p1.span, p2.span}, ReadPriority::kPrefetch, flag);
  flag->store(true);
  faulty_->release_stalled();
  EXPECT_TRUE(fd.get().ok());
  Status st = fp.get();
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("cancelled"), std::string::npos) << st.to_string();
  EXPECT_NE(st.message().find(m_.path()), std::string::npos) << st.to_string();
  EXPECT_TRUE(all_bytes(p1.buf, 0xA5)) << "a cancelled request's region is untouched";
  EXPECT_TRUE(all_bytes(p2.buf, 0xA5));
  EXPECT_EQ(faulty_->issued().size(), 1u);
  auto s = engine_->stats();
  EXPECT_EQ(s.prefetch.cancelled, 1u);
  EXPECT_EQ(s.prefetch.requests, 1u);
  EXPECT_EQ(s.prefetch.reads, 0u);
  EXPECT_EQ(s.prefetch.errors, 0u);
  EXPECT_EQ(s.errors, 0u) << "cancelled is not an error";
}

TEST_F(IoEngineFeatures, CancelledWithEveryReadInFlightCompletesOnceAfterThem) {
  make();
  faulty_->set_rule(FaultyBackend::stall_all());
  SpanBuffer a(m_.file(), 0, 4096), b(m_.file(), 65536, 4096);
  auto flag = std::make_shared<std::atomic<bool>>(false);
  std::atomic<int> calls{0};
  auto f = submit_cancellable({a.span, b.span}, ReadPriority::kPrefetch, flag, &calls);
  faulty_->wait_stalled(2);
  flag->store(true);
  EXPECT_FALSE(ready(f)) << "completes only once its reads have finished";
  faulty_->set_rule(FaultyBackend::pass_all());
  faulty_->release_stalled();
  Status st = f.get();
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("cancelled"), std::string::npos) << st.to_string();
  engine_->stop();  // any second callback would have run before stop() returns
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(engine_->stats().prefetch.cancelled, 1u);
  EXPECT_EQ(faulty_->issued().size(), 2u);
}

TEST_F(IoEngineFeatures, CancelledPartWayIssuesNoMoreReads) {
  make(/*depth=*/1);
  faulty_->set_rule(FaultyBackend::stall_all());
  SpanBuffer a(m_.file(), 0, 4096), b(m_.file(), 65536, 4096), c(m_.file(), 131072, 4096);
  auto flag = std::make_shared<std::atomic<bool>>(false);
  std::atomic<int> calls{0};
  auto f = submit_cancellable({a.span, b.span, c.span}, ReadPriority::kDemand, flag, &calls);
  faulty_->wait_stalled(1);
  flag->store(true);
  faulty_->set_rule(FaultyBackend::pass_all());
  faulty_->release_stalled();
  Status st = f.get();
  EXPECT_NE(st.message().find("cancelled"), std::string::npos) << st.to_string();
  engine_->stop();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(faulty_->issued().size(), 1u);
  EXPECT_TRUE(all_bytes(b.buf, 0xA5));
  EXPECT_TRUE(all_bytes(c.buf, 0xA5));
  EXPECT_EQ(engine_->stats().demand.cancelled, 1u);
}

TEST_F(IoEngineFeatures, UnsetCancelFlagReadsNormally) {
  make();
  SpanBuffer a(m_.file(), 4096 * 3 + 64, 9000);
  auto flag = std::make_shared<std::atomic<bool>>(false);
  Status st = submit_cancellable({a.span}, ReadPriority::kPrefetch, flag).get();
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(std::memcmp(a.data(), m_.expect(a.span.offset), a.span.bytes), 0);
  EXPECT_EQ(engine_->stats().prefetch.cancelled, 0u);
}

// ---- Merging.

// Three spans contiguous in the file, laid out in one buffer as one O_DIRECT read of
// their aligned superset would lay them out (region = buf + (round_down(offset) - first)).
struct ContiguousSpans {
  explicit ContiguousSpans(const ModelFile* f) : buf(32768) {
    uint64_t off = 8192 + 96;
    for (uint64_t n : {10000, 5000, 3000}) {
      uint64_t start = off - off % kIoAlign;
      spans.push_back(ReadSpan{f, off, n, buf.ptr + (start - 8192), std::nullopt});
      off += n;
    }
  }
  AlignedBuffer buf;
  std::vector<ReadSpan> spans;
};

TEST_F(IoEngineFeatures, ContiguousSpansWithMatchingRegionsAreOneDirectRead) {
  make();
  ContiguousSpans c(m_.file());
  ASSERT_TRUE(read_sync(*engine_, c.spans).ok());
  expect_spans_read(c.spans, m_);
  auto issued = faulty_->issued();
  ASSERT_EQ(issued.size(), 1u);
  EXPECT_EQ(issued[0].offset, 8192u);
  EXPECT_EQ(issued[0].len, 28672u - 8192u);  // round_up(8192 + 96 + 18000)
  EXPECT_EQ(issued[0].buf, c.buf.ptr);
  EXPECT_EQ(engine_->stats().merged_spans, 3u);
}

TEST_F(IoEngineFeatures, ContiguousSpansAreOneBufferedRead) {
  make(32, /*direct=*/false);
  ContiguousSpans c(m_.file());
  ASSERT_TRUE(read_sync(*engine_, c.spans).ok());
  expect_spans_read(c.spans, m_);
  auto issued = faulty_->issued();
  ASSERT_EQ(issued.size(), 1u);
  EXPECT_EQ(issued[0].offset, 8192u + 96);
  EXPECT_EQ(issued[0].len, 18000u);
  EXPECT_EQ(engine_->stats().merged_spans, 3u);
}

TEST_F(IoEngineFeatures, MergedReadIsStillSplitByMaxRequestBytes) {
  make(32, true, /*max_request_bytes=*/8192);
  ContiguousSpans c(m_.file());
  ASSERT_TRUE(read_sync(*engine_, c.spans).ok());
  expect_spans_read(c.spans, m_);
  auto issued = faulty_->issued();
  ASSERT_EQ(issued.size(), 3u);  // 20480 bytes in reads of at most 8192
  EXPECT_EQ(issued[0].len + issued[1].len + issued[2].len, 20480u);
  for (const IoOp& op : issued) EXPECT_LE(op.len, 8192u);
  EXPECT_EQ(engine_->stats().merged_spans, 3u);
}

TEST_F(IoEngineFeatures, SpansThatOneReadCannotCoverAreNotMerged) {
  make();
  ModelFileFixture other(7);
  ContiguousSpans c(m_.file());
  // Separate regions: contiguous in the file, but not laid out as one read lays them.
  SpanBuffer a(m_.file(), 8192 + 96, 10000), b(m_.file(), 8192 + 96 + 10000, 5000);
  // A gap in the file between two spans of one buffer.
  ContiguousSpans gap(m_.file());
  gap.spans[1].offset += 8192;
  gap.spans.pop_back();
  // The same offsets in another file.
  std::vector<ReadSpan> two_files = {c.spans[0], c.spans[1]};
  two_files[1].file = other.file();
  // A span whose bytes must move (data_at away from where O_DIRECT lands them).
  ContiguousSpans moved(m_.file());
  moved.spans[0].data_at = 0;
  moved.spans.pop_back();
  for (const auto& spans :
       std::vector<std::vector<ReadSpan>>{{a.span, b.span}, gap.spans, two_files, moved.spans}) {
    size_t before = faulty_->issued().size();
    ASSERT_TRUE(read_sync(*engine_, spans).ok());
    EXPECT_EQ(faulty_->issued().size() - before, 2u);
  }
  EXPECT_EQ(std::memcmp(b.data(), m_.expect(b.span.offset), b.span.bytes), 0);
  EXPECT_EQ(engine_->stats().merged_spans, 0u);
}

}  // namespace
}  // namespace moepool
