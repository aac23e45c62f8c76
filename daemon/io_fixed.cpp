#include "daemon/io_fixed.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>

namespace moepool {

FixedResources::FixedResources(IoBackend* backend, bool files, bool buffers)
    : backend_(backend), files_on_(files), buffers_on_(buffers) {
  uint32_t file_slots = files_on_ ? backend_->fixed_file_slots() : 0;
  files_on_ = file_slots > 0;
  for (uint32_t i = file_slots; i > 0; --i) free_file_slots_.push_back(i - 1);
  buffers_on_ = buffers_on_ && backend_->fixed_buffer_slots() > 0;
}

void FixedResources::note_file(int fd, bool direct, uint64_t file_id) {
  if (!files_on_ || fd < 0) return;
  auto it = files_.find(fd);
  if (it != files_.end() && file_id != 0 && it->second.file_id == file_id &&
      it->second.direct == direct) {
    return;  // the same open file: no syscall
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {  // not open: the request fails at its read, plainly
    if (it != files_.end()) {
      free_file_slots_.push_back(it->second.slot);
      files_.erase(it);
    }
    return;
  }
  if (it != files_.end() && it->second.dev == st.st_dev && it->second.ino == st.st_ino &&
      it->second.direct == direct && (file_id == 0 || it->second.file_id == 0)) {
    it->second.file_id = file_id;
    return;  // the slot still holds this file
  }
  uint32_t slot;
  if (it != files_.end()) {  // the number now names another file: refresh its slot
    slot = it->second.slot;
    files_.erase(it);
  } else if (!free_file_slots_.empty()) {
    slot = free_file_slots_.back();
    free_file_slots_.pop_back();
  } else {  // full: replace the oldest (a read issued later just uses the plain fd)
    auto oldest = std::min_element(files_.begin(), files_.end(), [](const auto& a, const auto& b) {
      return a.second.added < b.second.added;
    });
    if (oldest == files_.end()) return;
    slot = oldest->second.slot;
    files_.erase(oldest);
  }
  Status s = backend_->set_fixed_file(slot, fd);
  if (!s.ok()) {
    free_file_slots_.push_back(slot);
    if (backend_->fixed_file_slots() == 0) {  // the table itself was refused
      spdlog::warn("io engine: fixed files refused ({}); reading with plain descriptors",
                   s.to_string());
      files_on_ = false;
      files_.clear();
      files_active_.store(false, std::memory_order_relaxed);
    } else {
      spdlog::warn("io engine: fixed file slot {} refused for fd {} ({}); plain descriptor", slot,
                   fd, s.to_string());
    }
    return;
  }
  files_[fd] = FileEntry{slot, st.st_dev, st.st_ino, direct, file_id, ++files_added_};
  files_active_.store(true, std::memory_order_relaxed);
}

int FixedResources::file_slot(int fd) const {
  if (!files_on_) return -1;
  auto it = files_.find(fd);
  return it == files_.end() ? -1 : static_cast<int>(it->second.slot);
}

void FixedResources::set_buffers(const std::vector<std::pair<uint8_t*, uint64_t>>& regions) {
  if (!buffers_on_) return;
  struct Wanted {
    Piece piece;
    size_t region;
  };
  std::vector<Wanted> wanted;
  for (size_t r = 0; r < regions.size(); ++r) {
    auto [base, len] = regions[r];
    for (uint64_t at = 0; at < len; at += kMaxBufferBytes)
      wanted.push_back({Piece{base + at, std::min(kMaxBufferBytes, len - at), 0}, r});
  }
  // Keep pieces registered with the same bounds (pinning again costs time); free the rest.
  std::vector<bool> old_kept(pieces_.size(), false);
  std::vector<Piece> next;
  std::vector<Wanted> to_add;
  for (const Wanted& w : wanted) {
    auto it = std::find_if(pieces_.begin(), pieces_.end(), [&](const Piece& p) {
      return p.base == w.piece.base && p.len == w.piece.len;
    });
    if (it != pieces_.end() && !old_kept[static_cast<size_t>(it - pieces_.begin())]) {
      old_kept[static_cast<size_t>(it - pieces_.begin())] = true;
      next.push_back(*it);
    } else {
      to_add.push_back(w);
    }
  }
  std::vector<uint32_t> free_slots;
  std::vector<bool> used(backend_->fixed_buffer_slots(), false);
  for (size_t i = 0; i < pieces_.size(); ++i) {
    if (old_kept[i]) {
      used[pieces_[i].slot] = true;
    } else {
      (void)backend_->set_fixed_buffer(pieces_[i].slot, nullptr, 0);  // unpins it
    }
  }
  for (uint32_t s = static_cast<uint32_t>(used.size()); s > 0; --s)
    if (!used[s - 1]) free_slots.push_back(s - 1);
  std::vector<bool> region_ok(regions.size(), true);
  for (const Wanted& w : to_add) {
    Status st = free_slots.empty()
                    ? Status(Code::kResourceExhausted, "no free fixed-buffer slot")
                    : backend_->set_fixed_buffer(free_slots.back(), w.piece.base, w.piece.len);
    if (st.ok()) {
      next.push_back(Piece{w.piece.base, w.piece.len, free_slots.back()});
      free_slots.pop_back();
      continue;
    }
    region_ok[w.region] = false;
    if (backend_->fixed_buffer_slots() == 0) {  // the table itself was refused
      spdlog::warn("io engine: fixed buffers refused ({}); plain reads", st.to_string());
      buffers_on_ = false;
      pieces_.clear();
      fixed_buffers_.store(0, std::memory_order_relaxed);
      return;
    }
    uint8_t* base = regions[w.region].first;
    if (logged_regions_.insert(base).second) {
      spdlog::warn(
          "io engine: region at {} ({} bytes) not registered as a fixed buffer ({}); "
          "plain reads into it",
          static_cast<const void*>(base), regions[w.region].second, st.to_string());
    }
  }
  std::sort(next.begin(), next.end(),
            [](const Piece& a, const Piece& b) { return a.base < b.base; });
  pieces_ = std::move(next);
  fixed_buffers_.store(static_cast<uint32_t>(std::count(region_ok.begin(), region_ok.end(), true)),
                       std::memory_order_relaxed);
}

int FixedResources::buffer_index(const uint8_t* buf, uint64_t len) const {
  if (pieces_.empty()) return -1;
  auto it = std::upper_bound(pieces_.begin(), pieces_.end(), buf,
                             [](const uint8_t* b, const Piece& p) { return b < p.base; });
  if (it == pieces_.begin()) return -1;
  --it;
  uint64_t at = static_cast<uint64_t>(buf - it->base);
  if (at >= it->len || len > it->len - at) return -1;
  return static_cast<int>(it->slot);
}

}  // namespace moepool
