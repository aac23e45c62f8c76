// Byte-for-byte comparison of leased experts with the model file.
#include "tools/bench/expert_verifier.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moepool::bench {

Result<ExpertVerifier> ExpertVerifier::open(const Catalog& catalog) {
  ExpertVerifier v(catalog);
  for (const CatalogFile& f : catalog.files()) {
    int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("open " + f.path, errno);
    v.fds_.push_back(fd);
  }
  return v;
}

ExpertVerifier::ExpertVerifier(ExpertVerifier&& other) noexcept
    : catalog_(other.catalog_), fds_(std::move(other.fds_)), buf_(std::move(other.buf_)) {
  other.fds_.clear();
}

ExpertVerifier::~ExpertVerifier() {
  for (int fd : fds_) ::close(fd);
}

Status ExpertVerifier::read_extent(const Extent& e) {
  if (e.file_index >= fds_.size())
    return Internal("extent names file " + std::to_string(e.file_index) + " of " +
                    std::to_string(fds_.size()));
  buf_.resize(e.bytes);
  uint64_t done = 0;
  while (done < e.bytes) {
    ssize_t n = ::pread(fds_[e.file_index], buf_.data() + done, e.bytes - done,
                        static_cast<off_t>(e.offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("pread " + catalog_->files()[e.file_index].path, errno);
    }
    if (n == 0)
      return Unavailable(catalog_->files()[e.file_index].path + ": short read at byte " +
                         std::to_string(e.offset + done) + " (the file shrank?)");
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status ExpertVerifier::verify(const MoeLayer& layer, uint32_t expert, const Lease& lease,
                              const uint8_t* pool_base, uint64_t* bytes, uint64_t* mismatches,
                              std::string* first_mismatch) {
  const std::string where =
      "layer " + std::to_string(layer.layer) + " expert " + std::to_string(expert);
  auto note = [&](const std::string& what) {
    ++*mismatches;
    if (first_mismatch->empty()) *first_mismatch = where + ": " + what;
  };
  if (lease.expert != expert) {
    note("lease is for expert " + std::to_string(lease.expert));
    return Status::Ok();
  }
  if (lease.slot != pool_base + lease.slot_index * lease.stride)
    note("slot pointer is not pool_base + slot_index * stride");
  if (lease.projections.size() != layer.projections.size())
    note("lease has " + std::to_string(lease.projections.size()) + " projections, the file " +
         std::to_string(layer.projections.size()));
  for (const ProjectionView& view : lease.projections) {
    const ProjTensor* tensor = nullptr;
    for (const ProjTensor& t : layer.projections)
      if (static_cast<uint8_t>(t.kind) == static_cast<uint8_t>(view.kind)) tensor = &t;
    const std::string proj = "projection " + std::to_string(static_cast<int>(view.kind));
    if (!tensor) {
      note(proj + " is not in the file's layer");
      continue;
    }
    const std::string name = std::string(proj_kind_name(tensor->kind));
    if (view.data != lease.slot + view.offset_in_slot) {
      note(name + ": data is not slot + offset_in_slot");
      continue;
    }
    const Extent extent = tensor->expert_extent(expert);
    if (view.bytes != extent.bytes) {
      note(name + ": lease has " + std::to_string(view.bytes) + " bytes, the file " +
           std::to_string(extent.bytes));
      continue;
    }
    MOEPOOL_RETURN_IF_ERROR(read_extent(extent));
    *bytes += extent.bytes;
    if (std::memcmp(view.data, buf_.data(), extent.bytes) != 0) {
      uint64_t at = 0;
      while (at < extent.bytes && view.data[at] == buf_[at]) ++at;
      note(name + ": byte " + std::to_string(at) + " of " + std::to_string(extent.bytes) +
           " differs (file offset " + std::to_string(extent.offset + at) + ")");
    }
  }
  return Status::Ok();
}

}  // namespace moepool::bench
