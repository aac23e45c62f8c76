#include "daemon/io_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include "daemon/pread_backend.h"
#include "daemon/uring_backend.h"

namespace moepool {
namespace {

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

// Bytes an O_DIRECT read landed away from the span's data_at: moved once the request's
// reads all succeeded.
struct Move {
  uint8_t* from;
  uint8_t* to;
  uint64_t bytes;
};

// Engine-thread state of one request.
struct RequestState {
  ReadRequest req;
  uint32_t unfinished_ops = 0;  // reads queued or in flight
  Status error;                 // first failure; further reads of the request are dropped
  std::vector<Move> moves;      // run before `done` when every read succeeded
};

// One device read of (part of) a span.
struct PendingOp {
  std::shared_ptr<RequestState> state;
  const ModelFile* file = nullptr;
  uint64_t span_offset = 0;  // the span, for error messages
  uint64_t span_bytes = 0;
  bool direct = false;
  int fd = -1;
  uint8_t* buf = nullptr;
  uint64_t offset = 0;
  uint64_t len = 0;     // bytes asked of the device
  uint64_t needed = 0;  // of those, the wanted ones (the rest is aligned tail past them)
  uint64_t wanted = 0;  // wanted bytes of this op when first issued
  uint64_t got = 0;     // wanted bytes already read by earlier (short) reads
  int retries = 0;
  int short_resubmits = 0;

  // Names the span and the device read, for error messages.
  std::string describe() const {
    return "read " + file->path + " offset " + std::to_string(span_offset) + " length " +
           std::to_string(span_bytes) + " (device read at " + std::to_string(offset) + " +" +
           std::to_string(len) + (direct ? ", O_DIRECT)" : ")");
  }
  Status short_read(uint64_t res) const {
    return Unavailable(describe() + ": short read: got " + std::to_string(got + res) + " of " +
                       std::to_string(wanted) + " bytes");
  }
};

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
      : options_(std::move(options)), backend_(std::move(backend)) {
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
        incoming_.push_back(std::move(req));
        backend_->wake();
        return;
      }
    }
    if (req.done) req.done(Unavailable("io engine: shutting down"));
  }

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

  Stats stats() const {
    Stats s;
    s.reads = reads_.load(std::memory_order_relaxed);
    s.bytes_read = bytes_read_.load(std::memory_order_relaxed);
    s.errors = errors_.load(std::memory_order_relaxed);
    s.demand_reads = demand_reads_.load(std::memory_order_relaxed);
    s.prefetch_reads = prefetch_reads_.load(std::memory_order_relaxed);
    s.moves = moves_.load(std::memory_order_relaxed);
    s.moved_bytes = moved_bytes_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  using Finished = std::vector<std::pair<std::function<void(Status)>, Status>>;

  void run();
  void accept(ReadRequest req, bool stopping);
  Status validate(const ReadRequest& req) const;
  void expand(const std::shared_ptr<RequestState>& state, const ReadSpan& span);
  void dispatch();
  void issue(PendingOp op);
  void complete(const IoCompletion& c);
  void requeue(PendingOp op);
  void fail(const std::shared_ptr<RequestState>& state, Status st);
  void op_finished(const std::shared_ptr<RequestState>& state);
  void drop_queued(Status why);
  void run_callbacks();
  std::deque<PendingOp>& queue_of(const RequestState& s) {
    return s.req.priority == ReadPriority::kDemand ? demand_ops_ : prefetch_ops_;
  }

  const Options options_;
  std::unique_ptr<IoBackend> backend_;
  uint32_t depth_ = 1;
  uint64_t chunk_direct_ = kIoAlign;
  uint64_t chunk_buffered_ = kIoAlign;

  std::mutex mu_;  // guards incoming_, stopping_, exited_
  std::vector<ReadRequest> incoming_;
  bool stopping_ = false;
  bool exited_ = false;  // the engine thread took its last requests; submit() fails inline

  std::mutex join_mu_;  // serializes joins of thread_
  std::thread thread_;
  std::atomic<std::thread::id> engine_thread_id_{};

  // Engine thread only.
  std::deque<PendingOp> demand_ops_;
  std::deque<PendingOp> prefetch_ops_;
  std::vector<std::optional<PendingOp>> in_flight_;  // by tag
  std::vector<uint64_t> free_tags_;
  uint32_t in_flight_count_ = 0;
  uint64_t prefetch_bytes_in_flight_ = 0;
  Finished finished_;

  std::atomic<uint64_t> reads_{0}, bytes_read_{0}, errors_{0}, demand_reads_{0}, prefetch_reads_{0};
  std::atomic<uint64_t> moves_{0}, moved_bytes_{0};
};

void IoEngine::Impl::run() {
  engine_thread_id_.store(std::this_thread::get_id());
  std::vector<ReadRequest> batch;
  std::vector<IoCompletion> completions;
  for (;;) {
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(incoming_);
      stopping = stopping_;
    }
    for (ReadRequest& req : batch) accept(std::move(req), stopping);
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
        break;
      }
      continue;  // callbacks submitted more; fail them on the next turn
    }
    completions.clear();
    st = backend_->reap(&completions, /*block=*/true);
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

void IoEngine::Impl::accept(ReadRequest req, bool stopping) {
  Status st = stopping ? Unavailable("io engine: shutting down") : validate(req);
  if (!st.ok()) {
    finished_.emplace_back(std::move(req.done), std::move(st));
    return;
  }
  auto state = std::make_shared<RequestState>();
  state->req = std::move(req);
  for (const ReadSpan& span : state->req.spans) expand(state, span);
}

void IoEngine::Impl::expand(const std::shared_ptr<RequestState>& state, const ReadSpan& span) {
  PendingOp base;
  base.state = state;
  base.file = span.file;
  base.span_offset = span.offset;
  base.span_bytes = span.bytes;
  base.direct = options_.direct && span.file->direct_fd >= 0;
  base.fd = base.direct ? span.file->direct_fd : span.file->buffered_fd;
  const uint64_t wanted_end = span.offset + span.bytes;
  uint64_t start, total, chunk;
  uint8_t* dst;
  const uint64_t landed = data_offset_in_region(span.offset);  // where O_DIRECT puts them
  const uint64_t data_at = span.data_at.value_or(landed);
  if (base.direct) {  // the aligned superset, from the start of the region
    start = round_down(span.offset, kIoAlign);
    total = region_bytes_for(span.offset, span.bytes);
    chunk = chunk_direct_;
    dst = span.region;
    if (landed != data_at)
      state->moves.push_back({span.region + landed, span.region + data_at, span.bytes});
  } else {  // just the wanted bytes, straight to data_at
    start = span.offset;
    total = span.bytes;
    chunk = chunk_buffered_;
    dst = span.region + data_at;
  }
  std::deque<PendingOp>& q = queue_of(*state);
  for (uint64_t done = 0; done < total; done += chunk) {
    PendingOp op = base;
    op.offset = start + done;
    op.buf = dst + done;
    op.len = std::min(chunk, total - done);
    op.needed = std::min(op.len, wanted_end > op.offset ? wanted_end - op.offset : 0);
    op.wanted = op.needed;
    q.push_back(std::move(op));
    ++state->unfinished_ops;
  }
}

void IoEngine::Impl::dispatch() {
  while (in_flight_count_ < depth_) {
    std::deque<PendingOp>* q = nullptr;
    if (!demand_ops_.empty()) {
      q = &demand_ops_;
    } else if (!prefetch_ops_.empty()) {
      // The cap lets one read through when none is in flight, so large ones still go.
      uint64_t len = prefetch_ops_.front().len;
      if (prefetch_bytes_in_flight_ != 0 &&
          prefetch_bytes_in_flight_ + len > options_.prefetch_bytes_in_flight) {
        return;
      }
      q = &prefetch_ops_;
    } else {
      return;
    }
    PendingOp op = std::move(q->front());
    q->pop_front();
    if (!op.state->error.ok()) {  // its request already failed: drop the read
      op_finished(op.state);
      continue;
    }
    issue(std::move(op));
  }
}

void IoEngine::Impl::issue(PendingOp op) {
  uint64_t tag = free_tags_.back();
  free_tags_.pop_back();
  ++in_flight_count_;
  reads_.fetch_add(1, std::memory_order_relaxed);
  if (op.state->req.priority == ReadPriority::kDemand) {
    demand_reads_.fetch_add(1, std::memory_order_relaxed);
  } else {
    prefetch_reads_.fetch_add(1, std::memory_order_relaxed);
    prefetch_bytes_in_flight_ += op.len;
  }
  IoOp io{op.fd, op.buf, op.len, op.offset, tag};
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
  if (op.state->req.priority == ReadPriority::kPrefetch) prefetch_bytes_in_flight_ -= op.len;

  if (c.res < 0) {
    int err = static_cast<int>(-c.res);
    if ((err == EINTR || err == EAGAIN) && op.retries < kMaxRetries && op.state->error.ok()) {
      ++op.retries;
      requeue(std::move(op));
      return;
    }
    fail(op.state, Status::FromErrno(op.describe(), err));
  } else {
    uint64_t res = static_cast<uint64_t>(c.res);
    bytes_read_.fetch_add(res, std::memory_order_relaxed);
    if (res < op.needed) {  // wanted bytes missing: not the aligned tail past EOF
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
    if (log_this_error(n)) spdlog::warn("io engine: {} (error #{})", st.to_string(), n);
  }
  state->error = std::move(st);
}

void IoEngine::Impl::op_finished(const std::shared_ptr<RequestState>& state) {
  if (--state->unfinished_ops != 0) return;
  if (state->error.ok()) {
    // Every read of the request is done, so nothing writes these regions any more.
    for (const Move& m : state->moves) {
      std::memmove(m.to, m.from, m.bytes);
      moves_.fetch_add(1, std::memory_order_relaxed);
      moved_bytes_.fetch_add(m.bytes, std::memory_order_relaxed);
    }
  }
  finished_.emplace_back(std::move(state->req.done), state->error);
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
  Finished batch;
  batch.swap(finished_);
  for (auto& [done, st] : batch) {
    if (done) done(std::move(st));
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

Result<std::unique_ptr<IoBackend>> IoEngine::open_device(const Options& options,
                                                          std::string* why) {
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
void IoEngine::stop() { impl_->stop(); }

}  // namespace moepool
