#include "daemon/shm_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

namespace moepool {

Result<std::unique_ptr<ShmSegment>> ShmSegment::create(const std::string& name, uint64_t bytes,
                                                       void* at) {
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Status::FromErrno("memfd_create " + name, errno);
  auto fail = [&](const char* what) {
    int err = errno;
    close(fd);
    return Status::FromErrno(std::string(what) + " " + name, err);
  };
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) return fail("ftruncate");
  // Reserve the pages now so a full tmpfs or memory cgroup fails here, not at first use.
  if (fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0 && errno != EOPNOTSUPP)
    return fail("fallocate");
  int flags = MAP_SHARED | (at ? MAP_FIXED : 0);
  void* p = mmap(at, bytes, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED) return fail("mmap");
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE) != 0) {
    // Older kernels lack F_SEAL_FUTURE_WRITE; still seal the size.
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
      int err = errno;
      munmap(p, bytes);
      close(fd);
      return Status::FromErrno("seal " + name, err);
    }
  }
  return std::unique_ptr<ShmSegment>(
      new ShmSegment(fd, static_cast<uint8_t*>(p), bytes, at != nullptr));
}

ShmSegment::~ShmSegment() {
  if (fixed_) {
    // Give the range back to the caller's PROT_NONE reservation.
    mmap(data_, bytes_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  } else {
    munmap(data_, bytes_);
  }
  close(fd_);
}

double ShmSegment::prefault() {
  auto t0 = std::chrono::steady_clock::now();
  long page = sysconf(_SC_PAGESIZE);
  // MADV_POPULATE_WRITE (5.14+) faults everything in one call; else touch each page.
#ifdef MADV_POPULATE_WRITE
  if (madvise(data_, bytes_, MADV_POPULATE_WRITE) != 0)
#endif
  {
    for (uint64_t off = 0; off < bytes_; off += static_cast<uint64_t>(page))
      reinterpret_cast<volatile uint8_t*>(data_)[off] = 0;
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

Status ShmSegment::lock() {
  if (mlock(data_, bytes_) != 0) return Status::FromErrno("mlock", errno);
  return Status::Ok();
}

}  // namespace moepool
