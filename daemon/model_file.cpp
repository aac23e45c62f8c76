#include "daemon/model_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace moepool {

Result<ModelFile> open_model_file(const std::string& path) {
  static std::atomic<uint64_t> next_id{1};
  ModelFile file;
  file.path = path;
  file.id = next_id.fetch_add(1, std::memory_order_relaxed);
  file.buffered_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.buffered_fd < 0) return Status::FromErrno("open " + path, errno);
  struct stat st {};
  if (::fstat(file.buffered_fd, &st) != 0) {
    int err = errno;
    close_model_file(&file);
    return Status::FromErrno("fstat " + path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    close_model_file(&file);
    return InvalidArgument("open " + path + ": not a regular file");
  }
  file.direct_fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (file.direct_fd < 0) {
    int err = errno;
    if (err != EINVAL) {  // EINVAL: the filesystem has no O_DIRECT (tmpfs); read buffered
      close_model_file(&file);
      return Status::FromErrno("open O_DIRECT " + path, err);
    }
    file.direct_fd = -1;
  }
  return file;
}

void close_model_file(ModelFile* file) {
  if (file->direct_fd >= 0) ::close(file->direct_fd);
  if (file->buffered_fd >= 0) ::close(file->buffered_fd);
  file->direct_fd = -1;
  file->buffered_fd = -1;
}

}  // namespace moepool
