// A tiny MoE model for unit tests of daemon components that take a Model: `layers` MoE
// layers of `experts` f16 experts (gate, up, down of 64 x 32), written with GgufWriter
// into a test's directory and opened as a Model (catalog and id; no files, no layouts).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/catalog.h"
#include "common/gguf_writer.h"
#include "daemon/model.h"

namespace moepool {

inline std::shared_ptr<Model> tiny_model(const std::string& path, uint32_t layers,
                                         uint32_t experts) {
  GgufWriter w;
  w.add_string("general.architecture", "qwen2moe");
  w.add_string("general.name", "tiny");
  for (uint32_t l = 0; l < layers; ++l)
    for (const char* p : {"gate", "up", "down"}) {
      std::vector<uint64_t> ne = {64, 32, experts};
      if (std::string(p) == "down") ne = {32, 64, experts};
      w.add_tensor("blk." + std::to_string(l) + ".ffn_" + p + "_exps.weight", GgmlType::F16, ne,
                   [](uint64_t, std::span<uint8_t> out) { std::fill(out.begin(), out.end(), 1); });
    }
  EXPECT_TRUE(w.write(path).ok());
  auto cat = Catalog::open(path);
  EXPECT_TRUE(cat.ok()) << cat.status().to_string();
  if (!cat.ok()) return nullptr;
  auto m = std::make_shared<Model>();
  m->catalog = std::move(cat).value();
  m->id_ = m->catalog.model_id();
  return m;
}

}  // namespace moepool
