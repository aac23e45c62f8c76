// Creation and ownership checks of the directories a DaemonConfig names (see config.h).
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "daemon/config.h"

namespace moepool {
namespace {

constexpr mode_t kNewDirMode = 0750;

// mkdir -p `dir`, new components with kNewDirMode; then checks the leaf (see config.h).
Status prepare_dir(const std::string& dir, const char* key) {
  std::filesystem::path p(dir);
  std::filesystem::path sofar;
  for (const auto& part : p) {
    sofar /= part;
    if (sofar == sofar.root_path()) continue;
    if (::mkdir(sofar.c_str(), kNewDirMode) != 0 && errno != EEXIST) {
      return Status::FromErrno(std::string(key) + ": mkdir " + sofar.string(), errno);
    }
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    return Status::FromErrno(std::string(key) + ": lstat " + dir, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return FailedPrecondition(std::string(key) + ": " + dir +
                              " is not a directory (a symlink or a file is refused)");
  }
  uid_t me = ::geteuid();
  if (st.st_uid != me && st.st_uid != 0) {
    return PermissionDenied(std::string(key) + ": " + dir + " is owned by uid " +
                            std::to_string(st.st_uid) + ", not by this daemon (uid " +
                            std::to_string(me) + ") or root; remove it or choose another path");
  }
  if ((st.st_mode & S_IWOTH) != 0 && (st.st_mode & S_ISVTX) == 0) {
    return PermissionDenied(std::string(key) + ": " + dir +
                            " is writable by everyone; chmod o-w it or choose another path");
  }
  return Status::Ok();
}

}  // namespace

Status prepare_config_dirs(const DaemonConfig& cfg) {
  std::string sock_dir = std::filesystem::path(cfg.socket_path).parent_path().string();
  if (!sock_dir.empty()) MOEPOOL_RETURN_IF_ERROR(prepare_dir(sock_dir, "daemon.socket"));
  if (!cfg.state_dir.empty())
    MOEPOOL_RETURN_IF_ERROR(prepare_dir(cfg.state_dir, "daemon.state_dir"));
  return Status::Ok();
}

}  // namespace moepool
