#include "daemon/io_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include "daemon/io_fixed.h"
#include "daemon/io_latency.h"
#include "daemon/io_request.h"
#include "daemon/pread_backend.h"
#include "daemon/uring_backend.h"

namespace moepool {
namespace {

using io_internal::Clock;
using io_internal::Finished;
using io_internal::Incoming;
using io_internal::Move;
using io_internal::PendingOp;
using io_internal::RequestState;
using io_internal::Run;

constexpr int kMaxRetries = 8;                // EINTR/EAGAIN resubmissions of one read
constexpr int kMaxShortResubmits = 4;         // resubmissions of the remainder after a short read
constexpr uint64_t kMaxOpBytes = 1ULL << 30;  // an SQE length is 32-bit; stay well below

uint64_t round_down(uint64_t v, uint64_t a) { return v - v % a; }
uint64_t round_up(uint64_t v, uint64_t a) { return round_down(v + a - 1, a); }

Status check_mode(const std::string& mode) {
  if (mode == "auto" || mode == "io_uring" || mode == "pread") return Status::Ok();
  return InvalidArgument("io engine: unknown mode '" + mode + "' (want auto, io_uring or pread)");
}

bool log_this_error(uint64_t n) { return n <= 16 || n % 1024 == 0; }  // rate limit

}  // namespace

uint64_t region_bytes_for(uint64_t offset, uint64_t bytes) {
  return round_up(offset % kIoAlign + bytes, kIoAlign);
}

uint64_t data_offset_in_region(uint64_t offset) { return offset % kIoAlign; }

uint64_t region_capacity_for(const ReadSpan& span) {
  uint64_t direct = region_bytes_for(span.offset, span.bytes);
  if (!span.data_at) return direct;
  return std::max(direct, round_up(*span.data_at + span.bytes, kIoAlign));
}

class IoEngine::Impl {
 public:
  Impl(Options options, std::unique_ptr<IoBackend> backend)
      : options_(std::move(options)),
        backend_(std::move(backend)),
        fixed_(backend_.get(), options_.register_files, options_.register_buffers) {
    depth_ = std::max<uint32_t>(1, std::min(options_.queue_depth, backend_->max_in_flight()));
    in_flight_.resize(depth_);
    for (uint32_t i = 0; i < depth_; ++i) free_tags_.push_back(depth_ - 1 - i);
    uint64_t max = std::min(options_.max_request_bytes, kMaxOpBytes);
    chunk_direct_ = std::max(kIoAlign, round_down(max, kIoAlign));
    chunk_buffered_ = std::max<uint64_t>(1, max);
  }

  Status start() {
    try {
      thread_ = std::thread([this] { run(); });
    } catch (const std::system_error& e) {
      return Status::FromErrno("io engine: start thread", e.code().value());
    }
    return Status::Ok();
  }

  void submit(ReadRequest req) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!exited_) {
        incoming_.push_back({std::move(req), Clock::now()});
        // From a `done` callback (the engine thread) no wake is needed: run() looks at
        // incoming_ before it blocks. Saves a syscall per request in steady state.
        if (std::this_thread::get_id() != engine_thread_id_.load(std::memory_order_relaxed))
          backend_->wake();
        return;
      }
    }
    count_request(req.priority);
    if (req.done) req.done(Unavailable("io engine: shutting down"));
  }

  Status register_buffers(std::vector<std::pair<uint8_t*, uint64_t>> regions);

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    backend_->wake();
    if (std::this_thread::get_id() == engine_thread_id_.load()) return;  // from a callback
    std::lock_guard<std::mutex> lock(join_mu_);
    if (thread_.joinable()) thread_.join();
  }

  std::string mode_name() const { return backend_->name() + (options_.direct ? "+O_DIRECT" : ""); }

  Stats stats() const;

 private:
  // Counters of one class of request. Written on the engine thread, read by stats().
  struct ClassCounters {
    std::atomic<uint64_t> requests{0}, reads{0}, bytes{0}, errors{0}, cancelled{0};
    LatencyWindow latency;
  };
  // A register_buffers() call waiting for the engine thread.
  struct BufferRegistration {
    std::vector<std::pair<uint8_t*, uint64_t>> regions;
    std::promise<Status> applied;
  };

  void run();
  void accept(Incoming in, bool stopping);
  Status validate(const ReadRequest& req) const;
  // The device read of one span (moves: its bytes land away from data_at).
  Run run_of(const ReadSpan& span) const;
  static bool joins(const Run& run, const Run& next);
  void expand(const std::shared_ptr<RequestState>& state, const Run& run);
  void dispatch();
  bool drop_if_dead(const PendingOp& op);
  void issue(PendingOp op);
  void complete(const IoCompletion& c);
  void requeue(PendingOp op);
  void fail(const std::shared_ptr<RequestState>& state, Status st);
  void op_finished(const std::shared_ptr<RequestState>& state);
  void drop_queued(Status why);
  void run_callbacks();
  void count_request(ReadPriority p) {
    counters(p).requests.fetch_add(1, std::memory_order_relaxed);
  }
  ClassCounters& counters(ReadPriority p) {
    return p == ReadPriority::kDemand ? demand_ : prefetch_;
  }
  std::deque<PendingOp>& queue_of(const RequestState& s) {
    return s.req.priority == ReadPriority::kDemand ? demand_ops_ : prefetch_ops_;
  }

  const Options options_;
  std::unique_ptr<IoBackend> backend_;
  uint32_t depth_ = 1;
  uint64_t chunk_direct_ = kIoAlign;
  uint64_t chunk_buffered_ = kIoAlign;

  std::mutex mu_;  // guards incoming_, registrations_, stopping_, exited_
  std::vector<Incoming> incoming_;
  std::vector<std::shared_ptr<BufferRegistration>> registrations_;
  bool stopping_ = false;
  bool exited_ = false;  // the engine thread took its last requests; submit() fails inline

  std::mutex join_mu_;  // serializes joins of thread_
  std::thread thread_;
  std::atomic<std::thread::id> engine_thread_id_{};

  // Engine thread only.
  FixedResources fixed_;
  std::deque<PendingOp> demand_ops_;
  std::deque<PendingOp> prefetch_ops_;
  std::vector<std::optional<PendingOp>> in_flight_;  // by tag
  std::vector<uint64_t> free_tags_;
  uint32_t in_flight_count_ = 0;
  uint64_t prefetch_bytes_in_flight_ = 0;
  std::vector<Finished> finished_;

  std::atomic<uint64_t> reads_{0}, bytes_read_{0}, errors_{0}, demand_reads_{0}, prefetch_reads_{0};
  std::atomic<uint64_t> moves_{0}, moved_bytes_{0};
  std::atomic<uint64_t> retries_{0}, short_reads_{0}, merged_spans_{0};
  std::atomic<uint32_t> in_flight_now_{0}, in_flight_peak_{0};
  ClassCounters demand_, prefetch_;
};

IoEngine::Stats IoEngine::Impl::stats() const {
  Stats s;
  s.reads = reads_.load(std::memory_order_relaxed);
  s.bytes_read = bytes_read_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  s.demand_reads = demand_reads_.load(std::memory_order_relaxed);
  s.prefetch_reads = prefetch_reads_.load(std::memory_order_relaxed);
  s.moves = moves_.load(std::memory_order_relaxed);
  s.moved_bytes = moved_bytes_.load(std::memory_order_relaxed);
  for (auto [out, in] : {std::pair<ClassStats*, const ClassCounters*>{&s.demand, &demand_},
                         std::pair<ClassStats*, const ClassCounters*>{&s.prefetch, &prefetch_}}) {
    out->requests = in->requests.load(std::memory_order_relaxed);
    out->reads = in->reads.load(std::memory_order_relaxed);
    out->bytes = in->bytes.load(std::memory_order_relaxed);
    out->errors = in->errors.load(std::memory_order_relaxed);
    out->cancelled = in->cancelled.load(std::memory_order_relaxed);
    LatencyWindow::Percentiles p = in->latency.percentiles();
    out->latency_p50_us = p.p50;
    out->latency_p99_us = p.p99;
  }
  s.queue_depth = depth_;
  s.in_flight = in_flight_now_.load(std::memory_order_relaxed);
  s.in_flight_peak = in_flight_peak_.load(std::memory_order_relaxed);
  s.retries = retries_.load(std::memory_order_relaxed);
  s.short_reads = short_reads_.load(std::memory_order_relaxed);
  s.merged_spans = merged_spans_.load(std::memory_order_relaxed);
  s.fixed_buffers = fixed_.fixed_buffers();
  s.fixed_files = fixed_.files_active();
  return s;
}

Status IoEngine::Impl::register_buffers(std::vector<std::pair<uint8_t*, uint64_t>> regions) {
  for (size_t i = 0; i < regions.size(); ++i) {
    if (regions[i].first == nullptr || regions[i].second == 0) {
      return InvalidArgument("io engine: register_buffers: region " + std::to_string(i) +
                             " is empty or has no address");
    }
  }
  if (!options_.register_buffers) return Status::Ok();
  if (std::this_thread::get_id() == engine_thread_id_.load()) {  // from a callback
    fixed_.set_buffers(regions);
    return Status::Ok();
  }
  auto reg = std::make_shared<BufferRegistration>();
  reg->regions = std::move(regions);
  std::future<Status> applied = reg->applied.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (exited_) return Unavailable("io engine: register_buffers: shutting down");
    registrations_.push_back(reg);
  }
  backend_->wake();
  return applied.get();  // applied before the engine's next reads, or failed at its exit
}

void IoEngine::Impl::run() {
  engine_thread_id_.store(std::this_thread::get_id());
  std::vector<Incoming> batch;
  std::vector<std::shared_ptr<BufferRegistration>> regs;
  std::vector<IoCompletion> completions;
  for (;;) {
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(incoming_);
      regs.swap(registrations_);
      stopping = stopping_;
    }
    for (auto& r : regs) {  // before the reads that follow, so that they can use them
      fixed_.set_buffers(r->regions);
      r->applied.set_value(Status::Ok());
    }
    regs.clear();
    for (Incoming& in : batch) accept(std::move(in), stopping);
    batch.clear();
    if (stopping) drop_queued(Unavailable("io engine: shutting down"));
    dispatch();
    Status st = backend_->flush();
    if (!st.ok()) spdlog::error("io engine: {}", st.to_string());
    run_callbacks();
    if (stopping && in_flight_count_ == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      if (incoming_.empty()) {
        exited_ = true;
        for (auto& r : registrations_)
          r->applied.set_value(Unavailable("io engine: register_buffers: shutting down"));
        registrations_.clear();
        break;
      }
      continue;  // callbacks submitted more; fail them on the next turn
    }
    bool more;  // callbacks above may have submitted (without a wake)
    {
      std::lock_guard<std::mutex> lock(mu_);
      more = !incoming_.empty() || !registrations_.empty();
    }
    completions.clear();
    st = backend_->reap(&completions, /*block=*/!more);
    if (!st.ok()) spdlog::error("io engine: {}", st.to_string());
    for (const IoCompletion& c : completions) complete(c);
    run_callbacks();
  }
}

Status IoEngine::Impl::validate(const ReadRequest& req) const {
  if (req.spans.empty()) return InvalidArgument("read request has no spans");
  for (size_t i = 0; i < req.spans.size(); ++i) {
    const ReadSpan& s = req.spans[i];
    std::string where = "read span " + std::to_string(i);
    if (s.file == nullptr) return InvalidArgument(where + ": no file");
    where += " of " + s.file->path + " at offset " + std::to_string(s.offset);
    if (s.bytes == 0) return InvalidArgument(where + ": zero length");
    if (s.offset + s.bytes < s.offset)
      return InvalidArgument(where + ": offset + length overflows");
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max() - kIoAlign;
    if (s.data_at && (s.bytes > kMax || *s.data_at > kMax - s.bytes))
      return InvalidArgument(where + ": data_at + length overflows");
    if (s.region == nullptr || reinterpret_cast<uintptr_t>(s.region) % kIoAlign != 0) {
      return InvalidArgument(where + ": destination region is not 4096-aligned");
    }
    if (s.file->buffered_fd < 0 && (s.file->direct_fd < 0 || !options_.direct)) {
      return InvalidArgument(where + ": file has no open descriptor");
    }
  }
  return Status::Ok();
}

void IoEngine::Impl::accept(Incoming in, bool stopping) {
  Status st = stopping ? Unavailable("io engine: shutting down") : validate(in.req);
  if (!st.ok()) {
    finished_.push_back({std::move(in.req.done), std::move(st), in.req.priority, std::nullopt});
    return;
  }
  auto state = std::make_shared<RequestState>();
  state->req = std::move(in.req);
  state->submitted = in.submitted;
  const std::vector<ReadSpan>& spans = state->req.spans;
  // Refresh the fixed-file slots of every descriptor this request may read with (a short
  // O_DIRECT read finishes on the buffered one).
  std::vector<int> noted;
  for (const ReadSpan& span : spans) {
    bool direct = options_.direct && span.file->direct_fd >= 0;
    for (auto [fd, is_direct] : {std::pair{direct ? span.file->direct_fd : -1, true},
                                 std::pair{span.file->buffered_fd, false}}) {
      if (fd < 0 || std::find(noted.begin(), noted.end(), fd) != noted.end()) continue;
      noted.push_back(fd);
      fixed_.note_file(fd, is_direct, span.file->id);
    }
  }
  std::vector<Run> runs;
  runs.reserve(spans.size());
  for (const ReadSpan& span : spans) {
    runs.push_back(run_of(span));
    if (runs.back().moves) {  // an O_DIRECT read lands the bytes away from data_at
      uint64_t landed = data_offset_in_region(span.offset);
      state->moves.push_back({span.region + landed, span.region + *span.data_at, span.bytes});
    }
  }
  for (size_t i = 0; i < runs.size();) {
    Run run = runs[i];
    size_t j = i + 1;
    for (; j < runs.size() && joins(run, runs[j]); ++j) {
      run.end = std::max(run.end, runs[j].end);
      run.wanted_end = std::max(run.wanted_end, runs[j].wanted_end);
    }
    if (j - i > 1) merged_spans_.fetch_add(j - i, std::memory_order_relaxed);
    expand(state, run);
    i = j;
  }
}

Run IoEngine::Impl::run_of(const ReadSpan& span) const {
  Run r;
  r.file = span.file;
  r.direct = options_.direct && span.file->direct_fd >= 0;
  r.fd = r.direct ? span.file->direct_fd : span.file->buffered_fd;
  r.first_offset = span.offset;
  r.wanted_end = span.offset + span.bytes;
  const uint64_t landed = data_offset_in_region(span.offset);  // where O_DIRECT puts them
  const uint64_t data_at = span.data_at.value_or(landed);
  if (r.direct) {  // the aligned superset, from the start of the region
    r.start = round_down(span.offset, kIoAlign);
    r.end = r.start + region_bytes_for(span.offset, span.bytes);
    r.dst = span.region;
    r.moves = landed != data_at;
  } else {  // just the wanted bytes, straight to data_at
    r.start = span.offset;
    r.end = r.wanted_end;
    r.dst = span.region + data_at;
  }
  return r;
}

bool IoEngine::Impl::joins(const Run& run, const Run& next) {
  return !run.moves && !next.moves && next.file == run.file && next.fd == run.fd &&
         next.direct == run.direct && next.start >= run.start && next.start <= run.end &&
         next.dst == run.dst + (next.start - run.start);
}

void IoEngine::Impl::expand(const std::shared_ptr<RequestState>& state, const Run& run) {
  PendingOp base;
  base.state = state;
  base.file = run.file;
  base.span_offset = run.first_offset;
  base.span_bytes = run.wanted_end - run.first_offset;
  base.direct = run.direct;
  base.fd = run.fd;
  const uint64_t total = run.end - run.start;
  const uint64_t chunk = run.direct ? chunk_direct_ : chunk_buffered_;
  std::deque<PendingOp>& q = queue_of(*state);
  for (uint64_t done = 0; done < total; done += chunk) {
    PendingOp op = base;
    op.offset = run.start + done;
    op.buf = run.dst + done;
    op.len = std::min(chunk, total - done);
    op.needed = std::min(op.len, run.wanted_end > op.offset ? run.wanted_end - op.offset : 0);
    op.wanted = op.needed;
    q.push_back(std::move(op));
    ++state->unfinished_ops;
  }
}

// True (and the read finished unissued) when the read's request failed or was cancelled.
bool IoEngine::Impl::drop_if_dead(const PendingOp& op) {
  RequestState& s = *op.state;
  if (!s.cancelled && s.error.ok() && s.req.cancelled &&
      s.req.cancelled->load(std::memory_order_acquire)) {
    s.cancelled = true;
  }
  return s.cancelled || !s.error.ok();
}

void IoEngine::Impl::dispatch() {
  while (in_flight_count_ < depth_) {
    std::deque<PendingOp>* q = !demand_ops_.empty()     ? &demand_ops_
                               : !prefetch_ops_.empty() ? &prefetch_ops_
                                                        : nullptr;
    if (q == nullptr) return;
    if (drop_if_dead(q->front())) {
      std::shared_ptr<RequestState> state = std::move(q->front().state);
      q->pop_front();
      op_finished(state);
      continue;
    }
    if (q == &prefetch_ops_) {
      // The cap lets one read through when none is in flight, so large ones still go.
      uint64_t len = prefetch_ops_.front().len;
      if (prefetch_bytes_in_flight_ != 0 &&
          prefetch_bytes_in_flight_ + len > options_.prefetch_bytes_in_flight) {
        return;
      }
    }
    PendingOp op = std::move(q->front());
    q->pop_front();
    issue(std::move(op));
  }
}

void IoEngine::Impl::issue(PendingOp op) {
  uint64_t tag = free_tags_.back();
  free_tags_.pop_back();
  ++in_flight_count_;
  in_flight_now_.store(in_flight_count_, std::memory_order_relaxed);
  if (in_flight_count_ > in_flight_peak_.load(std::memory_order_relaxed))
    in_flight_peak_.store(in_flight_count_, std::memory_order_relaxed);
  reads_.fetch_add(1, std::memory_order_relaxed);
  counters(op.state->req.priority).reads.fetch_add(1, std::memory_order_relaxed);
  if (op.state->req.priority == ReadPriority::kDemand) {
    demand_reads_.fetch_add(1, std::memory_order_relaxed);
  } else {
    prefetch_reads_.fetch_add(1, std::memory_order_relaxed);
    prefetch_bytes_in_flight_ += op.len;
  }
  IoOp io{op.fd, op.buf, op.len, op.offset, tag};
  if (int slot = fixed_.file_slot(op.fd); slot >= 0) {
    io.fd = slot;
    io.fixed_file = true;
  }
  io.buf_index = fixed_.buffer_index(op.buf, op.len);
  in_flight_[tag] = std::move(op);
  backend_->read(io);
}

void IoEngine::Impl::complete(const IoCompletion& c) {
  if (c.tag >= in_flight_.size() || !in_flight_[c.tag]) {
    spdlog::error("io engine: completion for unknown read {}", c.tag);
    return;
  }
  PendingOp op = std::move(*in_flight_[c.tag]);
  in_flight_[c.tag].reset();
  free_tags_.push_back(c.tag);
  --in_flight_count_;
  in_flight_now_.store(in_flight_count_, std::memory_order_relaxed);
  if (op.state->req.priority == ReadPriority::kPrefetch) prefetch_bytes_in_flight_ -= op.len;

  if (c.res < 0) {
    int err = static_cast<int>(-c.res);
    if ((err == EINTR || err == EAGAIN) && op.retries < kMaxRetries && op.state->error.ok()) {
      ++op.retries;
      retries_.fetch_add(1, std::memory_order_relaxed);
      requeue(std::move(op));
      return;
    }
    fail(op.state, Status::FromErrno(op.describe(), err));
  } else {
    uint64_t res = static_cast<uint64_t>(c.res);
    bytes_read_.fetch_add(res, std::memory_order_relaxed);
    counters(op.state->req.priority).bytes.fetch_add(res, std::memory_order_relaxed);
    if (res < op.needed) {  // wanted bytes missing: not the aligned tail past EOF
      short_reads_.fetch_add(1, std::memory_order_relaxed);
      if (res > 0 && op.short_resubmits < kMaxShortResubmits && op.state->error.ok()) {
        ++op.short_resubmits;
        op.buf += res;
        op.offset += res;
        op.len -= res;
        op.needed -= res;
        op.got += res;
        if (op.direct && (op.offset % kIoAlign != 0 || op.len % kIoAlign != 0)) {
          if (op.file->buffered_fd < 0) {
            fail(op.state, op.short_read(0));
            op_finished(op.state);
            return;
          }
          op.direct = false;  // an unaligned remainder cannot go O_DIRECT
          op.fd = op.file->buffered_fd;
          op.len = op.needed;
        }
        requeue(std::move(op));
        return;
      }
      fail(op.state, op.short_read(res));
    }
  }
  op_finished(op.state);
}

void IoEngine::Impl::requeue(PendingOp op) {
  std::deque<PendingOp>& q = queue_of(*op.state);
  q.push_front(std::move(op));  // a retry goes before new reads of its priority
}

void IoEngine::Impl::fail(const std::shared_ptr<RequestState>& state, Status st) {
  if (!state->error.ok()) return;
  if (st.code() != Code::kUnavailable || st.message().find("shutting down") == std::string::npos) {
    uint64_t n = errors_.fetch_add(1, std::memory_order_relaxed) + 1;
    counters(state->req.priority).errors.fetch_add(1, std::memory_order_relaxed);
    if (log_this_error(n)) spdlog::warn("io engine: {} (error #{})", st.to_string(), n);
  }
  state->error = std::move(st);
}

void IoEngine::Impl::op_finished(const std::shared_ptr<RequestState>& state) {
  if (--state->unfinished_ops != 0) return;
  Status st = state->error;
  if (st.ok() && !state->cancelled && state->req.cancelled &&
      state->req.cancelled->load(std::memory_order_acquire)) {
    state->cancelled = true;  // cancelled while its last reads were in flight
  }
  if (st.ok() && state->cancelled) {
    const ReadSpan& first = state->req.spans.front();
    st = Unavailable("io engine: cancelled: read of " + first.file->path + " at offset " +
                     std::to_string(first.offset));
    counters(state->req.priority).cancelled.fetch_add(1, std::memory_order_relaxed);
  } else if (st.ok()) {
    // Every read of the request is done, so nothing writes these regions any more.
    for (const Move& m : state->moves) {
      std::memmove(m.to, m.from, m.bytes);
      moves_.fetch_add(1, std::memory_order_relaxed);
      moved_bytes_.fetch_add(m.bytes, std::memory_order_relaxed);
    }
  }
  finished_.push_back(
      {std::move(state->req.done), std::move(st), state->req.priority, state->submitted});
}

void IoEngine::Impl::drop_queued(Status why) {
  for (std::deque<PendingOp>* q : {&demand_ops_, &prefetch_ops_}) {
    while (!q->empty()) {
      std::shared_ptr<RequestState> state = std::move(q->front().state);
      q->pop_front();
      fail(state, why);
      op_finished(state);
    }
  }
}

void IoEngine::Impl::run_callbacks() {
  // Callbacks may submit(): that only takes mu_, never touches engine-thread state.
  std::vector<Finished> batch;
  batch.swap(finished_);
  for (Finished& f : batch) {
    ClassCounters& c = counters(f.priority);
    if (f.submitted) {
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - *f.submitted);
      c.latency.record(static_cast<uint64_t>(std::max<int64_t>(0, us.count())));
    }
    c.requests.fetch_add(1, std::memory_order_relaxed);
    if (f.done) f.done(std::move(f.status));
  }
}

Result<std::unique_ptr<IoEngine>> IoEngine::create(Options options,
                                                   std::unique_ptr<IoBackend> backend) {
  if (options.queue_depth == 0) return InvalidArgument("io engine: queue_depth must be > 0");
  if (options.max_request_bytes == 0) {
    return InvalidArgument("io engine: max_request_bytes must be > 0");
  }
  MOEPOOL_RETURN_IF_ERROR(check_mode(options.mode));
  std::string why = "backend supplied by the caller";
  if (!backend) {
    auto device = open_device(options, &why);
    if (!device.ok()) return device.status();
    backend = std::move(device).value();
  }
  auto impl = std::make_unique<Impl>(std::move(options), std::move(backend));
  MOEPOOL_RETURN_IF_ERROR(impl->start());
  spdlog::info("io engine: using {} ({})", impl->mode_name(), why);
  return std::unique_ptr<IoEngine>(new IoEngine(std::move(impl)));
}

Result<std::unique_ptr<IoBackend>> IoEngine::open_device(const Options& options, std::string* why) {
  std::string reason;
  std::unique_ptr<IoBackend> backend;
  if (options.mode == "auto" || options.mode == "io_uring") {
    auto uring = UringBackend::create(options.queue_depth);
    if (uring.ok()) {
      backend = std::move(uring).value();
      reason = options.mode == "auto" ? "io_uring available" : "mode io_uring";
    } else if (options.mode == "io_uring") {
      return Unavailable("io engine: mode io_uring: " + uring.status().message());
    } else {
      reason = "io_uring unavailable (" + uring.status().message() + "), falling back";
    }
  } else {
    MOEPOOL_RETURN_IF_ERROR(check_mode(options.mode));
    reason = "mode pread";
  }
  if (!backend) {
    auto pread =
        PreadBackend::create(std::max<uint32_t>(1, options.pread_threads), options.queue_depth);
    if (!pread.ok()) return pread.status();
    backend = std::move(pread).value();
  }
  if (why) *why = std::move(reason);
  return backend;
}

IoEngine::IoEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IoEngine::~IoEngine() { stop(); }
void IoEngine::submit(ReadRequest req) { impl_->submit(std::move(req)); }
std::string IoEngine::mode_name() const { return impl_->mode_name(); }
IoEngine::Stats IoEngine::stats() const { return impl_->stats(); }
Status IoEngine::register_buffers(std::vector<std::pair<uint8_t*, uint64_t>> regions) {
  return impl_->register_buffers(std::move(regions));
}
void IoEngine::stop() { impl_->stop(); }

}  // namespace moepool
