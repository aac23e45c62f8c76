#include "daemon/model_registry.h"

#include <climits>
#include <cstdlib>

namespace moepool {

ModelRegistry::ModelRegistry(std::vector<std::string> roots, ExpertCache* cache)
    : roots_(std::move(roots)), cache_(cache) {}

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
  if (auto existing = find(catalog->model_id())) {
    std::lock_guard<std::mutex> lock(mu_);
    openers_[existing->id()].insert(session);
    return existing;
  }

  auto model = std::make_shared<Model>();
  model->catalog = std::move(catalog).value();
  model->path = real;
  for (const CatalogFile& f : model->catalog.files()) {
    auto file = open_model_file(f.path);
    if (!file.ok()) return file.status();
    model->files.push_back(std::move(file).value());
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
