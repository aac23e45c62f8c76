#include "tools/synth/inspect.h"

#include <cstdio>
#include <vector>

#include "common/json_writer.h"
#include "common/catalog.h"
#include "common/gguf.h"
#include "common/units.h"

namespace moepool {
namespace {

std::string json_string(std::string_view s) { return JsonWriter::quote(s); }

template <typename It>
std::string json_u64_array(It begin, It end) {
  std::string out = "[";
  for (It it = begin; it != end; ++it) {
    if (it != begin) out += ", ";
    out += std::to_string(*it);
  }
  return out + "]";
}

std::string shape(const uint64_t* ne, size_t n) {
  std::string out = "[";
  for (size_t i = 0; i < n; ++i) out += (i ? ", " : "") + std::to_string(ne[i]);
  return out + "]";
}

void write_json(const Catalog& cat, const std::vector<GgufFile>& files, std::ostream& out) {
  out << "{\n  \"model_id\": " << json_string(std::to_string(cat.model_id())) << ",\n";
  out << "  \"architecture\": " << json_string(cat.architecture()) << ",\n";
  out << "  \"name\": " << json_string(cat.name()) << ",\n";
  out << "  \"block_count\": " << cat.block_count() << ",\n";
  out << "  \"total_bytes\": " << cat.total_bytes() << ",\n";
  out << "  \"files\": [";
  for (size_t i = 0; i < cat.files().size(); ++i) {
    const CatalogFile& f = cat.files()[i];
    out << (i ? "," : "") << "\n    {\"path\": " << json_string(f.path) << ", \"size\": " << f.size
        << ", \"data_offset\": " << f.data_offset << ", \"tensors\": [";
    const auto& ts = files[i].tensors();
    for (size_t j = 0; j < ts.size(); ++j) {
      const GgufTensorInfo& t = ts[j];
      out << (j ? "," : "") << "\n      {\"name\": " << json_string(t.name)
          << ", \"type\": " << json_string(ggml_type_name(t.type))
          << ", \"type_id\": " << static_cast<uint32_t>(t.type)
          << ", \"ne\": " << json_u64_array(t.ne, t.ne + t.n_dims)
          << ", \"data_offset\": " << t.data_offset << ", \"bytes\": " << t.bytes << "}";
    }
    out << (ts.empty() ? "" : "\n    ") << "]}";
  }
  out << "\n  ],\n  \"layers\": [";
  for (size_t i = 0; i < cat.layers().size(); ++i) {
    const MoeLayer& l = cat.layers()[i];
    out << (i ? "," : "") << "\n    {\"layer\": " << l.layer << ", \"n_experts\": " << l.n_experts
        << ", \"expert_bytes\": " << l.expert_bytes << ", \"projections\": [";
    for (size_t j = 0; j < l.projections.size(); ++j) {
      const ProjTensor& p = l.projections[j];
      out << (j ? "," : "") << "\n      {\"kind\": " << json_string(proj_kind_name(p.kind))
          << ", \"tensor_name\": " << json_string(p.tensor_name)
          << ", \"type\": " << json_string(ggml_type_name(p.type))
          << ", \"type_id\": " << static_cast<uint32_t>(p.type)
          << ", \"ne\": " << json_u64_array(p.ne, p.ne + 3) << ", \"file_index\": " << p.file_index
          << ", \"data_offset\": " << p.data_offset << ", \"expert_bytes\": " << p.expert_bytes
          << "}";
    }
    out << "\n    ]}";
  }
  out << "\n  ]\n}\n";
}

void write_text(const Catalog& cat, const std::vector<GgufFile>& files, std::ostream& out) {
  char id[32];
  std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(cat.model_id()));
  out << "model " << cat.name() << " (" << cat.architecture() << ", " << cat.block_count()
      << " blocks, " << format_bytes(cat.total_bytes()) << ", id " << id << ")\n";
  for (size_t i = 0; i < cat.files().size(); ++i) {
    const CatalogFile& f = cat.files()[i];
    out << "file " << i << ": " << f.path << "  " << f.size << " bytes, data at " << f.data_offset
        << ", " << files[i].tensors().size() << " tensors\n";
    for (const GgufTensorInfo& t : files[i].tensors())
      out << "  " << t.name << "  " << ggml_type_name(t.type) << " " << shape(t.ne, t.n_dims)
          << "  @" << t.data_offset << "  " << t.bytes << " bytes\n";
  }
  out << cat.layers().size() << " MoE layers\n";
  for (const MoeLayer& l : cat.layers()) {
    out << "layer " << l.layer << ": " << l.n_experts << " experts of "
        << format_bytes(l.expert_bytes) << " (" << l.expert_bytes << " bytes)\n";
    for (const ProjTensor& p : l.projections)
      out << "  " << proj_kind_name(p.kind) << "  " << p.tensor_name << "  "
          << ggml_type_name(p.type) << " " << shape(p.ne, 3) << "  file " << p.file_index << " @"
          << p.data_offset << ", " << p.expert_bytes << " bytes per expert\n";
  }
}

}  // namespace

Status synth_inspect(const std::string& path, bool json, std::ostream& out) {
  Result<Catalog> cat = Catalog::open(path);
  if (!cat.ok()) return cat.status();
  std::vector<GgufFile> files;
  for (const CatalogFile& f : cat->files()) {
    Result<GgufFile> g = GgufFile::open(f.path);
    if (!g.ok()) return g.status();
    files.push_back(std::move(*g));
  }
  if (json) {
    write_json(*cat, files, out);
  } else {
    write_text(*cat, files, out);
  }
  out.flush();
  if (!out) return Unavailable("inspect " + path + ": writing the output failed");
  return Status::Ok();
}

}  // namespace moepool
