#include "daemon/expert_predictor.h"

#include <algorithm>

namespace moepool {

void ExpertPredictor::Table::grow(uint32_t w) {
  if (w <= width) return;
  std::vector<float> c(size_t{w} * w, 0.0f);
  for (uint32_t a = 0; a < width; ++a)
    std::copy_n(counts.begin() + size_t{a} * width, width, c.begin() + size_t{a} * w);
  counts = std::move(c);
  row_totals.resize(w, 0.0f);
  width = w;
}

void ExpertPredictor::learn(uint64_t model, uint32_t layer, const std::vector<uint32_t>& prev,
                            const std::vector<uint32_t>& next, uint32_t distance) {
  if (prev.empty() || next.empty() || distance == 0) return;
  Table& t = tables_[key(model, layer, distance)];
  uint32_t w = 0;
  for (uint32_t e : prev) w = std::max(w, e + 1);
  for (uint32_t e : next) w = std::max(w, e + 1);
  t.grow(w);
  for (uint32_t a : prev) {
    float* row = t.counts.data() + size_t{a} * t.width;
    if (t.row_totals[a] >= static_cast<float>(row_cap_)) {
      for (uint32_t b = 0; b < t.width; ++b) row[b] *= 0.5f;
      t.row_totals[a] *= 0.5f;
    }
    for (uint32_t b : next) row[b] += 1.0f;
    t.row_totals[a] += 1.0f;
  }
}

std::vector<ExpertGuess> ExpertPredictor::predict(uint64_t model, uint32_t layer,
                                                  const std::vector<uint32_t>& experts,
                                                  size_t max, double min_probability,
                                                  uint32_t distance) const {
  std::vector<ExpertGuess> out;
  auto it = tables_.find(key(model, layer, distance));
  if (it == tables_.end() || experts.empty()) return out;
  const Table& t = it->second;
  std::vector<double> p(t.width, 0.0);
  for (uint32_t a : experts) {
    if (a >= t.width || t.row_totals[a] <= 0) continue;
    const float* row = t.counts.data() + size_t{a} * t.width;
    for (uint32_t b = 0; b < t.width; ++b) p[b] += row[b] / t.row_totals[a];
  }
  for (uint32_t b = 0; b < t.width; ++b) {
    double prob = std::min(1.0, p[b] / static_cast<double>(experts.size()));
    if (prob > 0 && prob >= min_probability) out.push_back({b, prob});
  }
  std::sort(out.begin(), out.end(), [](const ExpertGuess& x, const ExpertGuess& y) {
    return x.probability != y.probability ? x.probability > y.probability : x.expert < y.expert;
  });
  if (out.size() > max) out.resize(max);
  return out;
}

}  // namespace moepool
