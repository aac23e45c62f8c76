#include "common/catalog.h"

#include <limits.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "common/gguf.h"

namespace moepool {
namespace {

// Layer indices at or above this are refused (no model has anywhere near as many).
constexpr uint32_t kMaxLayers = 1u << 16;
// "-00001-of-00003.gguf"
constexpr size_t kSplitSuffixLen = 20;

struct SplitName {
  std::string dir, prefix;  // dir ends in '/'
  uint32_t k = 0, n = 0;    // part k (1-based) of n
};

bool all_digits(std::string_view s) {
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return !s.empty();
}

// Returns the split parts named by `path` (already resolved), or nullopt if it is not
// named like "<prefix>-0000k-of-0000n.gguf".
std::optional<SplitName> parse_split_name(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string_view base = std::string_view(path).substr(dir.size());
  if (base.size() <= kSplitSuffixLen) return std::nullopt;
  std::string_view suffix = base.substr(base.size() - kSplitSuffixLen);
  if (suffix[0] != '-' || !all_digits(suffix.substr(1, 5)) || suffix.substr(6, 4) != "-of-" ||
      !all_digits(suffix.substr(10, 5)) || suffix.substr(15) != ".gguf")
    return std::nullopt;
  SplitName s;
  s.dir = dir;
  s.prefix = std::string(base.substr(0, base.size() - kSplitSuffixLen));
  s.k = static_cast<uint32_t>(std::stoul(std::string(suffix.substr(1, 5))));
  s.n = static_cast<uint32_t>(std::stoul(std::string(suffix.substr(10, 5))));
  return s;
}

std::string split_part_path(const SplitName& s, uint32_t k) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "-%05u-of-%05u.gguf", k, s.n);
  return s.dir + s.prefix + buf;
}

Result<std::string> resolve(const std::string& path, const std::string& what) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return Status::FromErrno(what + " " + path, errno);
  return std::string(buf);
}

std::string stem(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  size_t dot = base.rfind('.');
  return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

// Returns the layer and projection of a routed-expert tensor name, or nullopt for any
// other tensor. Sets *bad_layer if the name matches but the layer index is out of range.
std::optional<std::pair<uint32_t, ProjKind>> parse_expert_name(std::string_view name,
                                                               bool* bad_layer) {
  if (name.substr(0, 4) != "blk.") return std::nullopt;
  name.remove_prefix(4);
  size_t dot = name.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  std::string_view digits = name.substr(0, dot);
  std::string_view rest = name.substr(dot);
  ProjKind kind;
  if (rest == ".ffn_gate_exps.weight")
    kind = ProjKind::kGate;
  else if (rest == ".ffn_up_exps.weight")
    kind = ProjKind::kUp;
  else if (rest == ".ffn_down_exps.weight")
    kind = ProjKind::kDown;
  else if (rest == ".ffn_gate_up_exps.weight")
    kind = ProjKind::kGateUp;
  else
    return std::nullopt;
  if (!all_digits(digits) || (digits.size() > 1 && digits[0] == '0')) return std::nullopt;
  if (digits.size() > 6 || std::stoul(std::string(digits)) >= kMaxLayers) {
    *bad_layer = true;
    return std::nullopt;
  }
  return std::make_pair(static_cast<uint32_t>(std::stoul(std::string(digits))), kind);
}

}  // namespace

const char* proj_kind_name(ProjKind kind) {
  switch (kind) {
    case ProjKind::kGate:
      return "gate";
    case ProjKind::kUp:
      return "up";
    case ProjKind::kDown:
      return "down";
    case ProjKind::kGateUp:
      return "gate_up";
  }
  return "?";
}

// Builds a Catalog from the parsed files of one model.
// Thread safety: one thread per builder.
class CatalogBuilder {
 public:
  static Result<Catalog> build(const std::string& path);

 private:
  // The projections found so far for one layer, indexed by ProjKind - 1.
  struct LayerParts {
    std::optional<ProjTensor> proj[4];
  };

  Status open_files(const std::string& path);
  Status check_split_kvs(const GgufFile& f, uint32_t k, uint32_t n) const;
  Status collect(uint32_t file_index, const GgufFile& f);
  Status finish_layer(uint32_t layer, LayerParts& parts);
  Status identify();

  Catalog c_;
  std::vector<GgufFile> ggufs_;
  std::string stem_;
  std::map<uint32_t, LayerParts> parts_;
  std::unordered_map<std::string, uint32_t> tensor_file_;  // tensor name -> file index
};

Status CatalogBuilder::check_split_kvs(const GgufFile& f, uint32_t k, uint32_t n) const {
  const GgufValue* count = f.find("split.count");
  const GgufValue* no = f.find("split.no");
  if (count != nullptr && f.get_uint("split.count") != uint64_t{n})
    return InvalidArgument(f.name() + ": kv 'split.count' disagrees with the file name, which " +
                           "says " + std::to_string(n) + " part(s)");
  if (no != nullptr && f.get_uint("split.no") != uint64_t{k - 1})
    return InvalidArgument(f.name() + ": kv 'split.no' disagrees with the file name, which " +
                           "says part " + std::to_string(k) + " (split.no " +
                           std::to_string(k - 1) + ")");
  return Status::Ok();
}

Status CatalogBuilder::open_files(const std::string& path) {
  Result<std::string> resolved = resolve(path, "realpath");
  if (!resolved.ok()) return resolved.status();
  std::optional<SplitName> split = parse_split_name(*resolved);
  std::vector<std::string> paths;
  if (split) {
    if (split->n == 0 || split->k == 0 || split->k > split->n)
      return InvalidArgument(*resolved + ": split file name says part " + std::to_string(split->k) +
                             " of " + std::to_string(split->n));
    for (uint32_t k = 1; k <= split->n; ++k) {
      if (k == split->k) {
        paths.push_back(*resolved);
        continue;
      }
      Result<std::string> part =
          resolve(split_part_path(*split, k), "split part " + std::to_string(k) + " of " +
                                                  std::to_string(split->n) + ": realpath");
      if (!part.ok()) return part.status();
      paths.push_back(*part);
    }
    stem_ = split->prefix;
  } else {
    paths.push_back(*resolved);
    stem_ = stem(*resolved);
  }
  for (uint32_t i = 0; i < paths.size(); ++i) {
    Result<GgufFile> f = GgufFile::open(paths[i]);
    if (!f.ok()) return f.status();
    MOEPOOL_RETURN_IF_ERROR(check_split_kvs(*f, i + 1, static_cast<uint32_t>(paths.size())));
    c_.files_.push_back({paths[i], f->file_size(), f->data_offset()});
    ggufs_.push_back(std::move(f).value());
  }
  return Status::Ok();
}

Status CatalogBuilder::collect(uint32_t file_index, const GgufFile& f) {
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const GgufTensorInfo& t = f.tensors()[i];
    auto [it, inserted] = tensor_file_.emplace(t.name, file_index);
    if (!inserted)
      return InvalidArgument(f.name() + ": tensor_info[" + std::to_string(i) + "] '" + t.name +
                             "' at byte " + std::to_string(t.info_offset) + ": also present in " +
                             ggufs_[it->second].name());
    bool bad_layer = false;
    auto parsed = parse_expert_name(t.name, &bad_layer);
    std::string where = f.name() + ": tensor_info[" + std::to_string(i) + "] '" + t.name +
                        "' at byte " + std::to_string(t.info_offset) + ": ";
    if (bad_layer)
      return InvalidArgument(where + "layer index is not below " + std::to_string(kMaxLayers));
    if (!parsed) continue;
    auto [layer, kind] = *parsed;
    if (t.n_dims != 3)
      return InvalidArgument(where + "expert tensor must be 3-D [ne0, ne1, n_expert], has " +
                             std::to_string(t.n_dims) + " dims");
    if (t.ne[2] == 0 || t.ne[2] > std::numeric_limits<uint32_t>::max())
      return InvalidArgument(where + "n_expert (ne[2]) " + std::to_string(t.ne[2]) +
                             " is out of range");
    std::optional<uint64_t> row = ggml_row_bytes(t.type, t.ne[0]);
    uint64_t expert_bytes;
    if (!row || __builtin_mul_overflow(*row, t.ne[1], &expert_bytes))
      return InvalidArgument(where + "expert byte size overflows");
    ProjTensor p{kind,       t.name,        t.type,      {t.ne[0], t.ne[1], t.ne[2]},
                 file_index, t.data_offset, expert_bytes};
    parts_[layer].proj[static_cast<int>(kind) - 1] = std::move(p);
  }
  return Status::Ok();
}

Status CatalogBuilder::finish_layer(uint32_t layer, LayerParts& parts) {
  auto& [gate, up, down, gate_up] = parts.proj;
  std::string where = c_.files_[0].path + ": layer " + std::to_string(layer) + ": ";
  bool complete = down && ((gate && up && !gate_up) || (gate_up && !gate && !up));
  if (!complete) {
    std::string has;
    for (const auto& p : parts.proj)
      if (p)
        has += std::string(has.empty() ? "" : ", ") + "ffn_" + proj_kind_name(p->kind) + "_exps";
    return InvalidArgument(where + "incomplete expert projections (has " + has +
                           "; needs ffn_down_exps with ffn_gate_exps and ffn_up_exps, or with "
                           "ffn_gate_up_exps)");
  }
  MoeLayer m;
  m.layer = layer;
  if (gate_up) {
    m.projections = {std::move(*gate_up), std::move(*down)};
  } else {
    m.projections = {std::move(*gate), std::move(*up), std::move(*down)};
  }
  m.n_experts = static_cast<uint32_t>(m.projections[0].ne[2]);
  for (const ProjTensor& p : m.projections) {
    if (p.ne[2] != m.n_experts)
      return InvalidArgument(where + "'" + p.tensor_name + "' has " + std::to_string(p.ne[2]) +
                             " experts but '" + m.projections[0].tensor_name + "' has " +
                             std::to_string(m.n_experts));
    if (__builtin_add_overflow(m.expert_bytes, p.expert_bytes, &m.expert_bytes))
      return InvalidArgument(where + "expert byte size overflows");
  }
  c_.layer_index_.resize(layer + 1, -1);
  c_.layer_index_[layer] = static_cast<int32_t>(c_.layers_.size());
  c_.layers_.push_back(std::move(m));
  return Status::Ok();
}

// Model identity: xxh64 over, per file in order, its size (8 bytes LE), its header bytes
// and kIdentitySamples blocks of its tensor data spread evenly from the data start to the
// end. The header alone cannot tell apart two fine-tunes converted the same way (same
// metadata, shapes and sizes); sampled data can, for the cost of a few small reads.
Status CatalogBuilder::identify() {
  constexpr int kIdentitySamples = 4;
  constexpr uint64_t kSampleBytes = 4096;
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> st(XXH64_createState(),
                                                                &XXH64_freeState);
  XXH64_reset(st.get(), 0);
  std::vector<uint8_t> block(kSampleBytes);
  for (size_t i = 0; i < ggufs_.size(); ++i) {
    const GgufFile& f = ggufs_[i];
    uint8_t size[8];
    for (int b = 0; b < 8; ++b) size[b] = static_cast<uint8_t>(f.file_size() >> (8 * b));
    XXH64_update(st.get(), size, sizeof(size));
    XXH64_update(st.get(), f.header_bytes().data(), f.header_bytes().size());
    if (f.file_size() <= f.data_offset()) continue;
    const std::string& path = c_.files_[i].path;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("open " + path, errno);
    uint64_t data = f.file_size() - f.data_offset();
    uint64_t n = std::min(kSampleBytes, data);
    for (int k = 0; k < kIdentitySamples; ++k) {
      uint64_t at = f.data_offset() + (data - n) * k / (kIdentitySamples - 1);
      ssize_t got = ::pread(fd, block.data(), n, static_cast<off_t>(at));
      if (got != static_cast<ssize_t>(n)) {
        int err = got < 0 ? errno : EIO;
        ::close(fd);
        return Status::FromErrno("read " + path + " at byte " + std::to_string(at), err);
      }
      XXH64_update(st.get(), block.data(), n);
    }
    ::close(fd);
  }
  c_.model_id_ = XXH64_digest(st.get());
  return Status::Ok();
}

Result<Catalog> CatalogBuilder::build(const std::string& path) {
  CatalogBuilder b;
  MOEPOOL_RETURN_IF_ERROR(b.open_files(path));
  const GgufFile& first = b.ggufs_[0];
  b.c_.name_ = first.get_string("general.name").value_or(b.stem_);
  b.c_.arch_ = first.get_string("general.architecture").value_or("");
  if (!b.c_.arch_.empty()) {
    std::optional<uint64_t> n = first.get_uint(b.c_.arch_ + ".block_count");
    if (n && *n <= std::numeric_limits<uint32_t>::max())
      b.c_.block_count_ = static_cast<uint32_t>(*n);
  }
  for (uint32_t i = 0; i < b.ggufs_.size(); ++i) MOEPOOL_RETURN_IF_ERROR(b.collect(i, b.ggufs_[i]));
  for (auto& [layer, parts] : b.parts_) MOEPOOL_RETURN_IF_ERROR(b.finish_layer(layer, parts));
  MOEPOOL_RETURN_IF_ERROR(b.identify());
  return std::move(b.c_);
}

Result<Catalog> Catalog::open(const std::string& path) { return CatalogBuilder::build(path); }

uint64_t Catalog::total_bytes() const {
  uint64_t sum = 0;
  for (const CatalogFile& f : files_) sum += f.size;
  return sum;
}

const MoeLayer* Catalog::layer(uint32_t layer) const {
  if (layer >= layer_index_.size() || layer_index_[layer] < 0) return nullptr;
  return &layers_[static_cast<size_t>(layer_index_[layer])];
}

}  // namespace moepool
