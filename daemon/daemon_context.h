// The daemon's components, wired together once in main() and shared by the gRPC
// services. Owned by main(); outlives the services.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
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
class PopularityStore;
class Prefetcher;
class Warmup;

struct DaemonContext {
  DaemonConfig config;
  Pool* pool = nullptr;
  IoEngine* io = nullptr;
  ExpertCache* cache = nullptr;
  ModelRegistry* models = nullptr;
  SessionRegistry* sessions = nullptr;
  Listener* listener = nullptr;
  PopularityStore* popularity = nullptr;  // counts Acquire's demands; saved in state_dir
  Prefetcher* prefetcher = nullptr;       // null when prefetch.predictor is off
  Warmup* warmup = nullptr;               // warms a model's first open from its popularity
  // The quotas set so far (config, then Admin.SetQuota), by model name; ExpertCache holds
  // the ones in force. quota_mu serialises setting both, so SetQuota's "unset fields keep
  // their value" reads what is in force.
  std::mutex quota_mu;
  std::map<std::string, Quota> quotas;
  std::string fd_socket;
  std::vector<gid_t> admin_gids;  // admin.groups resolved at start
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

}  // namespace moepool
