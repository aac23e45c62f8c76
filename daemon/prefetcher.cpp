#include "daemon/prefetcher.h"

namespace moepool {

Prefetcher::Prefetcher(double min_probability, uint32_t distance, Issue issue)
    : min_probability_(min_probability),
      distance_(distance ? distance : 1),
      issue_(std::move(issue)) {}

void Prefetcher::on_acquire(uint64_t session, const std::shared_ptr<Model>& model,
                            uint32_t layer, const std::vector<uint32_t>& experts) {
  const int pos = model->layer_pos(layer);
  if (pos < 0 || experts.empty()) return;
  const auto& layers = model->catalog.layers();
  for (uint32_t e : experts)
    if (e >= layers[pos].n_experts) return;  // never grow the predictor's table past the layer
  struct Guesses {
    uint32_t layer;
    std::vector<ExpertGuess> g;
  };
  std::vector<Guesses> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // As moepool-sim: learn (layer - d) -> layer for this session's earlier layers of this
    // step within `distance_` MoE layers, then guess layers +1 .. +distance_.
    std::deque<Prev>& hist = prev_[{session, model->id()}];
    if (!hist.empty() && hist.back().pos >= pos) hist.clear();  // a new step
    for (const Prev& p : hist) {
      const uint32_t d = static_cast<uint32_t>(pos - p.pos);
      if (d <= distance_)
        predictor_.learn(model->id(), layers[p.pos].layer, p.experts, experts, d);
    }
    hist.push_back({pos, experts});
    if (hist.size() > distance_) hist.pop_front();
    for (uint32_t d = 1; d <= distance_ && pos + d < layers.size(); ++d)
      out.push_back({layers[pos + d].layer,
                     predictor_.predict(model->id(), layer, experts, experts.size(),
                                        min_probability_, d)});
  }
  for (Guesses& gs : out) {
    const MoeLayer* next = model->catalog.layer(gs.layer);
    std::vector<uint32_t> want;
    std::vector<double> p;
    for (const ExpertGuess& g : gs.g) {
      if (g.expert >= next->n_experts) continue;
      want.push_back(g.expert);
      p.push_back(g.probability);
    }
    if (!want.empty()) issue_(model, gs.layer, std::move(want), std::move(p));
  }
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
