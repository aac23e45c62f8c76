// The Vulkan MoE kernels (kernels/moe_gpu.h) against the CPU reference moe_ffn_reference, for
// every weight type and a mixed one, decode and prefill at every tile width, with experts
// scattered at odd (legal) offsets over three segment buffers; and the argument checks.
// Runs on whatever Vulkan device there is (lavapipe in CI); skips without one.
#include "kernels/moe_gpu.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/dequant.h"
#include "kernels/moe_reference.h"
#include "kernels/vk_buffer.h"
#include "kernels/vk_device.h"

namespace moepool::kernels {
namespace {

constexpr uint32_t kEmbd = 512;
constexpr uint32_t kFf = 256;
constexpr uint32_t kExperts = 16;
constexpr uint32_t kTopK = 4;
constexpr uint32_t kSegments = 3;
// Every token of the prefill batch routes to this expert (at varying k), so it gets more
// pairs than the widest tile: tiles past the first and rows past 32 are exercised.
constexpr uint32_t kHotExpert = 5;

// F32 accumulation in the kernels vs double in the reference, over 512 (256) products and a
// sum over k. Measured on lavapipe (printed by each test): decode 4e-15..4e-14, prefill
// 2e-14 (Q4_K) .. 5e-13 (Q8_0, F16). 1e-9 leaves three orders of magnitude of margin for
// other devices' rounding (FMA contraction, reduction order), and is still ~1e6 below what
// an indexing bug gives (a wrong expert, a zeroed row or a missed tile: NMSE ~1e-3..1;
// zeroing pairs past 32 of a tile measured 0.09).
constexpr double kMaxNmse = 1e-9;
// The int8 decode path (MoeGpuActivations::kInt8) against the reference given the same int8
// rounding of x and h (moe_ffn_reference's int8_activations): the same arithmetic but for
// F32 accumulation and the rare h value that rounds the other way at a tie (one step of
// 1/127 of its block's max, ~2e-7 each at this size). Measured on lavapipe: 5.7e-15..6.3e-15
// (no tie). 1e-6 allows a few ties on devices whose exp() rounds differently.
constexpr double kMaxNmseInt8 = 1e-6;
// ... and against the plain F32 reference: the int8 quantization error itself (measured
// 7e-6..3e-5 here, x uniform in [-1, 1]); a bound, not a target: bugs give 1e-2 and more.
constexpr double kMaxNmseInt8Quant = 1e-3;

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int exp = static_cast<int>((x >> 23) & 0xffu) - 127 + 15;
  const uint32_t mant = x & 0x7fffffu;
  if (exp <= 0) return static_cast<uint16_t>(sign);  // tiny: flush to zero (tests only)
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  uint32_t h = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  if (mant & 0x1000u) ++h;
  return static_cast<uint16_t>(h);
}

void put16(std::vector<uint8_t>& v, size_t at, uint16_t h) {
  v[at] = static_cast<uint8_t>(h);
  v[at + 1] = static_cast<uint8_t>(h >> 8);
}

// Random rows x cols weights of `type` with magnitudes that keep the FFN's values O(1).
std::vector<uint8_t> random_proj(GgmlType type, uint32_t rows, uint32_t cols, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  const uint64_t row_bytes = *ggml_row_bytes(type, cols);
  std::vector<uint8_t> v(row_bytes * rows);
  for (auto& b : v) b = static_cast<uint8_t>(byte(rng));
  const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
  if (type == GgmlType::Q4_K) {
    for (size_t b = 0; b < v.size(); b += kQ4_KBlockBytes) {
      put16(v, b, f32_to_f16(u(rng) * scale / 16.0f));      // d (scale <= 63, q <= 15)
      put16(v, b + 2, f32_to_f16(u(rng) * scale / 16.0f));  // dmin
    }
  } else if (type == GgmlType::Q8_0) {
    for (size_t b = 0; b < v.size(); b += kQ8_0BlockBytes) {
      put16(v, b, f32_to_f16(u(rng) * scale / 64.0f));
    }
  } else {
    std::uniform_real_distribution<float> w(-1.0f, 1.0f);
    for (size_t i = 0; i < v.size(); i += 2) put16(v, i, f32_to_f16(w(rng) * 2.0f * scale));
  }
  return v;
}

// The experts of one layer: their bytes, scattered over kSegments device buffers at
// offsets that are aligned only as much as the type needs, and the same bytes for the
// reference.
struct Layer {
  MoeGpuShape shape;
  std::deque<std::vector<uint8_t>> projs;  // stable addresses for ExpertWeights
  std::vector<ExpertWeights> ref;
  std::vector<ExpertLocation> locs;
  std::vector<std::unique_ptr<vk::Buffer>> segments;
  std::vector<VkBuffer> handles;
  std::vector<uint64_t> bytes;
};

Result<std::unique_ptr<Layer>> make_layer(const vk::Device& dev, const MoeGpuShape& shape,
                                          uint32_t seed) {
  auto layer = std::make_unique<Layer>();
  layer->shape = shape;
  std::mt19937 rng(seed);
  std::vector<std::vector<uint8_t>> seg(kSegments);
  auto place = [&](const std::vector<uint8_t>& p, GgmlType type, uint32_t e, uint32_t which) {
    const uint32_t s = (e + which) % kSegments;
    const uint64_t align = type == GgmlType::Q4_K ? 4 : 2;
    // Pads of 0..3 alignment units: Q4_K lands 16-byte aligned or not, Q8_0/F16 2 mod 4 or not.
    uint64_t at = (seg[s].size() + align - 1) / align * align + align * ((e * 3 + which) % 4);
    seg[s].resize(at, 0xEE);
    seg[s].insert(seg[s].end(), p.begin(), p.end());
    return ProjLocation{s, at};
  };
  for (uint32_t e = 0; e < kExperts; ++e) {
    ExpertLocation loc;
    layer->projs.push_back(random_proj(shape.gate_up_type, shape.n_ff, shape.n_embd, rng));
    loc.gate = place(layer->projs.back(), shape.gate_up_type, e, 0);
    const void* gate = layer->projs.back().data();
    layer->projs.push_back(random_proj(shape.gate_up_type, shape.n_ff, shape.n_embd, rng));
    loc.up = place(layer->projs.back(), shape.gate_up_type, e, 1);
    const void* up = layer->projs.back().data();
    layer->projs.push_back(random_proj(shape.down_type, shape.n_embd, shape.n_ff, rng));
    loc.down = place(layer->projs.back(), shape.down_type, e, 2);
    const void* down = layer->projs.back().data();
    layer->locs.push_back(loc);
    layer->ref.push_back(
        {{shape.gate_up_type, gate}, {shape.gate_up_type, up}, {shape.down_type, down}});
  }
  for (uint32_t s = 0; s < kSegments; ++s) {
    seg[s].resize(seg[s].size() + 2, 0xEE);  // a little slack past the last projection
    auto b = vk::Buffer::create(dev, seg[s].size(), VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
                                vk::MemoryKind::kDeviceLocal);
    if (!b.ok()) return b.status();
    MOEPOOL_RETURN_IF_ERROR(vk::upload(dev, **b, 0, seg[s].data(), seg[s].size()));
    layer->handles.push_back((*b)->handle());
    layer->bytes.push_back(seg[s].size());
    layer->segments.push_back(std::move(*b));
  }
  return layer;
}

struct Routing {
  std::vector<float> x;
  std::vector<uint32_t> ids;
  std::vector<float> weights;
};

// n_tokens random tokens, each routed to kTopK distinct experts; with `hot`, every token
// routes to kHotExpert at position t % kTopK.
Routing make_routing(uint32_t n_tokens, bool hot, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> xd(-1.0f, 1.0f), wd(0.05f, 1.0f);
  Routing r;
  r.x.resize(size_t{n_tokens} * kEmbd);
  for (float& v : r.x) v = xd(rng);
  for (uint32_t t = 0; t < n_tokens; ++t) {
    std::vector<uint32_t> chosen;
    if (hot) chosen.push_back(kHotExpert);
    while (chosen.size() < kTopK) {
      const uint32_t e = rng() % kExperts;
      if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
    }
    if (hot) std::swap(chosen[0], chosen[t % kTopK]);
    for (uint32_t k = 0; k < kTopK; ++k) {
      r.ids.push_back(chosen[k]);
      r.weights.push_back(wd(rng));
    }
  }
  return r;
}

double nmse(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? num / den : num;
}

void expect_error(const Status& st, const std::string& needle) {
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
}

// One device and one MoeGpu for the whole suite (pipelines are built once).
class MoeGpuTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dev = vk::Device::open();
    if (!dev.ok()) {
      skip_reason_ = "no Vulkan device: " + dev.status().message();
      return;
    }
    device_ = std::move(*dev).release();
    auto gpu = MoeGpu::create(*device_);
    if (!gpu.ok()) {
      skip_reason_ = "MoeGpu unavailable: " + gpu.status().message();
      return;
    }
    gpu_ = std::move(*gpu).release();
  }
  static void TearDownTestSuite() {
    delete gpu_;
    gpu_ = nullptr;
    delete device_;
    device_ = nullptr;
  }
  void SetUp() override {
    if (!gpu_) GTEST_SKIP() << skip_reason_;
  }

  std::unique_ptr<Layer> layer(GgmlType gate_up, GgmlType down, uint32_t seed) {
    const MoeGpuShape shape{kEmbd, kFf, kTopK, gate_up, down};
    auto l = make_layer(*device_, shape, seed);
    EXPECT_TRUE(l.ok()) << l.status().message();
    if (!l.ok()) return nullptr;
    Status st = gpu_->bind_segments((*l)->handles, (*l)->bytes);
    EXPECT_TRUE(st.ok()) << st.message();
    return std::move(*l);
  }

  std::vector<float> reference(const Layer& l, const Routing& r, bool int8 = false) {
    std::vector<float> out(r.x.size());
    Status st = moe_ffn_reference({l.shape.n_embd, l.shape.n_ff, l.shape.top_k}, l.ref, r.x, r.ids,
                                  r.weights, out, int8);
    EXPECT_TRUE(st.ok()) << st.message();
    return out;
  }

  // The decode activation modes a layer runs in: F32 always; int8 too where the device
  // has integer dot products and every projection is Q4_K.
  static std::vector<MoeGpuActivations> decode_modes(const MoeGpuShape& s) {
    std::vector<MoeGpuActivations> m{MoeGpuActivations::kF32};
    if (device_->has_int8_decode() && s.gate_up_type == GgmlType::Q4_K &&
        s.down_type == GgmlType::Q4_K) {
      m.push_back(MoeGpuActivations::kInt8);
    }
    return m;
  }

  // Decode of `r` in `mode` against its reference; returns the NMSE (printed as `what`).
  double check_decode(const Layer& l, const Routing& r, MoeGpuActivations mode,
                      const std::string& what) {
    const bool int8 = mode == MoeGpuActivations::kInt8;
    std::vector<float> out(r.x.size(), NAN);
    Status st = gpu_->decode(l.shape, l.locs, r.x, r.ids, r.weights, out);
    EXPECT_TRUE(st.ok()) << st.message();
    const double e = nmse(out, reference(l, r, int8));
    std::printf("[ NMSE     ] %s%s: %.3g\n", what.c_str(), int8 ? " int8" : "", e);
    EXPECT_LT(e, int8 ? kMaxNmseInt8 : kMaxNmse) << what << (int8 ? " int8" : "");
    if (int8) {
      const double q = nmse(out, reference(l, r));
      std::printf("[ NMSE     ] %s int8 against F32: %.3g\n", what.c_str(), q);
      EXPECT_LT(q, kMaxNmseInt8Quant) << what << " int8 against the F32 reference";
    }
    return e;
  }

  // Decode of 1 and 3 tokens in every mode, then prefill of 160 tokens at tiles
  // 32/64/128, against the reference.
  void check_all(GgmlType gate_up, GgmlType down, uint32_t seed) {
    auto l = layer(gate_up, down, seed);
    ASSERT_TRUE(l);
    const std::string name =
        std::string(ggml_type_name(gate_up)) + "/" + std::string(ggml_type_name(down));
    for (MoeGpuActivations mode : decode_modes(l->shape)) {
      ASSERT_TRUE(gpu_->set_tuning({.decode_activations = mode}).ok());
      for (uint32_t n : {1u, 3u}) {
        check_decode(*l, make_routing(n, false, seed + n), mode,
                     name + " decode " + std::to_string(n) + " tokens");
      }
    }
    ASSERT_TRUE(gpu_->set_tuning({}).ok());
    Routing r = make_routing(160, true, seed + 100);
    std::vector<float> ref = reference(*l, r);
    for (uint32_t tile : kPrefillTiles) {
      std::vector<float> out(r.x.size(), NAN);
      Status st = gpu_->prefill(l->shape, l->locs, r.x, r.ids, r.weights, tile, out);
      ASSERT_TRUE(st.ok()) << st.message();
      const double e = nmse(out, ref);
      std::printf("[ NMSE     ] %s prefill 160 tokens tile %u: %.3g\n", name.c_str(), tile, e);
      EXPECT_LT(e, kMaxNmse) << name << " prefill tile " << tile;
      // Every token, not just on average: a bug confined to some tokens or rows would hide
      // in the global NMSE only if it were tiny.
      for (uint32_t t = 0; t < 160; ++t) {
        std::vector<float> a(out.begin() + t * kEmbd, out.begin() + (t + 1) * kEmbd);
        std::vector<float> b(ref.begin() + t * kEmbd, ref.begin() + (t + 1) * kEmbd);
        ASSERT_LT(nmse(a, b), kMaxNmse) << name << " prefill tile " << tile << " token " << t;
      }
    }
  }

  static inline vk::Device* device_ = nullptr;
  static inline MoeGpu* gpu_ = nullptr;
  static inline std::string skip_reason_;
};

TEST_F(MoeGpuTest, Q4KMatchesReference) { check_all(GgmlType::Q4_K, GgmlType::Q4_K, 1); }
TEST_F(MoeGpuTest, Q8_0MatchesReference) { check_all(GgmlType::Q8_0, GgmlType::Q8_0, 2); }
TEST_F(MoeGpuTest, F16MatchesReference) { check_all(GgmlType::F16, GgmlType::F16, 3); }
TEST_F(MoeGpuTest, MixedQ4KGateUpQ8_0DownMatchesReference) {
  check_all(GgmlType::Q4_K, GgmlType::Q8_0, 4);
}

// The table decides which bytes are read: swapping two experts' entries must change the
// result to those experts' (a kernel that ignored the table would not notice).
TEST_F(MoeGpuTest, ReadsTheExpertTheTableNames) {
  auto l = layer(GgmlType::Q4_K, GgmlType::Q8_0, 7);
  ASSERT_TRUE(l);
  Routing r = make_routing(1, false, 70);
  std::vector<ExpertLocation> swapped = l->locs;
  std::vector<ExpertWeights> ref_swapped = l->ref;
  const uint32_t a = r.ids[0], b = (a + 1) % kExperts;
  std::swap(swapped[a], swapped[b]);
  std::swap(ref_swapped[a], ref_swapped[b]);
  std::vector<float> ref(r.x.size());
  ASSERT_TRUE(moe_ffn_reference({kEmbd, kFf, kTopK}, ref_swapped, r.x, r.ids, r.weights, ref).ok());
  std::vector<float> out(r.x.size());
  ASSERT_TRUE(gpu_->decode(l->shape, swapped, r.x, r.ids, r.weights, out).ok());
  EXPECT_LT(nmse(out, ref), kMaxNmse);
  std::vector<float> unswapped = reference(*l, r);
  EXPECT_GT(nmse(out, unswapped), 1e-3);
}

// The launch shape is a tuning knob, never a correctness one: odd rows per workgroup (so a
// subgroup's rows run past the workgroup's end and are clamped), one and four rows at once,
// small and large workgroups, 32-row prefill blocks.
TEST_F(MoeGpuTest, TuningDoesNotChangeTheResult) {
  auto l = layer(GgmlType::Q4_K, GgmlType::Q8_0, 6);
  ASSERT_TRUE(l);
  Routing r = make_routing(3, false, 60);
  std::vector<float> ref = reference(*l, r);
  Routing p = make_routing(40, true, 61);
  std::vector<float> pref = reference(*l, p);
  const MoeGpuTuning tunings[] = {
      {.decode_workgroup = 64, .decode_rows = 5, .prefill_rows = 32, .decode_rows_at_once = 3},
      {.decode_workgroup = 32, .decode_rows = 1, .prefill_rows = 64, .decode_rows_at_once = 1},
      {.decode_workgroup = 256, .decode_rows = 0, .prefill_rows = 0, .decode_rows_at_once = 4},
  };
  for (const MoeGpuTuning& t : tunings) {
    ASSERT_TRUE(gpu_->set_tuning(t).ok());
    std::vector<float> out(r.x.size(), NAN);
    ASSERT_TRUE(gpu_->decode(l->shape, l->locs, r.x, r.ids, r.weights, out).ok());
    EXPECT_LT(nmse(out, ref), kMaxNmse) << "decode, workgroup " << t.decode_workgroup << " rows "
                                        << t.decode_rows << " at once " << t.decode_rows_at_once;
    std::vector<float> pout(p.x.size(), NAN);
    ASSERT_TRUE(gpu_->prefill(l->shape, l->locs, p.x, p.ids, p.weights, 128, pout).ok());
    EXPECT_LT(nmse(pout, pref), kMaxNmse) << "prefill rows " << t.prefill_rows;
  }
  expect_error(gpu_->set_tuning({.decode_rows_at_once = 5}), "decode_rows_at_once 5");
  expect_error(gpu_->set_tuning({.prefill_rows = 48}), "prefill_rows 48");
  ASSERT_TRUE(gpu_->set_tuning({}).ok());
}

// The same for the Q4_K layer in both decode modes: odd and clamped rows, int8 workgroups
// of 64 rows (two blocks of h each), a decode_rows the int8 kernel cannot use (5: it keeps
// 32), and a 32-thread workgroup quantizing 512 values of x in several passes.
TEST_F(MoeGpuTest, Q4KTuningDoesNotChangeTheResult) {
  auto l = layer(GgmlType::Q4_K, GgmlType::Q4_K, 10);
  ASSERT_TRUE(l);
  Routing r = make_routing(3, false, 100);
  const MoeGpuTuning tunings[] = {
      {.decode_workgroup = 64, .decode_rows = 5, .decode_rows_at_once = 3},
      {.decode_workgroup = 32, .decode_rows = 64, .decode_rows_at_once = 1},
      {.decode_workgroup = 256, .decode_rows_at_once = 2, .decode_down_rows_at_once = 4},
  };
  for (MoeGpuActivations mode : decode_modes(l->shape)) {
    for (MoeGpuTuning t : tunings) {
      t.decode_activations = mode;
      ASSERT_TRUE(gpu_->set_tuning(t).ok());
      check_decode(*l, r, mode,
                   "workgroup " + std::to_string(t.decode_workgroup) + " rows " +
                       std::to_string(t.decode_rows));
    }
  }
  ASSERT_TRUE(gpu_->set_tuning({}).ok());
}

// The int8 gate+up kernel reading x (uploaded quantized) from a copy in shared memory or
// from global memory at every step computes the same sums in the same order.
TEST_F(MoeGpuTest, SharedXGivesTheSameBits) {
  if (!device_->has_int8_decode()) GTEST_SKIP() << "no int8 decode";
  auto l = layer(GgmlType::Q4_K, GgmlType::Q4_K, 15);
  ASSERT_TRUE(l);
  for (uint32_t n : {1u, 3u, 8u}) {
    Routing r = make_routing(n, false, 150 + n);
    std::vector<float> via[2];
    for (int shared = 0; shared < 2; ++shared) {
      const std::string what = std::to_string(n) + " tokens" + (shared ? " shared x" : "");
      ASSERT_TRUE(
          gpu_->set_tuning({.decode_activations = MoeGpuActivations::kInt8,
                            .decode_x_shared = shared ? MoeGpuSwitch::kOn : MoeGpuSwitch::kOff})
              .ok());
      check_decode(*l, r, MoeGpuActivations::kInt8, what);
      via[shared].assign(r.x.size(), NAN);
      ASSERT_TRUE(gpu_->decode(l->shape, l->locs, r.x, r.ids, r.weights, via[shared]).ok());
      const std::vector<std::string>& ran = gpu_->last_dispatches();
      ASSERT_EQ(ran.size(), 2u);
      // Specialization constant 9 of the gate+up kernel: x in shared memory.
      EXPECT_NE((ran[0] + "/").find(shared ? "/9=1/" : "/9=0/"), std::string::npos)
          << what << ": " << ran[0];
    }
    EXPECT_EQ(std::memcmp(via[0].data(), via[1].data(), via[0].size() * sizeof(float)), 0)
        << n << " tokens";
  }
  ASSERT_TRUE(gpu_->set_tuning({}).ok());
}

TEST_F(MoeGpuTest, TimedRunsGiveTheSameResult) {
  if (device_->timestamp_period_ns() <= 0) GTEST_SKIP() << "queue has no timestamps";
  auto l = layer(GgmlType::Q4_K, GgmlType::Q4_K, 8);
  ASSERT_TRUE(l);
  Routing r = make_routing(2, false, 80);
  ASSERT_TRUE(gpu_->set_tuning({.decode_activations = MoeGpuActivations::kF32}).ok());
  std::vector<float> ref = reference(*l, r);
  std::vector<float> out(r.x.size());
  auto t = gpu_->time_decode(l->shape, l->locs, r.x, r.ids, r.weights, 3, out);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_GT(*t, 0.0);
  EXPECT_LT(nmse(out, ref), kMaxNmse);
  Routing p = make_routing(40, true, 81);
  ref = reference(*l, p);
  out.assign(p.x.size(), 0);
  t = gpu_->time_prefill(l->shape, l->locs, p.x, p.ids, p.weights, 64, 2, out);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_LT(nmse(out, ref), kMaxNmse);
  ASSERT_TRUE(gpu_->set_tuning({}).ok());
}

TEST_F(MoeGpuTest, RefusesBadArguments) {
  auto l = layer(GgmlType::Q4_K, GgmlType::Q8_0, 9);
  ASSERT_TRUE(l);
  Routing r = make_routing(2, false, 90);
  std::vector<float> out(r.x.size());
  const MoeGpuShape& s = l->shape;

  std::vector<uint32_t> bad_ids = r.ids;
  bad_ids[5] = kExperts;
  expect_error(gpu_->decode(s, l->locs, r.x, bad_ids, r.weights, out), "ids[5] = 16");
  expect_error(gpu_->prefill(s, l->locs, r.x, bad_ids, r.weights, 32, out), "ids[5] = 16");

  std::vector<ExpertLocation> locs = l->locs;
  const uint32_t e = r.ids[0];
  locs[e].down.offset = l->bytes[locs[e].down.segment] - 2;
  expect_error(gpu_->decode(s, locs, r.x, r.ids, r.weights, out),
               "experts[" + std::to_string(e) + "].down: offset");
  locs = l->locs;
  locs[e].gate.offset += 2;  // Q4_K needs 4-byte alignment
  expect_error(gpu_->decode(s, locs, r.x, r.ids, r.weights, out),
               "experts[" + std::to_string(e) + "].gate.offset");
  locs = l->locs;
  locs[e].up.segment = kSegments;
  expect_error(gpu_->decode(s, locs, r.x, r.ids, r.weights, out),
               "experts[" + std::to_string(e) + "].up.segment = 3 is not bound");

  expect_error(gpu_->prefill(s, l->locs, r.x, r.ids, r.weights, 48, out), "tile 48");
  expect_error(gpu_->prefill(s, l->locs, r.x, r.ids, r.weights, 0, out), "tile 0");

  Routing many = make_routing(kMaxDecodeTokens + 1, false, 91);
  std::vector<float> many_out(many.x.size());
  expect_error(gpu_->decode(s, l->locs, many.x, many.ids, many.weights, many_out), "at most 8");

  MoeGpuShape odd = s;
  odd.n_embd = 500;
  expect_error(gpu_->decode(odd, l->locs, r.x, r.ids, r.weights, out), "shape.n_embd = 500");
  odd = s;
  odd.down_type = GgmlType::Q5_K;
  expect_error(gpu_->decode(odd, l->locs, r.x, r.ids, r.weights, out), "shape.down_type");

  std::vector<float> short_out(out.size() - 1);
  expect_error(gpu_->decode(s, l->locs, r.x, r.ids, r.weights, short_out), "out has");

  // An unused expert's bad entry is not the call's business: only routed experts are checked.
  locs = l->locs;
  for (uint32_t i = 0; i < kExperts; ++i) {
    if (std::find(r.ids.begin(), r.ids.end(), i) == r.ids.end()) locs[i].down.segment = 99;
  }
  EXPECT_TRUE(gpu_->decode(s, locs, r.x, r.ids, r.weights, out).ok());

  const uint64_t too_big = device_->limits().maxStorageBufferRange + uint64_t{1};
  const VkBuffer h = l->handles[0];
  expect_error(
      gpu_->bind_segments(std::span<const VkBuffer>(&h, 1), std::span<const uint64_t>(&too_big, 1)),
      "bytes[0]");
}

}  // namespace
}  // namespace moepool::kernels
