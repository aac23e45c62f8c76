// What the I/O engine has registered with its device (io_uring fixed files and fixed
// buffers) and the lookups issue() makes: the fixed-file slot of a descriptor and the
// fixed buffer that holds a read's destination. A refusal falls back to plain reads: the
// whole table (logged once) or one region (logged once per region).
// Thread: the engine thread only, except fixed_buffers() and files_active() (any thread).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/io_backend.h"

namespace moepool {

class FixedResources {
 public:
  static constexpr uint64_t kMaxBufferBytes = 1ULL << 30;  // the kernel's limit per buffer

  // files/buffers: Options::register_files/register_buffers. `backend` outlives this.
  FixedResources(IoBackend* backend, bool files, bool buffers);

  // Makes sure fd's fixed-file slot (if it has one) holds the file fd names now, used as
  // `direct` says: a descriptor number closed and reused by another file gets its slot
  // refreshed. `file_id` (ModelFile::id) tells the files apart without a syscall; where it
  // is 0 or differs from the slot's, an fstat decides. Called for each descriptor of a
  // request when it is accepted; registers fd on first use where a slot is free (else the
  // oldest entry is replaced).
  void note_file(int fd, bool direct, uint64_t file_id = 0);
  // The fixed-file slot holding fd, or -1 (read with the plain fd).
  int file_slot(int fd) const;

  // Replaces the registered buffers by `regions`, each in pieces of at most
  // kMaxBufferBytes; pieces already registered with the same bounds are kept.
  void set_buffers(const std::vector<std::pair<uint8_t*, uint64_t>>& regions);
  // The fixed-buffer index whose memory holds [buf, buf + len), or -1.
  int buffer_index(const uint8_t* buf, uint64_t len) const;

  // Regions registered whole (every piece). Any thread.
  uint32_t fixed_buffers() const { return fixed_buffers_.load(std::memory_order_relaxed); }
  // At least one model file sits in a fixed-file slot. Any thread.
  bool files_active() const { return files_active_.load(std::memory_order_relaxed); }

 private:
  struct FileEntry {
    uint32_t slot;
    dev_t dev;
    ino_t ino;
    bool direct;
    uint64_t file_id;  // ModelFile::id when known, else 0
    uint64_t added;    // order of registration, to replace the oldest when full
  };
  struct Piece {
    uint8_t* base;
    uint64_t len;
    uint32_t slot;
  };

  IoBackend* backend_;
  bool files_on_;
  bool buffers_on_;
  std::unordered_map<int, FileEntry> files_;  // by descriptor
  std::vector<uint32_t> free_file_slots_;
  uint64_t files_added_ = 0;
  std::vector<Piece> pieces_;          // sorted by base
  std::set<uint8_t*> logged_regions_;  // regions whose refusal was logged
  std::atomic<uint32_t> fixed_buffers_{0};
  std::atomic<bool> files_active_{false};
};

}  // namespace moepool
