// A model file opened for the I/O engine: once with O_DIRECT (aligned reads into pool
// slots) and once buffered (fallback, and for filesystems such as tmpfs that refuse
// O_DIRECT). Functions here may be called from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace moepool {

// Two descriptors of one file. Owned by the caller; must outlive every read request that
// names it. direct_fd is -1 where the filesystem refuses O_DIRECT.
struct ModelFile {
  int direct_fd = -1;
  int buffered_fd = -1;
  std::string path;
  // Unique per open_model_file() call, never reused (0: a ModelFile made by hand): lets the
  // I/O engine tell a descriptor number reused by another file without an fstat per read.
  uint64_t id = 0;
};

// Opens `path` O_RDONLY|O_CLOEXEC (buffered) and O_RDONLY|O_DIRECT|O_CLOEXEC; an EINVAL
// from O_DIRECT (tmpfs) leaves direct_fd at -1, any other error is returned.
Result<ModelFile> open_model_file(const std::string& path);

// Closes both descriptors (those that are >= 0) and sets them to -1. Idempotent.
void close_model_file(ModelFile* file);

}  // namespace moepool
