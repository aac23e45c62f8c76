// Checks leased expert bytes against the model file: every projection of a lease is
// compared with the file bytes at that expert's extent, read with pread each time
// (nothing cached), so a wrong, stale or torn slot shows up as a mismatch.
// Thread safety: one instance per thread (it owns a read buffer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/catalog.h"
#include "common/status.h"
#include "moepool/client.h"

namespace moepool::bench {

class ExpertVerifier {
 public:
  // Opens every file of `catalog` read-only; `catalog` must outlive the verifier.
  static Result<ExpertVerifier> open(const Catalog& catalog);
  ExpertVerifier(ExpertVerifier&& other) noexcept;
  ExpertVerifier& operator=(ExpertVerifier&&) = delete;
  ~ExpertVerifier();

  // Compares the projections of `lease` (asked for as expert `expert` of `layer`) with
  // the file. Adds compared bytes to `*bytes` and differing projections to `*mismatches`;
  // the first difference seen is described in `*first_mismatch` if that is empty. An
  // error means the file could not be read, not that bytes differed.
  Status verify(const MoeLayer& layer, uint32_t expert, const Lease& lease,
                const uint8_t* pool_base, uint64_t* bytes, uint64_t* mismatches,
                std::string* first_mismatch);

 private:
  explicit ExpertVerifier(const Catalog& catalog) : catalog_(&catalog) {}
  Status read_extent(const Extent& extent);

  const Catalog* catalog_;
  std::vector<int> fds_;
  std::vector<uint8_t> buf_;
};

}  // namespace moepool::bench
