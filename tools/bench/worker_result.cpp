// Worker-to-parent messages: a fixed header, then the error text, the first-mismatch text
// and the latency samples.
#include "tools/bench/worker_result.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moepool::bench {
namespace {

constexpr uint32_t kMagic = 0x4d504231;       // "MPB1"
constexpr uint32_t kMaxText = 1u << 20;       // bound on each text field
constexpr uint64_t kMaxSamples = 1ull << 32;  // bound on latency samples

struct WireHeader {
  uint32_t magic;
  uint32_t kind;
  uint32_t index;
  uint32_t error_code;
  uint32_t error_len;
  uint32_t mismatch_len;
  uint64_t steps, accesses, hits, acquire_calls, prefetch_calls, prefetch_reads;
  uint64_t bytes_verified, mismatches, n_samples;
  double seconds;
};

Status write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write to the parent's pipe", errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

// Reads exactly n bytes; `*eof_at_start` is set when the pipe ended before any byte.
Status read_all(int fd, void* data, size_t n, bool* eof_at_start = nullptr) {
  char* p = static_cast<char*>(data);
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, p + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read from a worker's pipe", errno);
    }
    if (r == 0) {
      if (got == 0 && eof_at_start) *eof_at_start = true;
      return Unavailable("the worker's pipe ended after " + std::to_string(got) + " of " +
                         std::to_string(n) + " bytes of a message");
    }
    got += static_cast<size_t>(r);
  }
  return Status::Ok();
}

}  // namespace

Status write_ready(int fd) {
  WireHeader h{};
  h.magic = kMagic;
  h.kind = static_cast<uint32_t>(WorkerMessage::kReady);
  return write_all(fd, &h, sizeof h);
}

Status write_result(int fd, const WorkerResult& r) {
  WireHeader h{};
  h.magic = kMagic;
  h.kind = static_cast<uint32_t>(WorkerMessage::kResult);
  h.index = r.index;
  h.error_code = static_cast<uint32_t>(r.error.code());
  std::string err = r.error.message().substr(0, kMaxText);
  std::string mis = r.first_mismatch.substr(0, kMaxText);
  h.error_len = static_cast<uint32_t>(err.size());
  h.mismatch_len = static_cast<uint32_t>(mis.size());
  h.steps = r.steps;
  h.accesses = r.accesses;
  h.hits = r.hits;
  h.acquire_calls = r.acquire_calls;
  h.prefetch_calls = r.prefetch_calls;
  h.prefetch_reads = r.prefetch_reads;
  h.bytes_verified = r.bytes_verified;
  h.mismatches = r.mismatches;
  h.n_samples = r.acquire_ns.size();
  h.seconds = r.seconds;
  MOEPOOL_RETURN_IF_ERROR(write_all(fd, &h, sizeof h));
  MOEPOOL_RETURN_IF_ERROR(write_all(fd, err.data(), err.size()));
  MOEPOOL_RETURN_IF_ERROR(write_all(fd, mis.data(), mis.size()));
  return write_all(fd, r.acquire_ns.data(), r.acquire_ns.size() * sizeof(uint64_t));
}

Status read_message(int fd, WorkerMessage* kind, WorkerResult* r) {
  WireHeader h{};
  bool eof = false;
  Status st = read_all(fd, &h, sizeof h, &eof);
  if (eof) return Unavailable("the worker exited without reporting");
  MOEPOOL_RETURN_IF_ERROR(st);
  if (h.magic != kMagic || (h.kind != 1 && h.kind != 2) || h.error_len > kMaxText ||
      h.mismatch_len > kMaxText || h.n_samples > kMaxSamples)
    return Internal("malformed message from a worker");
  *kind = static_cast<WorkerMessage>(h.kind);
  if (*kind == WorkerMessage::kReady) return Status::Ok();
  std::string err(h.error_len, '\0');
  MOEPOOL_RETURN_IF_ERROR(read_all(fd, err.data(), err.size()));
  r->first_mismatch.assign(h.mismatch_len, '\0');
  MOEPOOL_RETURN_IF_ERROR(read_all(fd, r->first_mismatch.data(), r->first_mismatch.size()));
  r->acquire_ns.resize(h.n_samples);
  MOEPOOL_RETURN_IF_ERROR(
      read_all(fd, r->acquire_ns.data(), r->acquire_ns.size() * sizeof(uint64_t)));
  r->index = h.index;
  r->error =
      h.error_code == 0 ? Status::Ok() : Status(static_cast<Code>(h.error_code), std::move(err));
  r->steps = h.steps;
  r->accesses = h.accesses;
  r->hits = h.hits;
  r->acquire_calls = h.acquire_calls;
  r->prefetch_calls = h.prefetch_calls;
  r->prefetch_reads = h.prefetch_reads;
  r->bytes_verified = h.bytes_verified;
  r->mismatches = h.mismatches;
  r->seconds = h.seconds;
  return Status::Ok();
}

}  // namespace moepool::bench
