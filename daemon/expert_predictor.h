// Online next-layer expert predictor: learns, per model and layer L, how often expert b
// of layer L+1 was routed in the same step as expert a of layer L, and predicts layer
// L+1's experts from layer L's as the mean of P(b | a) over the step's layer L experts
// (a probability in [0, 1]; they sum to about top_k). Counts of a row halve once they
// pass `row_cap`, so the table follows drifting routing. With `distance` d > 1 the same
// is learned and predicted for layer L+d from layer L, in a table of its own (so a read
// can start d layers before its use).
// Thread safety: not thread-safe; one owner calls it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

namespace moepool {

struct ExpertGuess {
  uint32_t expert;
  double probability;
};

class ExpertPredictor {
 public:
  explicit ExpertPredictor(uint32_t row_cap = 256) : row_cap_(row_cap) {}

  // Records that `next` (layer+distance's experts) followed `prev` (layer's) in one step.
  void learn(uint64_t model, uint32_t layer, const std::vector<uint32_t>& prev,
             const std::vector<uint32_t>& next, uint32_t distance = 1);
  // Returns up to `max` guesses for layer+distance given layer's `experts`, most likely
  // first, skipping guesses below `min_probability`. Empty before anything was learned.
  std::vector<ExpertGuess> predict(uint64_t model, uint32_t layer,
                                   const std::vector<uint32_t>& experts, size_t max,
                                   double min_probability = 0, uint32_t distance = 1) const;

 private:
  struct Table {
    uint32_t width = 0;             // experts per row/column seen so far
    std::vector<float> counts;      // width x width, [a][b]
    std::vector<float> row_totals;  // observations of a
    void grow(uint32_t w);
  };
  static uint64_t key(uint64_t model, uint32_t layer, uint32_t distance) {
    return model * 0x9E3779B97F4A7C15ull ^ layer ^ uint64_t{distance - 1} << 32;
  }
  uint32_t row_cap_;
  std::unordered_map<uint64_t, Table> tables_;  // by (model, layer, distance)
};

}  // namespace moepool
