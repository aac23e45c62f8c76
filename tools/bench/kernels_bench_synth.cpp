// Synthetic layer shapes, slot layout, valid random expert bytes and routings for
// `moepool-bench kernels`.
#include "tools/bench/kernels_bench_synth.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

namespace moepool::bench {
namespace {

uint64_t mix64(uint64_t z) {  // splitmix64's output function
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A small sequential generator (splitmix64) for routings and activations.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() { return mix64(s_ += 0x9e3779b97f4a7c15ull); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  uint32_t below(uint32_t n) { return static_cast<uint32_t>((next() >> 32) * n >> 32); }

 private:
  uint64_t s_;
};

// An f16 with exponent field in [lo_exp, lo_exp + 4) (value 2^(e-15) * (1 + m/1024)),
// positive, mantissa and exponent offset from the random bits `r`.
uint16_t scale_half(uint64_t r, uint32_t lo_exp) {
  uint32_t e = lo_exp + static_cast<uint32_t>((r >> 10) & 3);
  return static_cast<uint16_t>((e << 10) | (r & 0x3FF));
}

uint32_t block_bytes(GgmlType type) {
  auto t = ggml_type_traits(static_cast<uint32_t>(type));
  return t ? t->type_size : 1;
}

}  // namespace

Result<LayerShape> layer_shape(std::string_view name) {
  if (name == "deepseek") return LayerShape{"deepseek", 256, 8, 7168, 2048};
  if (name == "qwen3") return LayerShape{"qwen3", 128, 8, 2048, 768};
  if (name == "small") return LayerShape{"small", 16, 4, 256, 256};
  return InvalidArgument("unknown shape '" + std::string(name) +
                         "' (deepseek, qwen3 or small)");
}

uint64_t SlotLayout::total_bytes() const {
  uint64_t t = 0;
  for (uint64_t b : segment_bytes) t += b;
  return t;
}

Result<SlotLayout> slot_layout(const LayerShape& shape, GgmlType type, uint64_t max_segment_bytes) {
  if (type != GgmlType::Q4_K && type != GgmlType::Q8_0 && type != GgmlType::F16)
    return InvalidArgument("type " + std::string(ggml_type_name(type)) +
                           " is not one the kernels take (q4_K, q8_0, f16)");
  auto gate_row = ggml_row_bytes(type, shape.n_embd);
  auto down_row = ggml_row_bytes(type, shape.n_ff);
  if (!gate_row || !down_row)
    return InvalidArgument("shape " + shape.name + ": n_embd " + std::to_string(shape.n_embd) +
                           " or n_ff " + std::to_string(shape.n_ff) + " is not whole " +
                           std::string(ggml_type_name(type)) + " blocks");
  SlotLayout l;
  l.type = type;
  l.gate_bytes = *gate_row * shape.n_ff;
  l.down_bytes = *down_row * shape.n_embd;
  l.expert_bytes = 2 * l.gate_bytes + l.down_bytes;
  l.slot_stride = (l.expert_bytes + kSlotAlignment - 1) / kSlotAlignment * kSlotAlignment;
  if (l.slot_stride > max_segment_bytes)
    return InvalidArgument("one " + shape.name + " expert slot (" + std::to_string(l.slot_stride) +
                           " bytes) does not fit a segment of " +
                           std::to_string(max_segment_bytes) + " bytes");
  l.slots_per_segment =
      static_cast<uint32_t>(std::min<uint64_t>(max_segment_bytes / l.slot_stride, shape.n_experts));
  l.segments = (shape.n_experts + l.slots_per_segment - 1) / l.slots_per_segment;
  for (uint32_t s = 0; s < l.segments; ++s) {
    uint32_t first = s * l.slots_per_segment;
    uint32_t n = std::min(l.slots_per_segment, shape.n_experts - first);
    l.segment_bytes.push_back(uint64_t{n} * l.slot_stride);
  }
  return l;
}

uint64_t projection_key(uint64_t seed, uint32_t expert, uint32_t proj) {
  return mix64(seed ^ mix64((uint64_t{expert} << 2 | proj) + 0x5851f42d4c957f2dull));
}

void fill_projection(GgmlType type, uint64_t key, uint64_t offset, std::span<uint8_t> out) {
  // Random bytes: word w of the projection is mix64(key + w), so ranges split anywhere agree.
  const uint64_t first_word = offset / 8;
  const uint64_t skip = offset % 8;
  uint64_t pos = 0;
  for (uint64_t w = first_word; pos < out.size(); ++w) {
    uint64_t v = mix64(key + w * 0x9e3779b97f4a7c15ull);
    uint8_t bytes[8];
    memcpy(bytes, &v, 8);
    uint64_t from = (w == first_word) ? skip : 0;
    uint64_t n = std::min<uint64_t>(8 - from, out.size() - pos);
    memcpy(out.data() + pos, bytes + from, n);
    pos += n;
  }
  // Valid scales, derived from the random bytes already there.
  const uint64_t bb = block_bytes(type);
  if (type == GgmlType::F16) {
    for (uint64_t i = 0; i + 2 <= out.size(); i += 2) {
      uint16_t h;
      memcpy(&h, out.data() + i, 2);
      h = static_cast<uint16_t>((h & 0x83FF) | ((8u + ((h >> 10) & 3u)) << 10));
      memcpy(out.data() + i, &h, 2);
    }
    return;
  }
  for (uint64_t b = 0; b + bb <= out.size(); b += bb) {
    uint8_t* blk = out.data() + b;
    uint64_t r;
    memcpy(&r, blk + 8, 8);  // random bits of the block's quants
    if (type == GgmlType::Q4_K) {
      uint16_t d = scale_half(r, 5), dmin = scale_half(r >> 16, 5);
      memcpy(blk, &d, 2);
      memcpy(blk + 2, &dmin, 2);
    } else {  // Q8_0
      uint16_t d = scale_half(r, 6);
      memcpy(blk, &d, 2);
    }
  }
}

void fill_expert(const SlotLayout& layout, uint64_t seed, uint32_t expert, uint8_t* out,
                 uint32_t threads) {
  const uint64_t bb = block_bytes(layout.type);
  const uint64_t sizes[3] = {layout.gate_bytes, layout.gate_bytes, layout.down_bytes};
  // Split each projection into `threads` ranges of whole blocks.
  std::vector<std::thread> pool;
  threads = std::max<uint32_t>(threads, 1);
  uint64_t base = 0;
  for (uint32_t p = 0; p < 3; ++p) {
    const uint64_t blocks = sizes[p] / bb;
    const uint64_t key = projection_key(seed, expert, p);
    for (uint32_t t = 0; t < threads; ++t) {
      uint64_t b0 = blocks * t / threads, b1 = blocks * (t + 1) / threads;
      if (b1 == b0) continue;
      std::span<uint8_t> dst(out + base + b0 * bb, (b1 - b0) * bb);
      if (threads == 1)
        fill_projection(layout.type, key, b0 * bb, dst);
      else
        pool.emplace_back(fill_projection, layout.type, key, b0 * bb, dst);
    }
    base += sizes[p];
  }
  for (auto& th : pool) th.join();
}

std::vector<Routing> make_routings(uint32_t count, uint32_t n_tokens, uint32_t top_k,
                                   uint32_t n_experts, double skew, bool avoid_previous,
                                   uint64_t seed) {
  Rng rng(mix64(seed ^ 0x726f7574696e67ull));
  // Zipf(skew) over a random permutation: cdf[i] for rank i, perm[i] its expert.
  std::vector<uint32_t> perm(n_experts);
  for (uint32_t i = 0; i < n_experts; ++i) perm[i] = i;
  for (uint32_t i = n_experts; i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
  std::vector<double> cdf(n_experts);
  double sum = 0;
  for (uint32_t i = 0; i < n_experts; ++i) cdf[i] = (sum += std::pow(i + 1.0, -skew));
  auto draw = [&] {
    if (skew <= 0) return rng.below(n_experts);
    double u = rng.uniform() * sum;
    uint32_t r = static_cast<uint32_t>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    return perm[std::min(r, n_experts - 1)];
  };

  std::vector<Routing> out(count);
  std::vector<uint8_t> used_prev(n_experts, 0), used(n_experts, 0);
  uint32_t prev_distinct = 0;
  for (Routing& r : out) {
    // Leave out the previous batch's experts only where top_k others remain.
    const bool avoid = avoid_previous && n_experts - prev_distinct >= top_k;
    std::fill(used.begin(), used.end(), 0);
    r.ids.resize(uint64_t{n_tokens} * top_k);
    r.weights.resize(r.ids.size());
    for (uint32_t t = 0; t < n_tokens; ++t) {
      uint32_t* ids = &r.ids[uint64_t{t} * top_k];
      float* w = &r.weights[uint64_t{t} * top_k];
      double wsum = 0;
      for (uint32_t k = 0; k < top_k; ++k) {
        uint32_t e;
        for (;;) {
          e = draw();
          if (avoid && used_prev[e]) continue;
          if (std::find(ids, ids + k, e) != ids + k) continue;
          break;
        }
        ids[k] = e;
        w[k] = static_cast<float>(0.1 + rng.uniform());
        wsum += w[k];
        used[e] = 1;
      }
      for (uint32_t k = 0; k < top_k; ++k) w[k] = static_cast<float>(w[k] / wsum);
    }
    r.distinct_experts = static_cast<uint32_t>(std::count(used.begin(), used.end(), 1));
    used_prev.swap(used);
    prev_distinct = r.distinct_experts;
  }
  return out;
}

std::vector<float> random_activations(uint64_t n, uint64_t seed) {
  Rng rng(mix64(seed ^ 0x6163746976ull));
  std::vector<float> x(n);
  for (float& v : x) v = static_cast<float>(rng.uniform() * 2.0 - 1.0);
  return x;
}

}  // namespace moepool::bench
