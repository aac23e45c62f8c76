// Synthetic routing traces: Zipf popularity per layer, step-to-step reuse and a fixed
// cross-layer map, drawn from a portable PRNG so a seed means the same trace everywhere.
#include "common/synthetic_trace.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <vector>

namespace moepool {
namespace {

// A named model shape with locality knobs. gpt-oss and mixtral are set so the generator
// reproduces the locality (common/trace_locality.h: top-10%/top-25% share, reuse,
// xlayer) measured on the real traces of those models (../shared/traces/README.md);
// deepseek has no public trace, so it takes the gpt-oss knobs; qwen3 takes flash-moe's
// Qwen3.5 figures (about 30% reuse, almost no cross-layer correlation).
struct Preset {
  const char* name;
  uint32_t layers, experts, top_k;
  double skew, reuse, xlayer;
};
constexpr Preset kPresets[] = {
    {"deepseek", 58, 256, 8, 0.7, 0.5, 0.95},
    {"qwen3", 94, 128, 8, 0.7, 0.25, 0.01},
    {"gpt-oss", 24, 32, 4, 0.7, 0.5, 0.95},  // measures .27/.49/.46/.59, real .28/.55/.46/.59
    {"mixtral", 32, 8, 2, 0.4, 0.25, 0.3},   // measures .14/.33/.40/.45, real .15/.34/.40/.45
};

// xoshiro256** seeded by splitmix64: small, fast, and identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& w : s_) {
      seed += 0x9E3779B97F4A7C15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      w = z ^ (z >> 31);
    }
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Returns a double uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Returns an integer uniform in [0, n), n > 0 (the tiny modulo bias does not matter here).
  uint32_t below(uint32_t n) { return static_cast<uint32_t>(next() % n); }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// One layer's popularity law and its map from the previous layer's experts.
struct LayerLaw {
  std::vector<double> weight;  // by expert
  std::vector<double> cdf;     // by rank, cumulative
  std::vector<uint8_t> by_rank;
  std::vector<uint8_t> from_prev;  // previous layer's expert -> this layer's expert
};

std::vector<LayerLaw> make_laws(const SyntheticTraceSpec& spec, Rng& rng) {
  std::vector<LayerLaw> laws(spec.layers);
  std::vector<uint8_t> prev_rank_of;  // previous layer: expert -> rank
  for (uint32_t l = 0; l < spec.layers; ++l) {
    LayerLaw& law = laws[l];
    law.by_rank.resize(spec.experts);
    for (uint32_t r = 0; r < spec.experts; ++r) law.by_rank[r] = static_cast<uint8_t>(r);
    for (uint32_t r = spec.experts - 1; r > 0; --r)  // Fisher-Yates
      std::swap(law.by_rank[r], law.by_rank[rng.below(r + 1)]);
    law.weight.assign(spec.experts, 0.0);
    law.cdf.resize(spec.experts);
    double total = 0;
    for (uint32_t r = 0; r < spec.experts; ++r) {
      double w = std::pow(static_cast<double>(r + 1), -spec.skew);
      law.weight[law.by_rank[r]] = w;
      total += w;
      law.cdf[r] = total;
    }
    // The cross-layer map keeps popularity: the previous layer's rank-r expert maps to
    // a rank near r here (ranks shuffled within windows of 4), so marginals stay Zipf.
    if (l > 0) {
      std::vector<uint32_t> rank_map(spec.experts);
      for (uint32_t r = 0; r < spec.experts; ++r) rank_map[r] = r;
      for (uint32_t w = 0; w < spec.experts; w += 4) {
        uint32_t end = std::min(spec.experts, w + 4);
        for (uint32_t r = end - 1; r > w; --r)
          std::swap(rank_map[r], rank_map[w + rng.below(r - w + 1)]);
      }
      law.from_prev.resize(spec.experts);
      for (uint32_t e = 0; e < spec.experts; ++e)
        law.from_prev[e] = law.by_rank[rank_map[prev_rank_of[e]]];
    }
    prev_rank_of.assign(spec.experts, 0);
    for (uint32_t r = 0; r < spec.experts; ++r)
      prev_rank_of[law.by_rank[r]] = static_cast<uint8_t>(r);
  }
  return laws;
}

// Draws an expert not in `taken` from the layer's law (rejection, then an exact scan).
uint8_t draw_zipf(const LayerLaw& law, const std::vector<uint8_t>& taken, Rng& rng) {
  const double total = law.cdf.back();
  for (int attempt = 0; attempt < 16; ++attempt) {
    double u = rng.uniform() * total;
    size_t r = std::upper_bound(law.cdf.begin(), law.cdf.end(), u) - law.cdf.begin();
    if (r >= law.cdf.size()) r = law.cdf.size() - 1;
    uint8_t e = law.by_rank[r];
    if (!taken[e]) return e;
  }
  double left = 0;
  for (size_t e = 0; e < law.weight.size(); ++e)
    if (!taken[e]) left += law.weight[e];
  double u = rng.uniform() * left;
  uint8_t last = 0;
  for (size_t e = 0; e < law.weight.size(); ++e) {
    if (taken[e]) continue;
    last = static_cast<uint8_t>(e);
    if (u < law.weight[e]) return last;
    u -= law.weight[e];
  }
  return last;  // rounding left u just past the end
}

// Picks a random element of `candidates` not yet taken; returns false if none is left.
bool draw_from(const uint8_t* candidates, uint32_t n, const std::vector<uint8_t>& taken, Rng& rng,
               uint8_t* out) {
  uint8_t free_ids[256];
  uint32_t n_free = 0;
  for (uint32_t i = 0; i < n; ++i)
    if (!taken[candidates[i]]) free_ids[n_free++] = candidates[i];
  if (n_free == 0) return false;
  *out = free_ids[rng.below(n_free)];
  return true;
}

Status check_spec(const SyntheticTraceSpec& s) {
  auto bad = [](const std::string& m) { return InvalidArgument("synthetic trace: " + m); };
  if (s.layers == 0) return bad("layers must be at least 1");
  if (s.experts == 0 || s.experts > kTraceMaxExperts)
    return bad("experts=" + std::to_string(s.experts) + " must be in [1, " +
               std::to_string(kTraceMaxExperts) + "]");
  if (s.top_k == 0 || s.top_k > s.experts)
    return bad("top_k=" + std::to_string(s.top_k) +
               " must be in [1, experts=" + std::to_string(s.experts) + "]");
  if (s.steps == 0) return bad("steps must be at least 1");
  if (!(s.skew >= 0 && s.skew <= 16)) return bad("skew must be in [0, 16]");
  if (!(s.reuse >= 0 && s.reuse <= 1)) return bad("reuse must be in [0, 1]");
  if (!(s.xlayer >= 0 && s.xlayer <= 1)) return bad("xlayer must be in [0, 1]");
  if (s.steps * s.layers * s.top_k / s.layers / s.top_k != s.steps ||
      s.steps * s.layers * s.top_k > (uint64_t{1} << 36))
    return bad("steps*layers*top_k is too large to hold in memory");
  return Status::Ok();
}

std::string format_double(double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace

Result<SyntheticTraceSpec> parse_synthetic_spec(std::string_view text) {
  SyntheticTraceSpec spec;
  bool first = true;
  while (!text.empty() || first) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      if (!first)
        return InvalidArgument("synthetic spec: \"" + std::string(item) +
                               "\" is not key=value (a preset name must come first)");
      const Preset* found = nullptr;
      for (const Preset& p : kPresets)
        if (item == p.name) found = &p;
      if (!found) {
        std::string names;
        for (const Preset& p : kPresets) names += std::string(names.empty() ? "" : ", ") + p.name;
        return InvalidArgument("synthetic spec: unknown preset \"" + std::string(item) +
                               "\" (known: " + names + ")");
      }
      spec.preset = found->name;
      spec.layers = found->layers;
      spec.experts = found->experts;
      spec.top_k = found->top_k;
      spec.skew = found->skew;
      spec.reuse = found->reuse;
      spec.xlayer = found->xlayer;
      first = false;
      continue;
    }
    first = false;
    std::string_view key = item.substr(0, eq);
    std::string_view value = item.substr(eq + 1);
    auto bad_value = [&](const char* want) {
      return InvalidArgument("synthetic spec: " + std::string(key) + "=\"" + std::string(value) +
                             "\" is not " + want);
    };
    auto parse_u64 = [&](uint64_t& out) {
      auto r = std::from_chars(value.data(), value.data() + value.size(), out);
      return r.ec == std::errc() && r.ptr == value.data() + value.size() && !value.empty();
    };
    auto parse_f64 = [&](double& out) {
      auto r = std::from_chars(value.data(), value.data() + value.size(), out);
      return r.ec == std::errc() && r.ptr == value.data() + value.size() && !value.empty();
    };
    uint64_t u = 0;
    if (key == "layers" || key == "experts" || key == "top_k") {
      if (!parse_u64(u) || u > UINT32_MAX) return bad_value("an integer");
      (key == "layers"    ? spec.layers
       : key == "experts" ? spec.experts
                          : spec.top_k) = static_cast<uint32_t>(u);
    } else if (key == "steps") {
      if (!parse_u64(spec.steps)) return bad_value("an integer");
    } else if (key == "seed") {
      if (!parse_u64(spec.seed)) return bad_value("an integer");
    } else if (key == "seq") {
      if (!parse_u64(spec.sequence_tokens)) return bad_value("an integer");
    } else if (key == "skew") {
      if (!parse_f64(spec.skew)) return bad_value("a number");
    } else if (key == "reuse") {
      if (!parse_f64(spec.reuse)) return bad_value("a number");
    } else if (key == "xlayer") {
      if (!parse_f64(spec.xlayer)) return bad_value("a number");
    } else {
      return InvalidArgument("synthetic spec: unknown key \"" + std::string(key) +
                             "\" (known: layers, experts, top_k, steps, skew, reuse, xlayer, "
                             "seed, seq)");
    }
  }
  MOEPOOL_RETURN_IF_ERROR(check_spec(spec));
  return spec;
}

std::string to_string(const SyntheticTraceSpec& s) {
  std::string out = s.preset == "custom" ? "" : s.preset + ",";
  out += "layers=" + std::to_string(s.layers) + ",experts=" + std::to_string(s.experts) +
         ",top_k=" + std::to_string(s.top_k) + ",steps=" + std::to_string(s.steps) +
         ",skew=" + format_double(s.skew) + ",reuse=" + format_double(s.reuse) +
         ",xlayer=" + format_double(s.xlayer) + ",seed=" + std::to_string(s.seed);
  if (s.sequence_tokens) out += ",seq=" + std::to_string(s.sequence_tokens);
  return out;
}

Result<Trace> generate_synthetic_trace(const SyntheticTraceSpec& spec) {
  MOEPOOL_RETURN_IF_ERROR(check_spec(spec));
  Rng rng(spec.seed);
  const std::vector<LayerLaw> laws = make_laws(spec, rng);
  const size_t k = spec.top_k;
  const size_t stride = size_t{spec.layers} * k;
  std::vector<uint8_t> ids(spec.steps * stride);
  std::vector<uint8_t> taken(spec.experts, 0);
  std::vector<uint8_t> mapped(k);

  std::vector<TraceSequence> sequences;
  const uint64_t seq_len = spec.sequence_tokens ? spec.sequence_tokens : spec.steps;
  for (uint64_t off = 0; off < spec.steps; off += seq_len)
    sequences.push_back({off, std::min(seq_len, spec.steps - off), "synthetic"});

  for (uint64_t s = 0; s < spec.steps; ++s) {
    const bool seq_start = s % seq_len == 0;
    for (uint32_t l = 0; l < spec.layers; ++l) {
      uint8_t* out = ids.data() + s * stride + l * k;
      const uint8_t* prev_step = seq_start ? nullptr : out - stride;
      const uint8_t* prev_layer = l == 0 ? nullptr : out - k;
      if (prev_layer)
        for (size_t j = 0; j < k; ++j) mapped[j] = laws[l].from_prev[prev_layer[j]];
      for (size_t j = 0; j < k; ++j) {
        // Cross-layer first, then reuse: reuse picks at layer 0 carry down the layers
        // through the map, so a layer's measured reuse does not depend on xlayer.
        uint8_t e = 0;
        bool picked = false;
        if (prev_layer && rng.uniform() < spec.xlayer)
          picked = draw_from(mapped.data(), static_cast<uint32_t>(k), taken, rng, &e);
        if (!picked && prev_step && rng.uniform() < spec.reuse)
          picked = draw_from(prev_step, static_cast<uint32_t>(k), taken, rng, &e);
        if (!picked) e = draw_zipf(laws[l], taken, rng);
        taken[e] = 1;
        out[j] = e;
      }
      for (size_t j = 0; j < k; ++j) taken[out[j]] = 0;
    }
  }
  TraceShape shape{spec.layers, spec.experts, spec.top_k, spec.steps};
  return Trace::from_ids("synthetic:" + to_string(spec), shape, std::move(sequences),
                         std::move(ids));
}

}  // namespace moepool
