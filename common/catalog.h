// The expert catalog of one model: which tensors hold routed experts, layer by layer,
// and the exact file byte range of every expert of every projection.
//
// Expert e of a 3-D tensor [ne0, ne1, n_expert] of type t is the contiguous range
//   data_offset + e * expert_bytes, expert_bytes = ggml_row_bytes(t, ne0) * ne1.
// Tensors recognised: blk.<L>.ffn_{gate,up,down}_exps.weight and the fused
// blk.<L>.ffn_gate_up_exps.weight. A split model (name-0000k-of-0000n.gguf) is one
// catalog over all its files; opening any one of them opens the whole model.
// Thread safety: immutable after open(); any thread may read it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/ggml_types.h"
#include "common/status.h"

namespace moepool {

enum class ProjKind : uint8_t { kGate = 1, kUp = 2, kDown = 3, kGateUp = 4 };
// Returns "gate", "up", "down" or "gate_up".
const char* proj_kind_name(ProjKind kind);

// One file byte range.
struct Extent {
  uint32_t file_index = 0;  // into Catalog::files()
  uint64_t offset = 0;      // absolute byte offset in that file
  uint64_t bytes = 0;
};

// One projection tensor of a MoE layer, holding all experts of that projection.
struct ProjTensor {
  ProjKind kind;
  std::string tensor_name;   // e.g. "blk.3.ffn_gate_exps.weight"
  GgmlType type;
  uint64_t ne[3];            // [ne0, ne1, n_expert]
  uint32_t file_index;
  uint64_t data_offset;      // absolute file offset of expert 0
  uint64_t expert_bytes;     // bytes of one expert of this projection

  // Returns the file range of expert `e` (caller checks e < ne[2]).
  Extent expert_extent(uint32_t e) const {
    return {file_index, data_offset + uint64_t{e} * expert_bytes, expert_bytes};
  }
};

// The routed experts of one layer; projections in order gate, up, down (or gate_up, down).
struct MoeLayer {
  uint32_t layer = 0;
  uint32_t n_experts = 0;
  uint64_t expert_bytes = 0;  // sum over projections
  std::vector<ProjTensor> projections;
};

struct CatalogFile {
  std::string path;        // as resolved (realpath)
  uint64_t size = 0;
  uint64_t data_offset = 0;  // start of the tensor data section (aligned)
};

class Catalog {
 public:
  // Parses the model at `path` (every split part if it is one) and builds the catalog.
  // Errors name the file, the field and its byte offset.
  static Result<Catalog> open(const std::string& path);

  // Content identity: xxh64 over every file's size, header bytes [0, data_offset) and
  // four 4 KiB samples of its tensor data (so same-shaped fine-tunes differ).
  uint64_t model_id() const { return model_id_; }
  const std::string& name() const { return name_; }          // general.name or file stem
  const std::string& architecture() const { return arch_; }  // general.architecture
  uint32_t block_count() const { return block_count_; }      // <arch>.block_count or 0
  const std::vector<CatalogFile>& files() const { return files_; }
  uint64_t total_bytes() const;  // sum of file sizes
  // MoE layers in increasing layer order.
  const std::vector<MoeLayer>& layers() const { return layers_; }
  // Returns the MoE layer with index `layer`, or nullptr if that layer has no experts.
  const MoeLayer* layer(uint32_t layer) const;

 private:
  friend class CatalogBuilder;
  uint64_t model_id_ = 0;
  std::string name_, arch_;
  uint32_t block_count_ = 0;
  std::vector<CatalogFile> files_;
  std::vector<MoeLayer> layers_;
  std::vector<int32_t> layer_index_;  // layer -> index into layers_, -1 if none
};

}  // namespace moepool
