#include "daemon/budget.h"

#include <algorithm>
#include <cmath>

namespace moepool {

Status Budget::set_quota(const std::string& name, const Quota& q) {
  if (name.empty()) return InvalidArgument("quota: model name is empty");
  if (!(q.weight > 0) || !std::isfinite(q.weight))
    return InvalidArgument("quota for model " + name + ": weight must be > 0, got " +
                           std::to_string(q.weight));
  if (q.max_bytes != 0 && q.max_bytes < q.min_bytes)
    return InvalidArgument("quota for model " + name + ": max " + std::to_string(q.max_bytes) +
                           " bytes is below min " + std::to_string(q.min_bytes) + " bytes");
  uint64_t mins = q.min_bytes;
  for (const auto& [n, other] : quotas_)
    if (n != name) mins += other.min_bytes;
  if (mins > pool_bytes_)
    return InvalidArgument("quota for model " + name + ": the models' minimums would sum to " +
                           std::to_string(mins) + " bytes, more than the pool's " +
                           std::to_string(pool_bytes_));
  quotas_[name] = q;
  return Status::Ok();
}

Quota Budget::quota(const std::string& name) const {
  auto it = quotas_.find(name);
  return it == quotas_.end() ? Quota{} : it->second;
}

void Budget::add_model(uint64_t id, const std::string& name) {
  Entry& e = models_[id];
  e.name = name;
}

void Budget::remove_model(uint64_t id) { models_.erase(id); }

void Budget::on_access(uint64_t id, uint64_t tick) {
  auto it = models_.find(id);
  if (it == models_.end()) return;
  it->second.last_access = tick;
  it->second.accessed = true;
}

void Budget::charge(uint64_t id, int64_t delta) {
  auto it = models_.find(id);
  if (it == models_.end()) return;
  it->second.used = static_cast<uint64_t>(static_cast<int64_t>(it->second.used) + delta);
}

uint64_t Budget::used(uint64_t id) const {
  auto it = models_.find(id);
  return it == models_.end() ? 0 : it->second.used;
}

uint64_t Budget::min_bytes(uint64_t id) const {
  auto it = models_.find(id);
  return it == models_.end() ? 0 : quota(it->second.name).min_bytes;
}

bool Budget::active(uint64_t id, uint64_t now) const {
  auto it = models_.find(id);
  if (it == models_.end() || !it->second.accessed) return false;
  return now - it->second.last_access <= idle_after_;
}

uint64_t Budget::share(uint64_t id, uint64_t now) const {
  auto it = models_.find(id);
  if (it == models_.end()) return 0;
  Quota q = quota(it->second.name);
  if (!active(id, now)) return q.min_bytes;
  // The pool less the minimums idle models keep, split by weight among active models.
  uint64_t idle_min = 0;
  double weights = 0;
  for (const auto& [mid, e] : models_) {
    if (active(mid, now))
      weights += quota(e.name).weight;
    else
      idle_min += quota(e.name).min_bytes;
  }
  double part = static_cast<double>(pool_bytes_ - std::min(pool_bytes_, idle_min)) *
                q.weight / weights;
  uint64_t s = static_cast<uint64_t>(part);
  s = std::max(s, q.min_bytes);
  if (q.max_bytes) s = std::min(s, q.max_bytes);
  return s;
}

QuotaView Budget::view(uint64_t id, uint64_t now) const {
  QuotaView v;
  auto it = models_.find(id);
  if (it == models_.end()) return v;
  v.quota = quota(it->second.name);
  v.share_bytes = share(id, now);
  v.active = active(id, now);
  return v;
}

bool Budget::under_max(uint64_t id, uint64_t bytes) const {
  auto it = models_.find(id);
  if (it == models_.end()) return true;
  Quota q = quota(it->second.name);
  return q.max_bytes == 0 || it->second.used + bytes <= q.max_bytes;
}

Budget::Donors Budget::donors(uint64_t taker, uint64_t bytes, uint64_t now) const {
  Donors d;
  if (!under_max(taker, bytes)) {
    d.first.push_back(taker);
    return d;
  }
  const bool reclaiming = used(taker) + bytes <= share(taker, now);
  for (const auto& [id, e] : models_) {
    if (id == taker) continue;
    if (e.used <= share(id, now)) continue;                     // within its share
    if (e.used < quota(e.name).min_bytes + bytes) continue;     // would fall below its minimum
    d.first.push_back(id);
  }
  std::sort(d.first.begin(), d.first.end());
  (reclaiming ? d.then : d.first).push_back(taker);
  return d;
}

}  // namespace moepool
