// moepool_debug_expert_extent (moepool/moepool.h): the file range of one expert, from a
// local parse of the model with common/catalog.h, so tests and tools written in C can
// compare what the pool serves with the file. No daemon involved.
// Thread safety: stateless; any thread.
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "common/catalog.h"
#include "moepool/moepool.h"

namespace {

void set_error(char** errptr, const moepool::Status& st) {
  if (errptr == nullptr) return;
  std::free(*errptr);
  std::string msg = st.to_string();
  *errptr = static_cast<char*>(std::malloc(msg.size() + 1));
  if (*errptr != nullptr) std::memcpy(*errptr, msg.c_str(), msg.size() + 1);
}

moepool::Status expert_extent(const char* path, uint32_t layer, uint32_t expert, uint32_t proj,
                              std::string* file, moepool::Extent* extent) {
  if (path == nullptr) return moepool::InvalidArgument("path is NULL");
  auto catalog = moepool::Catalog::open(path);
  if (!catalog.ok()) return catalog.status();
  const moepool::MoeLayer* l = catalog->layer(layer);
  if (l == nullptr) {
    return moepool::InvalidArgument(std::string(path) + ": layer " + std::to_string(layer) +
                                    " has no routed experts");
  }
  if (expert >= l->n_experts) {
    return moepool::InvalidArgument(std::string(path) + ": layer " + std::to_string(layer) +
                                    " has " + std::to_string(l->n_experts) +
                                    " experts, asked for " + std::to_string(expert));
  }
  if (proj >= l->projections.size()) {
    return moepool::InvalidArgument(std::string(path) + ": layer " + std::to_string(layer) +
                                    " has " + std::to_string(l->projections.size()) +
                                    " projections, asked for index " + std::to_string(proj));
  }
  *extent = l->projections[proj].expert_extent(expert);
  *file = catalog->files().at(extent->file_index).path;
  return moepool::Status::Ok();
}

}  // namespace

extern "C" int moepool_debug_expert_extent(const char* path, uint32_t layer, uint32_t expert,
                                           uint32_t proj, char** file_path, uint64_t* offset,
                                           uint64_t* bytes, char** errptr) {
  try {
    std::string file;
    moepool::Extent extent;
    moepool::Status st = expert_extent(path, layer, expert, proj, &file, &extent);
    if (!st.ok()) {
      set_error(errptr, st);
      return -1;
    }
    if (file_path != nullptr) {
      *file_path = static_cast<char*>(std::malloc(file.size() + 1));
      if (*file_path != nullptr) std::memcpy(*file_path, file.c_str(), file.size() + 1);
    }
    if (offset != nullptr) *offset = extent.offset;
    if (bytes != nullptr) *bytes = extent.bytes;
    return 0;
  } catch (const std::exception& e) {
    set_error(errptr, moepool::Internal(std::string("libmoepool: ") + e.what()));
  } catch (...) {
    set_error(errptr, moepool::Internal("libmoepool: unknown exception"));
  }
  return -1;
}
