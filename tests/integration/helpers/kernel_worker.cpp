// A worker process for the end-to-end kernel test (tests/kernels/kernels_daemon_test.cpp):
// attaches to moepoold, acquires the experts a synthetic routing of one layer needs,
// imports the pool into its own Vulkan device (host segments through
// VK_EXT_external_memory_host, VRAM segments through VK_KHR_external_memory_fd), runs the
// MoE decode and prefill kernels on the experts where the pool holds them, and compares
// each result with moe_ffn_reference computed from the model file's bytes (read through
// the catalog, never from the pool).
//
//   kernel_worker SOCKET MODEL LAYER [--top-k K] [--tokens N] [--seed S] [--bound B]
//
// Prints "pool <backend> segments <n> segment_bytes <b> device <name>", then one line per
// run, "nmse decode tokens <n> <value>" (and "nmse decode int8 tokens <n> <value>" where
// int8 activations apply), "nmse prefill tile <t> tokens <n> <value>",
// "max_pairs_per_expert <n>", and finally "ok" or "nmse over bound <B>".
// Exit status: 0 every NMSE <= bound, 3 some NMSE over the bound (or not a number),
// 1 error (printed as "error <code>: <message>"), 77 nothing to test: no Vulkan device, or
// a driver that cannot import the read-only host pool (NVIDIA) (printed as "skip: ...").
//
// Built only where Vulkan is (tests/CMakeLists.txt links it with libmoepool-kernels).

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/catalog.h"
#include "kernels/moe_gpu.h"
#include "kernels/moe_reference.h"
#include "kernels/vk_device.h"
#include "kernels/vk_memory_import.h"
#include "moepool/client.h"

using namespace moepool;

namespace {

int fail(const Status& st) {
  std::printf("error %s: %s\n", code_name(st.code()), st.message().c_str());
  return 1;
}

// sum((a - b)^2) / sum(b^2); NaN when either has a NaN.
double nmse(std::span<const float> got, std::span<const float> want) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    double d = double(got[i]) - double(want[i]);
    err += d * d;
    ref += double(want[i]) * double(want[i]);
  }
  return ref > 0 ? err / ref : err;
}

// One routed batch: x [n][n_embd], ids and weights [n][top_k]. Every token routes to
// expert `hot` (so it gets n pairs, more than one tile of 32) and to top_k - 1 other
// distinct experts drawn at random; weights are positive and sum to 1 per token.
struct Batch {
  uint32_t n = 0;
  std::vector<float> x, weights;
  std::vector<uint32_t> ids;
};

Batch make_batch(std::mt19937_64& rng, uint32_t n, uint32_t n_embd, uint32_t top_k,
                 uint32_t n_experts, uint32_t hot) {
  Batch b;
  b.n = n;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uni(0.1f, 1.0f);
  b.x.resize(size_t{n} * n_embd);
  for (float& v : b.x) v = normal(rng);
  for (uint32_t t = 0; t < n; ++t) {
    std::vector<uint32_t> chosen = {hot};
    while (chosen.size() < top_k) {
      uint32_t e = static_cast<uint32_t>(rng() % n_experts);
      if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
    }
    float sum = 0;
    std::vector<float> w(top_k);
    for (float& v : w) sum += (v = uni(rng));
    for (uint32_t k = 0; k < top_k; ++k) {
      b.ids.push_back(chosen[k]);
      b.weights.push_back(w[k] / sum);
    }
  }
  return b;
}

GgmlType proj_type(const MoeLayer& layer, ProjKind kind) {
  for (const auto& p : layer.projections)
    if (p.kind == kind) return p.type;
  return layer.projections.front().type;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s SOCKET MODEL LAYER [--top-k K] [--tokens N] [--seed S] [--bound B]\n",
                 argv[0]);
    return 2;
  }
  const std::string socket = argv[1], model_path = argv[2];
  const uint32_t layer_id = static_cast<uint32_t>(std::stoul(argv[3]));
  uint32_t top_k = 4, n_prefill = 160;
  uint64_t seed = 1;
  double bound = 1e-9;
  for (int i = 4; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--top-k")
      top_k = static_cast<uint32_t>(std::stoul(argv[i + 1]));
    else if (a == "--tokens")
      n_prefill = static_cast<uint32_t>(std::stoul(argv[i + 1]));
    else if (a == "--seed")
      seed = std::stoull(argv[i + 1]);
    else if (a == "--bound")
      bound = std::stod(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }

  // The model file, read through the catalog: the reference's bytes.
  auto catalog = Catalog::open(model_path);
  if (!catalog.ok()) return fail(catalog.status());
  const MoeLayer* layer = catalog->layer(layer_id);
  if (!layer) return fail(InvalidArgument("layer " + std::to_string(layer_id) + " is not MoE"));
  if (layer->projections.size() != 3)
    return fail(InvalidArgument("kernel_worker needs separate gate, up and down tensors"));
  kernels::MoeGpuShape shape;
  shape.n_embd = static_cast<uint32_t>(layer->projections[0].ne[0]);
  shape.n_ff = static_cast<uint32_t>(layer->projections[0].ne[1]);
  shape.top_k = top_k;
  shape.gate_up_type = proj_type(*layer, ProjKind::kGate);
  shape.down_type = proj_type(*layer, ProjKind::kDown);
  const uint32_t n_experts = layer->n_experts;
  if (top_k == 0 || top_k > n_experts) return fail(InvalidArgument("--top-k out of range"));

  // The Vulkan device; no device is a skip, not a failure.
  auto device = vk::Device::open();
  if (!device.ok()) {
    std::printf("skip: no Vulkan device: %s\n", device.status().message().c_str());
    return 77;
  }
  const vk::Device& dev = **device;

  // Batches: decode of 1 and kMaxDecodeTokens tokens, prefill of n_prefill tokens, all with
  // expert 0 hot.
  std::mt19937_64 rng(seed);
  std::vector<Batch> decode = {
      make_batch(rng, 1, shape.n_embd, top_k, n_experts, 0),
      make_batch(rng, kernels::kMaxDecodeTokens, shape.n_embd, top_k, n_experts, 0)};
  Batch prefill = make_batch(rng, n_prefill, shape.n_embd, top_k, n_experts, 0);
  std::set<uint32_t> routed;
  for (const Batch* b : {&decode[0], &decode[1], &prefill})
    routed.insert(b->ids.begin(), b->ids.end());
  std::vector<uint32_t> experts(routed.begin(), routed.end());

  // Reference weights from the file.
  std::vector<int> fds;
  for (const auto& f : catalog->files()) fds.push_back(open(f.path.c_str(), O_RDONLY | O_CLOEXEC));
  std::vector<std::vector<uint8_t>> file_bytes;
  std::vector<kernels::ExpertWeights> ref_experts(n_experts);
  file_bytes.reserve(experts.size() * 3);
  for (uint32_t e : experts) {
    for (const auto& p : layer->projections) {
      Extent x = p.expert_extent(e);
      auto& buf = file_bytes.emplace_back(x.bytes);
      if (fds[x.file_index] < 0 ||
          pread(fds[x.file_index], buf.data(), x.bytes, static_cast<off_t>(x.offset)) !=
              static_cast<ssize_t>(x.bytes))
        return fail(Status::FromErrno("pread " + catalog->files()[x.file_index].path, errno));
      kernels::ProjWeights w{p.type, buf.data()};
      if (p.kind == ProjKind::kGate)
        ref_experts[e].gate = w;
      else if (p.kind == ProjKind::kUp)
        ref_experts[e].up = w;
      else
        ref_experts[e].down = w;
    }
  }
  for (int fd : fds)
    if (fd >= 0) close(fd);

  // The pool: acquire, then import its segments (scoped so the import dies first).
  auto client = Client::connect(socket, "kernel_worker");
  if (!client.ok()) return fail(client.status());
  auto model = (*client)->open_model(model_path);
  if (!model.ok()) return fail(model.status());
  auto leases = (*client)->acquire(model->id, layer_id, experts);
  if (!leases.ok()) return fail(leases.status());

  bool over = false;
  {
    const std::string backend = (*client)->pool_backend();
    const uint64_t segment_bytes = (*client)->segment_bytes();
    Result<std::unique_ptr<vk::ImportedPool>> pool = Internal("unset");
    if (backend == "vulkan") {
      auto seg_fds = (*client)->dup_segment_fds();
      if (!seg_fds.ok()) return fail(seg_fds.status());
      pool = vk::ImportedPool::import_fds(dev, std::move(seg_fds).value(), segment_bytes,
                                          (*client)->device_uuid());
    } else {
      pool = vk::ImportedPool::import_host(
          dev, (*client)->pool_base(), segment_bytes,
          static_cast<uint32_t>((*client)->pool_bytes() / segment_bytes));
    }
    if (!pool.ok() && backend != "vulkan" && pool.status().code() == Code::kFailedPrecondition) {
      // The driver cannot import the read-only host pool (NVIDIA): nothing to test here.
      std::printf("skip: %s\n", pool.status().message().c_str());
      return 77;
    }
    if (!pool.ok()) return fail(pool.status());
    std::printf("pool %s segments %u segment_bytes %llu device %s\n", backend.c_str(),
                (*pool)->segment_count(), static_cast<unsigned long long>(segment_bytes),
                dev.name().c_str());

    // Locations of the leased experts; only the segments they use are bound (a pool may
    // have more segments than the kernels bind at once), renumbered by subset().
    std::vector<kernels::ExpertLocation> leased;
    for (const Lease& l : *leases) {
      auto loc = (*pool)->locate(l);
      if (!loc.ok()) return fail(loc.status());
      leased.push_back(*loc);
    }
    vk::ImportedPool::Subset bind = (*pool)->subset(leased);
    std::vector<kernels::ExpertLocation> where(n_experts);
    for (size_t i = 0; i < leases->size(); ++i) where[(*leases)[i].expert] = leased[i];
    std::printf("bound %zu of %u segments\n", bind.buffers.size(), (*pool)->segment_count());

    auto gpu = kernels::MoeGpu::create(dev);
    if (!gpu.ok()) return fail(gpu.status());
    Status st = (*gpu)->bind_segments(bind.buffers, bind.bytes);
    if (!st.ok()) return fail(st);

    kernels::MoeShape ref_shape{shape.n_embd, shape.n_ff, top_k};
    auto check = [&](const std::string& what, const Batch& b, std::span<const float> got,
                     bool int8 = false) -> Status {
      std::vector<float> want(got.size());
      MOEPOOL_RETURN_IF_ERROR(kernels::moe_ffn_reference(ref_shape, ref_experts, b.x, b.ids,
                                                         b.weights, want, int8));
      double v = nmse(got, want);
      std::printf("nmse %s tokens %u %.6e\n", what.c_str(), b.n, v);
      if (!(v <= bound)) over = true;
      return Status::Ok();
    };
    // Decode in F32, and with int8 activations too where they apply (every projection
    // Q4_K, a device with integer dot products): checked against the reference that rounds
    // x and h the same way.
    std::vector<kernels::MoeGpuActivations> modes{kernels::MoeGpuActivations::kF32};
    if (dev.has_int8_decode() && shape.gate_up_type == GgmlType::Q4_K &&
        shape.down_type == GgmlType::Q4_K) {
      modes.push_back(kernels::MoeGpuActivations::kInt8);
    }
    for (kernels::MoeGpuActivations mode : modes) {
      const bool int8 = mode == kernels::MoeGpuActivations::kInt8;
      st = (*gpu)->set_tuning({.decode_activations = mode});
      if (!st.ok()) return fail(st);
      for (const Batch& b : decode) {
        std::vector<float> out(b.x.size());
        st = (*gpu)->decode(shape, where, b.x, b.ids, b.weights, out);
        if (!st.ok()) return fail(st);
        st = check(int8 ? "decode int8" : "decode", b, out, int8);
        if (!st.ok()) return fail(st);
      }
    }
    for (uint32_t tile : kernels::kPrefillTiles) {
      std::vector<float> out(prefill.x.size());
      st = (*gpu)->prefill(shape, where, prefill.x, prefill.ids, prefill.weights, tile, out);
      if (!st.ok()) return fail(st);
      st = check("prefill tile " + std::to_string(tile), prefill, out);
      if (!st.ok()) return fail(st);
    }
    uint32_t hot = 0;
    for (uint32_t id : prefill.ids) hot += id == 0;
    std::printf("max_pairs_per_expert %u\n", hot);
  }

  Status st = (*client)->release(*leases);
  if (!st.ok()) return fail(st);
  if (over) {
    std::printf("nmse over bound %.3e\n", bound);
    return 3;
  }
  std::printf("ok\n");
  return 0;
}
