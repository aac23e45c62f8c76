// The models the daemon has opened, by content identity: two workers opening the same
// files (by any path, or a copy) get the same Model and so share its experts.
// Only files under the configured model roots can be opened (paths are resolved first,
// so a symlink cannot lead outside a root).
// Thread safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/expert_cache.h"
#include "daemon/model.h"

namespace moepool {

class ModelRegistry {
 public:
  // Called once per new model, after its files are opened and before the cache prepares
  // it, with the bytes of the files of the models already open: decides how the model's
  // files are read (serve.cpp closes direct_fd for buffered reads, see io.direct).
  using OpenHook = std::function<void(Model* model, uint64_t open_models_file_bytes)>;

  // `roots` must already be resolved (realpath) directories.
  ModelRegistry(std::vector<std::string> roots, ExpertCache* cache, OpenHook on_open = nullptr);

  // Opens (or finds) the model at `path` for `session`. Errors: kPermissionDenied outside
  // the roots, kNotFound, kInvalidArgument for a malformed GGUF (message names the field).
  Result<std::shared_ptr<Model>> open(const std::string& path, uint64_t session);
  // Sessions that opened model `id` (some may have ended since; the caller filters).
  std::vector<uint64_t> openers(uint64_t id) const;
  // The model with this id, or nullptr.
  std::shared_ptr<Model> find(uint64_t id) const;
  std::vector<std::shared_ptr<Model>> list() const;

  // Returns true iff resolved path `p` lies inside one of the roots.
  bool under_roots(const std::string& p) const;

 private:
  std::vector<std::string> roots_;
  ExpertCache* cache_;
  OpenHook on_open_;
  mutable std::mutex mu_;
  std::mutex open_mu_;  // serialises opens so one model is prepared once
  std::map<uint64_t, std::shared_ptr<Model>> models_;
  std::map<uint64_t, std::set<uint64_t>> openers_;  // model id -> sessions
};

}  // namespace moepool
