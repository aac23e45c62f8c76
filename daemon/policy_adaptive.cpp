#include "daemon/policy_adaptive.h"

#include <algorithm>
#include <cmath>

namespace moepool {
namespace {

constexpr double kNone = -1e300;

// log2(2^a + w * 2^b) without overflow; w > 0; a may be kNone. One of the two terms
// is 2^0 = 1 after taking the larger out, so one exp2 and one log2 suffice.
double log2_add(double a, double b, double w) {
  double lb = w == 1.0 ? b : b + std::log2(w);
  if (a < -1e299) return lb;
  double m = std::max(a, lb);
  return m + std::log2(1.0 + std::exp2(a == m ? lb - m : a - m));
}

using Order = std::set<std::pair<double, PolicyKey>>;

// Moves `key` from score `from` to `to` in `o`, reusing its node (no allocation).
void rekey(Order& o, double from, double to, const PolicyKey& key) {
  auto node = o.extract({from, key});
  if (node.empty()) {
    o.insert({to, key});
    return;
  }
  node.value().first = to;
  o.insert(std::move(node));
}

constexpr double kMinSlotsPerLayer = 1.0 / 64;
constexpr double kDefaultSlotsPerLayer = 8;

}  // namespace

AdaptivePolicy::AdaptivePolicy(AdaptivePolicyOptions opt) : opt_(std::move(opt)) {
  if (opt_.lambdas.empty()) opt_.lambdas = {4};
  if (opt_.lambdas.size() > kMaxCandidates) opt_.lambdas.resize(kMaxCandidates);
  n_ = opt_.lambdas.size();
  for (size_t c = 0; c < n_; ++c) {
    h_[c] = std::max(1e-3, opt_.lambdas[c] * kDefaultSlotsPerLayer);
    lhits_[c] = kNone;
  }
  // Start from the middle candidate: neither pure recency nor pure frequency.
  active_ = n_ / 2;
}

AdaptivePolicy::ClassState& AdaptivePolicy::cls(uint32_t c) {
  if (classes_.size() <= c) classes_.resize(c + 1);
  return classes_[c];
}

double AdaptivePolicy::size_of(uint64_t model) const {
  auto it = models_.find(model);
  double b = it == models_.end() ? 0 : std::exp2(it->second.lbytes);
  return b > 0 ? b : 1;
}

void AdaptivePolicy::set_capacity(uint32_t slot_class, uint64_t slots) {
  ClassState& cs = cls(slot_class);
  cs.capacity = static_cast<double>(slots);
  cs.bytes = false;
  rescale();
}

void AdaptivePolicy::set_budget(uint32_t slot_class, uint64_t bytes) {
  ClassState& cs = cls(slot_class);
  cs.capacity = static_cast<double>(bytes);
  cs.bytes = true;
  rescale();
}

void AdaptivePolicy::set_model_bytes(uint64_t model, uint64_t expert_bytes) {
  models_[model].lbytes = expert_bytes ? std::log2(static_cast<double>(expert_bytes)) : 0;
  rescale();
}

uint32_t AdaptivePolicy::layer_index(const PolicyKey& key) {
  uint64_t id = key.model * 0x9E3779B97F4A7C15ull ^ (uint64_t{key.layer} + 1) * 0xD6E8FEB86659FD93ull;
  auto it = layer_of_.find(id);
  if (it != layer_of_.end() && layers_[it->second].model == key.model) return it->second;
  uint32_t li = static_cast<uint32_t>(layers_.size());
  layers_.emplace_back();
  layers_.back().model = key.model;
  layers_.back().number = key.layer;
  layer_of_[id] = li;
  for (auto& f : front_) f.emplace_back();
  dirty_.push_back(0xFFFF);
  last_.push_back(-1);
  Model& m = models_[key.model];
  m.layers++;
  layers_.back().m = &m;
  cls(0).layers.push_back(li);
  rescale();
  return li;
}

AdaptivePolicy::Entry& AdaptivePolicy::entry(const PolicyKey& key) {
  auto it = entries_.find(key);
  if (it != entries_.end()) return it->second;
  uint32_t li = layer_index(key);
  Entry& e = entries_[key];
  e.layer = li;
  e.ls.fill(kNone);
  return e;
}

double AdaptivePolicy::layer_rate(const Layer& l) const {
  if (models_.size() <= 1) return 0;
  return l.m->lrate - std::log2(std::max(1u, l.m->layers)) - l.m->lbytes;
}

double AdaptivePolicy::norm(const Entry& e, size_t c) const {
  const Layer& l = layers_[e.layer];
  return e.ls[c] - l.clock / h_[c] + layer_rate(l);
}

bool AdaptivePolicy::resample() {
  // Per model, its layers in order; an evenly spaced n of them: position p is sampled
  // iff p x n mod L < n (exactly n positions).
  std::unordered_map<uint64_t, std::vector<std::pair<uint32_t, uint32_t>>> by_model;
  for (uint32_t li = 0; li < layers_.size(); ++li)
    by_model[layers_[li].model].push_back({layers_[li].number, li});
  // One fraction for every model, so models share the shadows in the proportions they
  // share the cache: enough that each has shadow_min_layers (or all of its layers).
  double fraction = std::min(1.0, opt_.shadow_fraction);
  for (const auto& [model, ls] : by_model)
    fraction = std::max(fraction, std::min(1.0, double(opt_.shadow_min_layers) / ls.size()));
  bool changed = false;
  for (auto& [model, ls] : by_model) {
    std::sort(ls.begin(), ls.end());
    const size_t total = ls.size();
    size_t n = std::min(total, static_cast<size_t>(std::ceil(fraction * total - 1e-9)));
    for (size_t p = 0; p < total; ++p) {
      bool in = p * n % total < n;
      Layer& l = layers_[ls[p].second];
      changed = changed || l.sampled != in;
      l.sampled = in;
    }
  }
  for (ClassState& cs : classes_) {
    cs.sampled.clear();
    double all = 0, some = 0;
    for (uint32_t li : cs.layers) {
      double sz = cs.bytes ? size_of(layers_[li].model) : 1.0;
      all += sz;
      if (!layers_[li].sampled) continue;
      cs.sampled.push_back(li);
      some += sz;
    }
    cs.shadow_capacity = all > 0 ? cs.capacity * some / all : cs.capacity;
  }
  if (!changed) return false;
  // A layer left or joined the sample: start the shadows afresh (this happens as a
  // model's layers are first seen, so the shadows are nearly empty anyway).
  for (Layer& l : layers_)
    for (size_t c = 0; c < n_; ++c) l.shadow[c].clear();
  touch_all();
  for (auto& [key, e] : entries_) e.in_shadow = 0;
  for (ClassState& cs : classes_) cs.shadow_used.fill(0);
  return true;
}

void AdaptivePolicy::rescale() {
  // h = lambda x slots per layer: the capacity over the size of one expert of every layer.
  double cap = 0, per_layer = 0;
  for (const ClassState& cs : classes_) cap += cs.capacity;
  bool bytes = false;
  for (const ClassState& cs : classes_) bytes = bytes || cs.bytes;
  for (const Layer& l : layers_) per_layer += bytes ? size_of(l.model) : 1.0;
  double spl = cap > 0 && per_layer > 0 ? std::max(kMinSlotsPerLayer, cap / per_layer)
                                        : kDefaultSlotsPerLayer;
  std::array<double, kMaxCandidates> nh{};
  bool same = !resample();
  for (size_t c = 0; c < n_; ++c) {
    nh[c] = std::max(1e-3, opt_.lambdas[c] * spl);
    same = same && nh[c] == h_[c];
  }
  if (same) return;
  for (Layer& l : layers_) {
    l.live.clear();
    for (size_t c = 0; c < n_; ++c) l.shadow[c].clear();
  }
  touch_all();
  for (auto& [key, e] : entries_) {
    double clock = layers_[e.layer].clock;
    for (size_t c = 0; c < n_; ++c)
      if (e.ls[c] > -1e299) e.ls[c] = e.ls[c] - clock / h_[c] + clock / nh[c];
  }
  h_ = nh;
  for (auto& [key, e] : entries_) {
    Layer& l = layers_[e.layer];
    for (size_t c = 0; c < n_; ++c)
      if (e.in_shadow >> c & 1) l.shadow[c].insert({e.ls[c], key});
    if (e.resident) l.live.insert({e.ls[active_], key});
  }
}

void AdaptivePolicy::credit(const PolicyKey& key, Entry& e, double weight) {
  Layer& l = layers_[e.layer];
  const double live_from = e.ls[active_];
  for (size_t c = 0; c < n_; ++c) {
    double from = e.ls[c];
    e.ls[c] = log2_add(from, l.clock / h_[c], weight);
    if (e.in_shadow >> c & 1) rekey(l.shadow[c], from, e.ls[c], key);
  }
  if (e.resident) rekey(l.live, live_from, e.ls[active_], key);
  touch(e.layer);
  e.seen = true;
}

std::optional<PolicyKey> AdaptivePolicy::pick(const ClassState& cs, size_t c, bool live,
                                              const PolicyProtect& keep) const {
  // Protected keys are few (a request's experts, reads in flight): find the best key of
  // all first, and scan again skipping protected ones only if it is protected, so keep()
  // is asked once per victim rather than once per layer.
  std::vector<std::pair<uint32_t, Front>> over;
  uint32_t li = 0;
  if (!live || !keep) return scan_fronts(cs, c, live, over, &li);
  for (;;) {
    auto best = scan_fronts(cs, c, live, over, &li);
    if (!best || !keep(*best)) return best;
    // Layer li's first key is protected: its first unprotected key stands for it.
    const Layer& l = layers_[li];
    Front f;
    for (const auto& [ls, k] : l.live) {
      if (keep(k)) continue;
      f = {ls - l.clock / h_[c], k, true};
      break;
    }
    over.push_back({li, f});
  }
}

std::optional<PolicyKey> AdaptivePolicy::scan(const ClassState& cs, size_t c, bool live,
                                              const PolicyProtect& keep) const {
  // Ties go to the layer visited most recently, the current one last: its next visit is
  // the farthest away (layers come in turn).
  std::optional<PolicyKey> best;
  double best_v = 0, best_when = 0;
  // A layer's order holds each key's log score under c, so a key's value is its order
  // key shifted by the layer's clock and rate: no lookup per layer.
  for (uint32_t li : live ? cs.layers : cs.sampled) {
    const Layer& l = layers_[li];
    const Order& o = live ? l.live : l.shadow[c];
    if (o.empty()) continue;
    double when = li == current_layer_ ? -1 : last_[li];
    double age = l.clock / h_[c], rate = layer_rate(l);
    for (const auto& [ls, k] : o) {
      if (live && keep && keep(k)) continue;
      double v = ls - age + rate;  // as norm() computes it
      double tol = 1e-9 * std::max(1.0, std::abs(v));
      if (!best || v < best_v - tol || (v <= best_v + tol && when > best_when)) {
        best = k;
        best_v = v;
        best_when = when;
      }
      break;
    }
  }
  return best;
}

std::optional<PolicyKey> AdaptivePolicy::scan_fronts(
    const ClassState& cs, size_t c, bool live,
    const std::vector<std::pair<uint32_t, Front>>& over, uint32_t* winner) const {
  const size_t slot = live ? kLive : c;
  std::vector<Front>& fronts = front_[slot];
  const bool rated = models_.size() > 1;
  const Front* best = nullptr;
  double best_v = 0, best_when = 0;
  for (uint32_t li : live ? cs.layers : cs.sampled) {
    Front& f = fronts[li];
    if (dirty_[li] >> slot & 1) {
      const Layer& l = layers_[li];
      const Order& o = live ? l.live : l.shadow[c];
      f.has = !o.empty();
      if (f.has) {
        f.v = o.begin()->first - l.clock / h_[c];
        f.key = o.begin()->second;
      }
      dirty_[li] &= uint16_t(~(1u << slot));
    }
    const Front* fp = &f;
    for (const auto& [ol, of] : over)
      if (ol == li) fp = &of;
    if (!fp->has) continue;
    double when = li == current_layer_ ? -1 : last_[li];
    double v = rated ? fp->v + layer_rate(layers_[li]) : fp->v;  // as scan() computes it
    double tol = 1e-9 * std::max(1.0, std::abs(v));
    if (!best || v < best_v - tol || (v <= best_v + tol && when > best_when)) {
      best = fp;
      *winner = li;
      best_v = v;
      best_when = when;
    }
  }
  if (!best) return std::nullopt;
  return best->key;
}

void AdaptivePolicy::shadow_access(const PolicyKey& key, Entry& e, size_t c) {
  Layer& l = layers_[e.layer];
  if (!l.sampled) return;
  ClassState& cs = cls(l.slot_class);
  if (e.in_shadow >> c & 1) {
    double window = std::max(1024.0, opt_.window_per_slot * std::max(1.0, static_cast<double>(resident_)));
    lhits_[c] = log2_add(lhits_[c], now_ / window, 1.0);
    return;
  }
  if (cs.shadow_capacity <= 0) return;
  double sz = cs.bytes ? size_of(l.model) : 1.0;
  while (cs.shadow_used[c] + sz > cs.shadow_capacity) {
    auto v = pick(cs, c, false, nullptr);
    if (!v) break;
    Entry& ve = entries_.at(*v);
    layers_[ve.layer].shadow[c].erase({ve.ls[c], *v});
    touch(ve.layer, c);
    ve.in_shadow &= ~(1u << c);
    cs.shadow_used[c] -= cs.bytes ? size_of(layers_[ve.layer].model) : 1.0;
  }
  l.shadow[c].insert({e.ls[c], key});
  touch(e.layer, c);
  e.in_shadow |= 1u << c;
  cs.shadow_used[c] += sz;
}

void AdaptivePolicy::switch_to(size_t c) {
  for (Layer& l : layers_) l.live.clear();
  touch_all();
  active_ = c;
  for (auto& [key, e] : entries_)
    if (e.resident) layers_[e.layer].live.insert({e.ls[active_], key});
}

void AdaptivePolicy::on_access(const PolicyKey& key, uint64_t tick, bool hit) {
  now_ = std::max(now_, static_cast<double>(tick));
  Entry& e = entry(key);
  Layer& l = layers_[e.layer];
  Model& m = *l.m;
  double rate_window = std::max(1024.0, 4 * std::max(1.0, static_cast<double>(resident_)));
  m.lrate = log2_add(m.lrate, now_ / rate_window, 1.0);
  // The layer's clock advances before the credit: a key's age is the accesses its layer
  // saw since, the current one included.
  l.clock += 1;
  last_[e.layer] = now_;
  touch(e.layer);
  current_layer_ = e.layer;
  credit(key, e, 1.0);
  e.last_tick = tick;
  for (size_t c = 0; c < n_; ++c) shadow_access(key, e, c);
  size_t best = active_;
  for (size_t c = 0; c < n_; ++c)
    if (lhits_[c] > lhits_[best]) best = c;
  if (best != active_ && lhits_[best] > lhits_[active_] + std::log2(1 + opt_.switch_margin))
    switch_to(best);
}

bool AdaptivePolicy::admit(const PolicyKey& key, double p, const PolicyKey* victim) const {
  if (!victim) return p > 0;
  auto v = entries_.find(*victim);
  if (v == entries_.end()) return true;
  // A prefetch is used at once or not at all, so it is judged on the most recency-minded
  // candidate's scores: the guess, credited p now, must beat the victim's.
  const size_t c = 0;
  double vv = norm(v->second, c);
  auto k = entries_.find(key);
  if (k == entries_.end()) return p > 0 && std::log2(p) > vv;
  const Entry& e = k->second;
  double base = norm(e, c);
  double rate = base - (e.ls[c] - layers_[e.layer].clock / h_[c]);
  double expect = p <= 0 ? base : log2_add(base < -1e299 ? kNone : base, rate, p);
  return expect > vv;
}

void AdaptivePolicy::seed(const PolicyKey& key, double weight, uint64_t tick) {
  if (!(weight > 0)) return;
  Entry& e = entry(key);
  Layer& l = layers_[e.layer];
  if (e.resident) l.live.erase({e.ls[active_], key});
  for (size_t c = 0; c < n_; ++c) {
    bool in = e.in_shadow >> c & 1;
    if (in) l.shadow[c].erase({e.ls[c], key});
    // The score of a key used at every access of its layer: sum of 2^(-i/h).
    double full = 1.0 / (1.0 - std::exp2(-1.0 / h_[c]));
    double prior = l.clock / h_[c] + std::log2(std::min(weight, full));
    e.ls[c] = std::max(e.ls[c], prior);
    if (in) l.shadow[c].insert({e.ls[c], key});
  }
  if (e.resident) l.live.insert({e.ls[active_], key});
  touch(e.layer);
  e.seen = true;
  now_ = std::max(now_, static_cast<double>(tick));
}

void AdaptivePolicy::insert(const PolicyKey& key, uint32_t slot_class, uint64_t tick) {
  now_ = std::max(now_, static_cast<double>(tick));
  Entry& e = entry(key);
  Layer& l = layers_[e.layer];
  if (l.slot_class != slot_class) {  // the layer's experts live in another class now
    auto& from = cls(l.slot_class).layers;
    from.erase(std::remove(from.begin(), from.end(), e.layer), from.end());
    cls(slot_class).layers.push_back(e.layer);
    l.slot_class = slot_class;
    resample();
  }
  if (e.resident) {
    l.live.erase({e.ls[active_], key});
    --resident_;
  }
  e.resident = true;
  ++resident_;
  l.live.insert({e.ls[active_], key});
  touch(e.layer, kLive);
  // A key inserted without a demand at this tick (a prefetch) is credited as one access,
  // so it is not the very next victim before its use.
  if (e.last_tick != tick) {
    credit(key, e, 1.0);
    e.last_tick = tick;
  }
}

std::optional<PolicyKey> AdaptivePolicy::victim(uint32_t slot_class, const PolicyProtect& keep) const {
  if (slot_class >= classes_.size()) return std::nullopt;
  return pick(classes_[slot_class], active_, true, keep);
}

void AdaptivePolicy::erase(const PolicyKey& key) {
  auto it = entries_.find(key);
  if (it == entries_.end() || !it->second.resident) return;
  layers_[it->second.layer].live.erase({it->second.ls[active_], key});
  touch(it->second.layer, kLive);
  it->second.resident = false;
  --resident_;
}

double AdaptivePolicy::value(const PolicyKey& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || !it->second.seen) return -INFINITY;
  return norm(it->second, active_);
}

}  // namespace moepool
