#include "daemon/warmup.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <tuple>

#include "common/units.h"

namespace moepool {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(20);  // progress check while reading

}  // namespace

std::vector<WarmItem> plan_warmup(const Model& model, std::vector<PopularityEntry> entries,
                                  uint64_t budget_bytes, uint64_t* bytes) {
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    if (a.count != b.count) return a.count > b.count;
    return a.layer != b.layer ? a.layer < b.layer : a.expert < b.expert;
  });
  struct Planned {
    uint32_t file;
    uint64_t offset;
    WarmItem item;
  };
  std::vector<Planned> plan;
  uint64_t used = 0;
  for (const PopularityEntry& e : entries) {
    if (e.count <= 0) break;
    int pos = model.layer_pos(e.layer);
    if (pos < 0) continue;
    const MoeLayer& layer = model.catalog.layers()[pos];
    if (e.expert >= layer.n_experts || layer.projections.empty()) continue;
    uint64_t stride = pos < static_cast<int>(model.layouts.size()) ? model.layouts[pos].stride
                                                                   : layer.expert_bytes;
    if (used + stride > budget_bytes) continue;  // a smaller class's expert may still fit
    used += stride;
    Extent first = layer.projections[0].expert_extent(e.expert);
    for (const ProjTensor& p : layer.projections) {
      Extent x = p.expert_extent(e.expert);
      if (std::tie(x.file_index, x.offset) < std::tie(first.file_index, first.offset)) first = x;
    }
    plan.push_back({first.file_index, first.offset, {e.layer, e.expert, e.count}});
  }
  std::sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    return std::tie(a.file, a.offset) < std::tie(b.file, b.offset);
  });
  std::vector<WarmItem> out;
  out.reserve(plan.size());
  for (const Planned& p : plan) out.push_back(p.item);
  if (bytes) *bytes = used;
  return out;
}

Warmup::Warmup(ExpertCache* cache, PopularityStore* popularity, bool enabled)
    : cache_(cache), popularity_(popularity), enabled_(enabled) {}

Warmup::~Warmup() { stopping_ = true; }  // queue_ (destroyed first) then drains and joins

void Warmup::on_open(std::shared_ptr<Model> model) {
  queue_.post([this, model = std::move(model)] { run(model); });
}

void Warmup::run(const std::shared_ptr<Model>& model) {
  const std::string& name = model->catalog.name();
  PopularityStore::Opened opened = popularity_->open_model(model->id(), name);
  if (!opened.first || !enabled_ || stopping_) return;
  if (opened.entries.empty()) {
    spdlog::info("warm-up of model {}: no saved popularity yet", name);
    return;
  }
  // At most the pool's free bytes, the model's maximum and its current share (0: none yet).
  CacheStats cs = cache_->stats();
  uint64_t budget = cs.pool_bytes - std::min(cs.pool_bytes, cs.used_bytes);
  QuotaView q = cache_->quota_of(*model);
  if (q.quota.max_bytes) budget = std::min(budget, q.quota.max_bytes);
  if (q.share_bytes) budget = std::min(budget, q.share_bytes);
  uint64_t plan_bytes = 0;
  std::vector<WarmItem> items = plan_warmup(*model, opened.entries, budget, &plan_bytes);
  if (items.empty()) {
    spdlog::info("warm-up of model {}: nothing fits ({} free)", name, format_bytes(budget));
    return;
  }
  auto start = std::chrono::steady_clock::now();
  const size_t planned = items.size();
  auto started = cache_->warm(model, std::move(items));
  if (!started.ok()) {
    spdlog::warn("warm-up of model {} refused: {}", name, started.status().message());
    return;
  }
  spdlog::info(
      "warm-up of model {}: {} hottest experts planned ({} of slots), {} reads started in "
      "file order (the rest are resident already or do not fit now)",
      name, planned, format_bytes(plan_bytes), *started);
  ModelCounters c = cache_->model_counters(*model);
  while (c.warmup_state == "running" && !stopping_) {
    std::this_thread::sleep_for(kPollInterval);
    c = cache_->model_counters(*model);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("warm-up of model {} {}: {} of {} experts loaded ({}) in {:.2f} s", name,
               c.warmup_state, c.warmup_loaded, c.warmup_planned,
               format_bytes(c.warmup_bytes_read), secs);
}

}  // namespace moepool
