// moepoold's I/O engine: reads expert byte ranges of model files into pool slots, with
// io_uring (or a pread thread pool where io_uring is refused) and O_DIRECT where the file
// allows it. Demand reads are always issued before prefetch reads; prefetch bytes in
// flight are capped. A request completes only after every one of its reads finished.
// Thread: submit(), stats(), mode_name() and stop() may be called from any thread,
// including from a `done` callback; callbacks run on the engine's own thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "daemon/io_backend.h"
#include "daemon/model_file.h"  // struct ModelFile {direct_fd, buffered_fd, path}

namespace moepool {

inline constexpr uint64_t kIoAlign = 4096;  // O_DIRECT offset/length/buffer alignment

enum class ReadPriority { kDemand, kPrefetch };  // demand reads go before prefetch reads

// One contiguous byte range of a model file and where it goes. When the request
// completes, the wanted bytes sit at region + data_at (default: offset % 4096) in every
// mode: O_DIRECT reads the aligned superset from round_down(offset, 4096) into the start
// of the region, and where that lands the wanted bytes elsewhere than data_at the engine
// moves them there (memmove, on the engine thread, before `done`); buffered reads write
// just the wanted bytes straight to region + data_at. Bytes of the region outside the
// wanted range are unspecified.
struct ReadSpan {
  const ModelFile* file = nullptr;
  uint64_t offset = 0;        // file offset of the wanted bytes (GGUF data: 32-byte aligned)
  uint64_t bytes = 0;         // wanted length, > 0
  uint8_t* region = nullptr;  // 4096-aligned; capacity >= region_capacity_for(*this)
  std::optional<uint64_t> data_at;  // where the wanted bytes must end up inside the region
};

// Bytes of destination an O_DIRECT read of a span needs: round_up(offset % 4096 + bytes, 4096).
uint64_t region_bytes_for(uint64_t offset, uint64_t bytes);
// Where an O_DIRECT read lands the wanted bytes inside the region: offset % 4096 (the
// default data_at, so that nothing moves).
uint64_t data_offset_in_region(uint64_t offset);
// Bytes of destination a span needs in every mode: region_bytes_for(offset, bytes), and
// at least data_at + bytes rounded up to 4096.
uint64_t region_capacity_for(const ReadSpan& span);

struct ReadRequest {
  std::vector<ReadSpan> spans;  // all spans of one expert (gate, up, down)
  ReadPriority priority = ReadPriority::kDemand;
  // A prefetch whose slot is no longer wanted: the owner stores true (any thread); the
  // engine then issues none of the request's reads not yet issued, and completes it with
  // kUnavailable "cancelled" once the reads already issued have finished (never ok).
  // Null: not cancellable.
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Called exactly once, on the engine thread, after all spans completed (ok) or after
  // one failed and every read of the request already issued has finished (error naming
  // the file, offset, length and errno, or "short read: got N of M bytes").
  std::function<void(Status)> done;
};

class IoEngine {
 public:
  struct Options {
    std::string mode = "auto";             // "auto" (io_uring, else pread), "io_uring", "pread"
    bool direct = true;                    // use O_DIRECT for files that have a direct_fd
    uint32_t queue_depth = 32;             // reads in flight at most
    uint64_t max_request_bytes = 1 << 20;  // larger reads are split (4096-aligned)
    uint64_t prefetch_bytes_in_flight = 64 << 20;  // cap on prefetch reads in flight
    uint32_t pread_threads = 4;                    // threads of the pread fallback
    // io_uring: register the model files (fixed files) and the regions given to
    // register_buffers() (fixed buffers, READ_FIXED) where the kernel allows.
    bool register_files = true;
    bool register_buffers = true;
  };
  // Per class of request (demand, prefetch).
  struct ClassStats {
    uint64_t requests = 0;        // requests completed (ok, failed or cancelled)
    uint64_t reads = 0;           // device reads issued (incl. retries)
    uint64_t bytes = 0;           // bytes those reads returned
    uint64_t errors = 0;          // requests failed by an I/O error or short read
    uint64_t cancelled = 0;       // requests completed as cancelled
    uint64_t latency_p50_us = 0;  // submit() to `done`, over the last 4096 requests
    uint64_t latency_p99_us = 0;
  };
  struct Stats {
    uint64_t reads = 0;           // read operations issued to the device (incl. retries)
    uint64_t bytes_read = 0;      // bytes those reads returned
    uint64_t errors = 0;          // requests failed by an I/O error or short read
    uint64_t demand_reads = 0;    // reads issued for demand requests
    uint64_t prefetch_reads = 0;  // reads issued for prefetch requests
    uint64_t moves = 0;           // spans an O_DIRECT read landed away from data_at, then moved
    uint64_t moved_bytes = 0;     // bytes those moves copied
    ClassStats demand, prefetch;
    uint32_t queue_depth = 0;     // reads in flight at most (options, capped by the backend)
    uint32_t in_flight = 0;       // reads in flight now
    uint32_t in_flight_peak = 0;  // most reads ever in flight at once
    uint64_t retries = 0;         // EINTR/EAGAIN resubmissions
    uint64_t short_reads = 0;     // completions shorter than asked (resubmitted or failed)
    uint64_t merged_spans = 0;    // spans read by one device read together with a neighbour
    uint32_t fixed_buffers = 0;   // regions registered as io_uring fixed buffers
    bool fixed_files = false;     // model files registered as io_uring fixed files
  };

  // Starts the engine thread. `backend`, when given, replaces the device (mode is then
  // ignored): a test's fault backend, or the device from open_device() wrapped by one.
  // Fails on bad options or when a forced mode is unavailable.
  static Result<std::unique_ptr<IoEngine>> create(Options options,
                                                  std::unique_ptr<IoBackend> backend = nullptr);
  // The device create() picks for `options` when given none: io_uring, or the pread thread
  // pool in mode "pread" or when io_uring is refused in mode "auto". *why, when given,
  // says how it was picked. Fails on an unknown mode or when a forced mode is unavailable.
  static Result<std::unique_ptr<IoBackend>> open_device(const Options& options,
                                                         std::string* why = nullptr);
  ~IoEngine();  // calls stop()
  IoEngine(const IoEngine&) = delete;
  IoEngine& operator=(const IoEngine&) = delete;

  // Queues a request. Bad spans fail it with kInvalidArgument; after stop() it fails with
  // kUnavailable (called on the submitting thread once the engine thread has ended).
  void submit(ReadRequest req);
  // "io_uring+O_DIRECT", "io_uring", "pread+O_DIRECT" or "pread": the path in use (files
  // without a direct_fd are read buffered whatever this says).
  std::string mode_name() const;
  Stats stats() const;
  // Memory reads may land in (the pool's segments): with io_uring and
  // Options::register_buffers, each region is registered as a fixed buffer and reads whose
  // destination lies inside one use READ_FIXED. A region the kernel refuses (e.g. over
  // RLIMIT_MEMLOCK) is read into with plain reads instead, logged once per region. Any
  // thread, any time (the pool may grow); replaces the previous set. Regions must stay
  // mapped until the next call or stop().
  Status register_buffers(std::vector<std::pair<uint8_t*, uint64_t>> regions);
  // Fails queued requests with kUnavailable "shutting down", waits for reads in flight,
  // joins the engine thread. Idempotent. Must not be called from a `done` callback.
  void stop();

 private:
  class Impl;
  explicit IoEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moepool
