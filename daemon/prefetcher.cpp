#include "daemon/prefetcher.h"

namespace moepool {

Prefetcher::Prefetcher(double min_probability, Issue issue)
    : min_probability_(min_probability), issue_(std::move(issue)) {}

void Prefetcher::on_acquire(uint64_t session, const std::shared_ptr<Model>& model,
                            uint32_t layer, const std::vector<uint32_t>& experts) {
  const MoeLayer* l = model->catalog.layer(layer);
  if (l == nullptr || experts.empty()) return;
  for (uint32_t e : experts)
    if (e >= l->n_experts) return;  // never grow the predictor's table past the layer
  std::vector<ExpertGuess> guesses;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Prev& prev = prev_[{session, model->id()}];
    // As moepool-sim: learn layer-1 -> layer transitions of this session, then guess layer+1.
    if (layer > 0 && prev.layer + 1 == layer)
      predictor_.learn(model->id(), layer - 1, prev.experts, experts);
    prev.layer = layer;
    prev.experts = experts;
    if (model->catalog.layer(layer + 1) == nullptr) return;  // the last MoE layer
    guesses = predictor_.predict(model->id(), layer, experts, experts.size(), min_probability_);
  }
  const MoeLayer* next = model->catalog.layer(layer + 1);
  std::vector<uint32_t> want;
  std::vector<double> p;
  for (const ExpertGuess& g : guesses) {
    if (g.expert >= next->n_experts) continue;
    want.push_back(g.expert);
    p.push_back(g.probability);
  }
  if (!want.empty()) issue_(model, layer + 1, std::move(want), std::move(p));
}

void Prefetcher::forget_sessions(const std::function<bool(uint64_t)>& alive) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = prev_.begin(); it != prev_.end();) {
    if (alive(it->first.first))
      ++it;
    else
      it = prev_.erase(it);
  }
}

}  // namespace moepool
