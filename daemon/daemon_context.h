// The daemon's components, wired together once in main() and shared by the gRPC
// services. Owned by main(); outlives the services.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <sys/types.h>

#include "daemon/config.h"

namespace moepool {

class Pool;
class IoEngine;
class ExpertCache;
class ModelRegistry;
class SessionRegistry;
class Listener;

struct DaemonContext {
  DaemonConfig config;
  Pool* pool = nullptr;
  IoEngine* io = nullptr;
  ExpertCache* cache = nullptr;
  ModelRegistry* models = nullptr;
  SessionRegistry* sessions = nullptr;
  Listener* listener = nullptr;
  std::string fd_socket;
  std::vector<gid_t> admin_gids;  // admin.groups resolved at start
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

}  // namespace moepool
