// Test helper: the bytes of a file range, read with pread (failures are test failures).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

namespace moepool::testing {

inline std::vector<uint8_t> read_range(const std::string& path, uint64_t offset, uint64_t bytes) {
  std::vector<uint8_t> buf(bytes);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  if (fd < 0) return {};
  uint64_t done = 0;
  while (done < bytes) {
    ssize_t n = ::pread(fd, buf.data() + done, bytes - done, static_cast<off_t>(offset + done));
    EXPECT_GT(n, 0) << path << " at " << offset + done;
    if (n <= 0) break;
    done += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return buf;
}

}  // namespace moepool::testing
