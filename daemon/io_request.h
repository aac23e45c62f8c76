// The I/O engine's bookkeeping of a request on its way through the engine thread: the
// request's state, the device runs its spans make, and the reads they are split into.
// Internal to io_engine.cpp (a header only to keep that file short).
// Thread: the engine thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/io_engine.h"

namespace moepool::io_internal {

using Clock = std::chrono::steady_clock;

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
  Clock::time_point submitted;
  uint32_t unfinished_ops = 0;  // reads queued or in flight
  Status error;                 // first failure; further reads of the request are dropped
  bool cancelled = false;       // the engine saw req.cancelled: no further reads are issued
  std::vector<Move> moves;      // run before `done` when every read succeeded
};

// A request as submit() hands it over.
struct Incoming {
  ReadRequest req;
  Clock::time_point submitted;
};

// The device reads of consecutive spans of one request that one read covers: same
// descriptor, file ranges that touch or overlap, and destinations laid out as one read
// lays them out (dst + (file position - start)).
struct Run {
  const ModelFile* file = nullptr;
  bool direct = false;
  int fd = -1;
  uint64_t start = 0;         // first file byte read
  uint64_t end = 0;           // one past the last file byte read
  uint8_t* dst = nullptr;     // where file byte `start` goes
  uint64_t first_offset = 0;  // the wanted bytes: [first_offset, wanted_end)
  uint64_t wanted_end = 0;
  bool moves = false;  // a span needs a move: it is read on its own
};

// A finished request, its callback run by run_callbacks().
struct Finished {
  std::function<void(Status)> done;
  Status status;
  ReadPriority priority = ReadPriority::kDemand;
  std::optional<Clock::time_point> submitted;  // set for accepted requests: latency counts
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

}  // namespace moepool::io_internal
