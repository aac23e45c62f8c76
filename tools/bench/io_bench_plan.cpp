#include "tools/bench/io_bench_plan.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "common/catalog.h"
#include "daemon/io_engine.h"

namespace moepool::bench {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t div_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// Destination bytes a read of `bytes` at any offset may need: the worst offset % 4096.
uint64_t worst_region(uint64_t bytes) {
  return std::max(region_bytes_for(kIoAlign - 1, bytes), region_bytes_for(0, bytes));
}

// Parses one unsigned number (decimal, or hex with 0x) filling the whole token.
bool parse_u64(const std::string& tok, uint64_t* v) {
  if (tok.empty() || tok[0] == '-' || tok[0] == '+') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long x = strtoull(tok.c_str(), &end, 0);
  if (errno != 0 || end != tok.c_str() + tok.size()) return false;
  *v = x;
  return true;
}

}  // namespace

Result<IoReadPlan> IoReadPlan::sequential(uint64_t file_size, uint64_t block, uint64_t total,
                                          uint64_t start) {
  if (file_size == 0) return InvalidArgument("the file is empty: nothing to read");
  if (block == 0 || total == 0) return InvalidArgument("block and byte count must be > 0");
  if (start >= file_size)
    return InvalidArgument("--offset " + std::to_string(start) + " is not inside the file (" +
                           std::to_string(file_size) + " bytes)");
  IoReadPlan p;
  p.kind_ = Kind::kSeq;
  p.file_size_ = file_size;
  p.block_ = block;
  p.total_ = total;
  p.start_ = start;
  // The first pass runs from start to the end of the file, every later one from 0.
  const uint64_t first = file_size - start;
  if (total <= first) {
    p.count_ = div_up(total, block);
  } else {
    const uint64_t rest = total - first;
    p.count_ = div_up(first, block) + rest / file_size * div_up(file_size, block) +
               div_up(rest % file_size, block);
  }
  const uint64_t most = std::min(block, file_size);
  p.max_region_ = (block % kIoAlign == 0 && start % kIoAlign == 0) ? region_bytes_for(0, most)
                                                                     : worst_region(most);
  p.desc_ = "seq from offset " + std::to_string(start);
  return p;
}

Result<IoReadPlan> IoReadPlan::random(uint64_t file_size, uint64_t block, uint64_t total,
                                      uint64_t seed) {
  if (block == 0 || total == 0) return InvalidArgument("block and byte count must be > 0");
  if (file_size < block)
    return InvalidArgument("the file (" + std::to_string(file_size) +
                           " bytes) is smaller than one block (" + std::to_string(block) +
                           " bytes): no block-aligned random reads possible");
  IoReadPlan p;
  p.kind_ = Kind::kRand;
  p.file_size_ = file_size;
  p.block_ = block;
  p.total_ = total;
  p.seed_ = seed;
  p.count_ = div_up(total, block);
  p.max_region_ = block % kIoAlign == 0 ? region_bytes_for(0, block) : worst_region(block);
  p.desc_ = "rand (seed " + std::to_string(seed) + ", " + std::to_string(file_size / block) +
            " blocks)";
  return p;
}

Result<IoReadPlan> IoReadPlan::extents(const std::string& path, uint64_t file_size) {
  std::ifstream in(path);
  if (!in) return Status::FromErrno("open extents file " + path, errno);
  IoReadPlan p;
  p.kind_ = Kind::kList;
  p.file_size_ = file_size;
  std::string line;
  uint64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = path + ":" + std::to_string(lineno);
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream ss(line);
    std::string a, b, extra;
    if (!(ss >> a)) continue;  // blank or comment
    uint64_t off = 0, len = 0;
    if (!(ss >> b) || (ss >> extra) || !parse_u64(a, &off) || !parse_u64(b, &len))
      return InvalidArgument(where + ": malformed extent line '" + line +
                             "' (want two unsigned numbers: offset length)");
    if (len == 0) return InvalidArgument(where + ": extent length is 0");
    if (off > file_size || len > file_size - off)
      return InvalidArgument(where + ": extent " + std::to_string(off) + " +" +
                             std::to_string(len) + " ends past the end of the file (" +
                             std::to_string(file_size) + " bytes)");
    p.list_.push_back({off, len});
    p.total_ += len;
    ReadSpan span;
    span.offset = off;
    span.bytes = len;
    p.max_region_ = std::max(p.max_region_, region_capacity_for(span));
  }
  if (in.bad()) return Status::FromErrno("read extents file " + path, errno);
  if (p.list_.empty()) return InvalidArgument(path + ": no extents (want 'offset length' lines)");
  p.count_ = p.list_.size();
  p.desc_ = "extents from " + path + " (" + std::to_string(p.count_) + " requests)";
  return p;
}

IoRange IoReadPlan::at(uint64_t i) const {
  switch (kind_) {
    case Kind::kSeq: {
      const uint64_t first = file_size_ - start_;
      const uint64_t n_first = div_up(first, block_);
      uint64_t off, done;  // file offset, and bytes read before this read
      if (i < n_first) {
        off = start_ + i * block_;
        done = i * block_;
      } else {
        const uint64_t per_pass = div_up(file_size_, block_);
        const uint64_t j = i - n_first;
        off = (j % per_pass) * block_;
        done = first + (j / per_pass) * file_size_ + off;
      }
      uint64_t len = std::min(block_, file_size_ - off);
      len = std::min(len, total_ - done);
      return {off, len};
    }
    case Kind::kRand: {
      const uint64_t blocks = file_size_ / block_;
      const uint64_t off = splitmix64(seed_ ^ splitmix64(i)) % blocks * block_;
      return {off, std::min(block_, total_ - i * block_)};
    }
    case Kind::kList:
      return list_[i];
  }
  return {};
}

Status print_expert_extents(const std::string& model, uint32_t layers, uint32_t top_k,
                            uint64_t seed, FILE* out) {
  auto catalog = Catalog::open(model);
  if (!catalog.ok()) return catalog.status();
  if (catalog->files().size() != 1)
    return InvalidArgument("model " + model + " is split over " +
                           std::to_string(catalog->files().size()) +
                           " files; --print-extents writes offsets of one file only");
  const auto& all = catalog->layers();
  if (all.empty()) return InvalidArgument("model " + model + " has no MoE layers");
  const uint32_t n = layers == 0 ? all.size() : std::min<uint32_t>(layers, all.size());
  if (layers > all.size())
    return InvalidArgument("model " + model + " has " + std::to_string(all.size()) +
                           " MoE layers, --layers asks for " + std::to_string(layers));
  std::mt19937_64 rng(seed);
  fprintf(out, "# %s (%s), file %s\n", catalog->name().c_str(), catalog->architecture().c_str(),
          catalog->files()[0].path.c_str());
  fprintf(out, "# one token: %u random experts (seed %" PRIu64
          ") in each of the first %u MoE layers; gate, up, down each; offset length\n",
          top_k, seed, n);
  for (uint32_t l = 0; l < n; ++l) {
    const MoeLayer& layer = all[l];
    if (top_k == 0 || top_k > layer.n_experts)
      return InvalidArgument("--top-k " + std::to_string(top_k) + " is not in 1.." +
                             std::to_string(layer.n_experts) + " (experts of blk." +
                             std::to_string(layer.layer) + ")");
    std::vector<uint32_t> ids(layer.n_experts);
    for (uint32_t e = 0; e < layer.n_experts; ++e) ids[e] = e;
    for (uint32_t k = 0; k < top_k; ++k) {  // partial Fisher-Yates: k distinct experts
      std::uniform_int_distribution<uint32_t> pick(k, layer.n_experts - 1);
      std::swap(ids[k], ids[pick(rng)]);
    }
    for (uint32_t k = 0; k < top_k; ++k) {
      fprintf(out, "# blk.%u expert %u\n", layer.layer, ids[k]);
      for (const ProjTensor& t : layer.projections) {
        const Extent e = t.expert_extent(ids[k]);
        fprintf(out, "%" PRIu64 " %" PRIu64 "\n", e.offset, e.bytes);
      }
    }
  }
  return Status::Ok();
}

}  // namespace moepool::bench
