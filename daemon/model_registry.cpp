#include "daemon/model_registry.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <climits>
#include <cstdlib>

namespace moepool {
namespace {

Result<FileStamp> stamp_of(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("stat " + path, errno);
  return FileStamp{st.st_dev, st.st_ino, static_cast<uint64_t>(st.st_size),
                   st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec};
}

}  // namespace

ModelRegistry::ModelRegistry(std::vector<std::string> roots, ExpertCache* cache,
                             OpenHook on_open)
    : roots_(std::move(roots)), cache_(cache), on_open_(std::move(on_open)) {}

bool ModelRegistry::under_roots(const std::string& p) const {
  for (const std::string& root : roots_) {
    if (root == "/") return true;
    if (p.size() > root.size() && p.compare(0, root.size(), root) == 0 && p[root.size()] == '/')
      return true;
  }
  return false;
}

Result<std::shared_ptr<Model>> ModelRegistry::open(const std::string& path, uint64_t session) {
  if (path.empty()) return InvalidArgument("empty model path");
  if (path[0] != '/') return InvalidArgument("model path '" + path + "' is not absolute");
  char resolved[PATH_MAX];
  if (!realpath(path.c_str(), resolved)) {
    int err = errno;
    // Do not tell a caller outside the roots whether a file exists there.
    if (!under_roots(path))
      return PermissionDenied("'" + path + "' is outside the model roots");
    return Status::FromErrno("open model '" + path + "'", err);
  }
  std::string real = resolved;
  if (!under_roots(real))
    return PermissionDenied("'" + path + "' resolves to '" + real +
                            "', outside the model roots (models.roots)");

  std::lock_guard<std::mutex> open_lock(open_mu_);
  auto catalog = Catalog::open(real);
  if (!catalog.ok()) return catalog.status();
  for (const CatalogFile& f : catalog->files())
    if (!under_roots(f.path))
      return PermissionDenied("split part '" + f.path + "' is outside the model roots");
  if (catalog->layers().empty())
    return InvalidArgument("'" + path + "' has no routed-expert tensors (blk.N.ffn_*_exps.weight)");
  std::vector<FileStamp> stamps;
  for (const CatalogFile& f : catalog->files()) {
    auto st = stamp_of(f.path);
    if (!st.ok()) return st.status();
    stamps.push_back(*st);
  }
  // Same content as a model already open: share it — unless this is the very file that
  // model was opened from and it has changed since (rewritten or replaced): its old
  // experts must not be served for it, so it becomes a model of its own.
  uint64_t id = catalog->model_id();
  if (auto existing = find(id)) {
    bool same_files = existing->catalog.files().size() == catalog->files().size();
    for (size_t i = 0; same_files && i < stamps.size(); ++i)
      same_files = existing->catalog.files()[i].path == catalog->files()[i].path;
    if (!same_files || existing->stamps == stamps) {
      std::lock_guard<std::mutex> lock(mu_);
      openers_[existing->id()].insert(session);
      return existing;
    }
    id = XXH64(stamps.data(), stamps.size() * sizeof(FileStamp), id);
    if (auto changed = find(id)) {
      std::lock_guard<std::mutex> lock(mu_);
      openers_[changed->id()].insert(session);
      return changed;
    }
    auto [evicted, pinned] = cache_->evict_model(existing->id());
    spdlog::warn("model file '{}' changed since it was opened; serving it as a new model "
                 "(dropped {} cached experts of the old one, {} still pinned)",
                 real, evicted, pinned);
  }

  auto model = std::make_shared<Model>();
  model->catalog = std::move(catalog).value();
  model->id_ = id;
  model->stamps = std::move(stamps);
  model->path = real;
  for (const CatalogFile& f : model->catalog.files()) {
    auto file = open_model_file(f.path);
    if (!file.ok()) return file.status();
    model->files.push_back(std::move(file).value());
  }
  if (on_open_) {
    uint64_t open_bytes = 0;
    for (const auto& m : list())
      for (const FileStamp& st : m->stamps) open_bytes += st.size;
    on_open_(model.get(), open_bytes);
  }
  MOEPOOL_RETURN_IF_ERROR(cache_->prepare_model(model.get()));
  std::lock_guard<std::mutex> lock(mu_);
  models_[model->id()] = model;
  openers_[model->id()].insert(session);
  return model;
}

std::vector<uint64_t> ModelRegistry::openers(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = openers_.find(id);
  if (it == openers_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

std::shared_ptr<Model> ModelRegistry::find(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(id);
  return it == models_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Model>> ModelRegistry::list() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Model>> out;
  for (const auto& [id, m] : models_) out.push_back(m);
  return out;
}

}  // namespace moepool
