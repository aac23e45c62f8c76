#include "daemon/session_registry.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "daemon/expert_cache.h"

namespace moepool {

Result<SessionInfo> SessionRegistry::create(const PeerCred& peer, const std::string& name) {
  SessionInfo s;
  if (getrandom(s.token.data(), s.token.size(), 0) != static_cast<ssize_t>(s.token.size()))
    return Status::FromErrno("getrandom", errno);
  s.peer = peer;
  s.name = name.substr(0, 128);
  s.created = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.id = next_id_++;
    sessions_[s.id] = s;
  }
  cache_->add_session(s.id);
  spdlog::info("session {} attached: pid {} uid {} gid {} name '{}'", s.id, peer.pid, peer.uid,
               peer.gid, s.name);
  return s;
}

Status SessionRegistry::bind(uint64_t id, const uint8_t* token, size_t token_len,
                             const PeerCred& caller) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return NotFound("no session " + std::to_string(id));
  SessionInfo& s = it->second;
  if (token_len != s.token.size() || std::memcmp(token, s.token.data(), s.token.size()) != 0)
    return PermissionDenied("wrong token for session " + std::to_string(id));
  if (caller.pid != s.peer.pid || caller.uid != s.peer.uid)
    return PermissionDenied("session " + std::to_string(id) + " belongs to another process");
  if (s.bound) return FailedPrecondition("session " + std::to_string(id) + " already has a stream");
  s.bound = true;
  return Status::Ok();
}

Result<SessionInfo> SessionRegistry::check(uint64_t id, const PeerCred& caller) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return NotFound("no session " + std::to_string(id) + " (call Attach)");
  if (caller.pid != it->second.peer.pid || caller.uid != it->second.peer.uid)
    return PermissionDenied("session " + std::to_string(id) + " belongs to another process");
  return it->second;
}

Result<SessionInfo> SessionRegistry::check_token(uint64_t id, const uint8_t* token,
                                                 const PeerCred& caller) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return NotFound("no session " + std::to_string(id));
  if (std::memcmp(token, it->second.token.data(), it->second.token.size()) != 0)
    return PermissionDenied("wrong token for session " + std::to_string(id));
  if (caller.uid != it->second.peer.uid || caller.pid != it->second.peer.pid)
    return PermissionDenied("session " + std::to_string(id) + " belongs to another process");
  return it->second;
}

void SessionRegistry::end(uint64_t id, const char* why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sessions_.erase(id)) return;
  }
  cache_->release_session(id);
  spdlog::info("session {} ended ({}); its pins are released", id, why);
}

void SessionRegistry::reap() {
  std::vector<std::pair<uint64_t, const char*>> dead;
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, s] : sessions_) {
      if (!s.bound && now - s.created > kBindTimeout)
        dead.emplace_back(id, "never opened its session stream");
      else if (s.peer.pid > 0 && kill(s.peer.pid, 0) != 0 && errno == ESRCH)
        dead.emplace_back(id, "process is gone");
    }
  }
  for (auto [id, why] : dead) end(id, why);
}

size_t SessionRegistry::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

}  // namespace moepool

namespace moepool {

bool SessionRegistry::alive(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.count(id) != 0;
}

}  // namespace moepool
