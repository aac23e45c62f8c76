#include "tools/sim/replay_stream.h"

#include <algorithm>

namespace moepool::sim {
namespace {

// The step indices worker `w` of `n` replays: the w-th contiguous group of sequences.
std::vector<uint64_t> worker_steps(const Trace& t, uint32_t w, uint32_t n, uint64_t max_steps) {
  const auto& seqs = t.sequences();
  size_t per = (seqs.size() + n - 1) / n;
  size_t begin = std::min(seqs.size(), size_t{w} * per);
  size_t end = std::min(seqs.size(), begin + per);
  if (seqs.size() < n) {  // fewer sequences than workers: each starts at its own one
    begin = w % seqs.size();
    end = begin + 1;
  }
  std::vector<uint64_t> out;
  for (size_t s = begin; s < end; ++s)
    for (uint64_t i = 0; i < seqs[s].n_tokens; ++i) {
      if (max_steps && out.size() >= max_steps) return out;
      out.push_back(seqs[s].offset + i);
    }
  return out;
}

}  // namespace

ReplayStream build_stream(const std::vector<const Trace*>& traces, uint32_t workers,
                          uint64_t max_steps) {
  ReplayStream st;
  struct Cursor {
    const Trace* trace;
    uint32_t model;
    std::vector<uint64_t> steps;
    size_t next = 0;
  };
  std::vector<Cursor> cursors;
  st.model_steps.assign(traces.size(), 0);
  for (uint32_t m = 0; m < traces.size(); ++m) {
    const TraceShape& sh = traces[m]->shape();
    st.total_experts += uint64_t{sh.layers} * sh.experts;
    for (uint32_t w = 0; w < workers; ++w) {
      cursors.push_back({traces[m], m, worker_steps(*traces[m], w, workers, max_steps)});
      st.model_steps[m] += cursors.back().steps.size();
      st.steps += cursors.back().steps.size();
    }
  }
  st.workers = static_cast<uint32_t>(cursors.size());
  // One step of every live worker per round, layer by layer interleaved.
  for (bool any = true; any;) {
    any = false;
    std::vector<uint32_t> live;
    for (uint32_t c = 0; c < cursors.size(); ++c)
      if (cursors[c].next < cursors[c].steps.size()) live.push_back(c);
    if (live.empty()) break;
    any = true;
    uint32_t max_layers = 0;
    for (uint32_t c : live) max_layers = std::max(max_layers, cursors[c].trace->shape().layers);
    for (uint32_t l = 0; l < max_layers; ++l) {
      for (uint32_t c : live) {
        Cursor& cur = cursors[c];
        const TraceShape& sh = cur.trace->shape();
        if (l >= sh.layers) continue;
        const uint8_t* ids = cur.trace->step_layer(cur.steps[cur.next], l);
        LayerRequest r;
        r.worker = c;
        r.model = cur.model;
        r.layer = l;
        r.first = static_cast<uint32_t>(st.experts.size());
        r.count = sh.top_k;
        r.last_layer = l + 1 == sh.layers;
        for (uint32_t k = 0; k < sh.top_k; ++k) st.experts.push_back(ids[k]);
        st.requests.push_back(r);
      }
    }
    for (uint32_t c : live) cursors[c].next++;
  }
  return st;
}

}  // namespace moepool::sim
