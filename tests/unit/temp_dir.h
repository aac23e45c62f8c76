// A temporary directory for a test, removed with everything in it. It lives on a real
// filesystem (/var/tmp, else next to the build) so O_DIRECT behaves as on a model disk.
#pragma once

#include <gtest/gtest.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

namespace moepool {

// Returns true iff `p` is on tmpfs.
inline bool is_tmpfs(const std::filesystem::path& p) {
  struct statfs s;
  return statfs(p.c_str(), &s) == 0 && s.f_type == TMPFS_MAGIC;
}

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "moepool_test") {
    std::filesystem::path base = "/var/tmp";
    if (!std::filesystem::is_directory(base) || is_tmpfs(base))
      base = std::filesystem::path(MOEPOOL_BIN_DIR).parent_path();
    std::string tmpl = (base / (prefix + ".XXXXXX")).string();
    char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr) << "mkdtemp " << tmpl << ": " << std::strerror(errno);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace moepool
