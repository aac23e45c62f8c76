// Worker sessions. A session is created by Attach for the calling process (its peer
// credentials come from SO_PEERCRED), bound to a Session stream, and ends when that
// stream ends, when its process dies, or when it is never bound; ending it releases
// every pin it holds. Every worker call names its session and must come from the same
// process (pid and uid) that attached it.
// Thread safety: all methods may be called from any thread.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace moepool {

class ExpertCache;

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

struct SessionInfo {
  uint64_t id = 0;
  std::array<uint8_t, 16> token{};
  PeerCred peer;
  std::string name;
  bool bound = false;
  std::chrono::steady_clock::time_point created;
};

class SessionRegistry {
 public:
  static constexpr std::chrono::seconds kBindTimeout{10};

  explicit SessionRegistry(ExpertCache* cache) : cache_(cache) {}

  // Creates a session for `peer` with a random token.
  Result<SessionInfo> create(const PeerCred& peer, const std::string& name);
  // Binds the session to its stream. Errors: unknown id, wrong token, other process,
  // already bound.
  Status bind(uint64_t id, const uint8_t* token, size_t token_len, const PeerCred& caller);
  // Checks that `caller` may act for session `id`.
  Result<SessionInfo> check(uint64_t id, const PeerCred& caller) const;
  // Checks a side-channel request: token matches and the peer is the session's process.
  Result<SessionInfo> check_token(uint64_t id, const uint8_t* token,
                                  const PeerCred& caller) const;
  // Ends a session (releasing its pins). Idempotent.
  void end(uint64_t id, const char* why);
  // Ends sessions never bound within kBindTimeout and sessions whose process is gone.
  void reap();
  size_t count() const;
  // Returns true iff session `id` exists.
  bool alive(uint64_t id) const;

 private:
  ExpertCache* cache_;
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, SessionInfo> sessions_;
};

}  // namespace moepool
