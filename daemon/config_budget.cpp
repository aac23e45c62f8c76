// The config sections of the shared budget, popularity and prefetch:
//
//   [quota."<model name>"]  weight = 2, min = "64M", max = "1G"
//   [popularity]            save_interval = 30, warmup = true
//   [prefetch]              predictor = true, min_probability = 0.5, distance = 3
//
// Errors name "<file>:<line>:<col>: <key>: <reason>" like the rest of the config.
#include <cmath>
#include <cstdio>
#include <sstream>

#include "common/units.h"
#include "daemon/config_toml.h"

namespace moepool::config_detail {

const std::vector<SectionSpec>& budget_schema() {
  static const std::vector<SectionSpec> kSchema = {
      {"popularity",
       {
           {"save_interval",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              const auto* i = n.as_integer();
              if (i == nullptr)
                return wrong_type(o, n, "popularity.save_interval", "an integer (seconds)");
              if (i->get() < 1 || i->get() > kMaxPopularitySaveSeconds) {
                return o.error(n.source(), "popularity.save_interval: " +
                                               std::to_string(i->get()) +
                                               " is out of range 1..86400 seconds");
              }
              c->popularity_save_seconds = static_cast<uint32_t>(i->get());
              return Status::Ok();
            }},
           {"warmup",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_bool(o, n, "popularity.warmup");
              if (!v.ok()) return v.status();
              c->warmup = *v;
              return Status::Ok();
            }},
       }},
      {"prefetch",
       {
           {"predictor",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_bool(o, n, "prefetch.predictor");
              if (!v.ok()) return v.status();
              c->prefetch_predictor = *v;
              return Status::Ok();
            }},
           {"min_probability",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_number(o, n, "prefetch.min_probability", 0.0, 1.0);
              if (!v.ok()) return v.status();
              c->prefetch_min_probability = *v;
              return Status::Ok();
            }},
           {"distance",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              const auto* i = n.as_integer();
              if (i == nullptr) return wrong_type(o, n, "prefetch.distance", "an integer (layers)");
              if (i->get() < 1 || i->get() > kMaxPrefetchDistance) {
                return o.error(n.source(), "prefetch.distance: " + std::to_string(i->get()) +
                                               " is out of range 1.." +
                                               std::to_string(kMaxPrefetchDistance) + " layers");
              }
              c->prefetch_distance = static_cast<uint32_t>(i->get());
              return Status::Ok();
            }},
       }},
  };
  return kSchema;
}

Status apply_quota_section(const Origin& o, const toml::node& n, DaemonConfig* cfg) {
  const auto* models = n.as_table();
  if (models == nullptr) {
    return o.error(n.source(), "'quota' must hold tables [quota.\"<model name>\"], got " +
                                   std::string(type_name(n.type())));
  }
  const std::vector<std::string_view> keys = {"weight", "min", "max"};
  for (const auto& [mkey, mnode] : *models) {
    std::string model(mkey.str());
    std::string where = "quota.\"" + model + "\"";
    if (model.empty()) return o.error(mkey.source(), "quota: empty model name");
    const auto* t = mnode.as_table();
    if (t == nullptr) {
      return o.error(mnode.source(), where + " must be a table [" + where + "], got " +
                                         type_name(mnode.type()));
    }
    QuotaConfig q;
    q.model = model;
    q.origin = o.at(mkey.source());
    for (const auto& [key, node] : *t) {
      std::string k(key.str());
      if (k == "weight") {
        auto v = get_number(o, node, where + ".weight", 0.0, 1e9);
        if (!v.ok()) return v.status();
        if (!(*v > 0)) return o.error(node.source(), where + ".weight: must be > 0");
        q.quota.weight = *v;
      } else if (k == "min" || k == "max") {
        auto v = get_size(o, node, where + "." + k);
        if (!v.ok()) return v.status();
        (k == "min" ? q.quota.min_bytes : q.quota.max_bytes) = *v;
      } else {
        return o.error(key.source(), "unknown key '" + where + "." + k + "'" +
                                         suggestion(k, keys) + "; a quota has weight, min, max");
      }
    }
    if (q.quota.max_bytes != 0 && q.quota.max_bytes < q.quota.min_bytes) {
      return o.error(mkey.source(), where + ": max " + format_bytes(q.quota.max_bytes) +
                                        " is below min " + format_bytes(q.quota.min_bytes));
    }
    bool replaced = false;
    for (QuotaConfig& old : cfg->quotas) {
      if (old.model == q.model) old = q, replaced = true;
    }
    if (!replaced) cfg->quotas.push_back(std::move(q));
  }
  return Status::Ok();
}

Status validate_budget_config(const DaemonConfig& cfg) {
  uint64_t mins = 0;
  for (const QuotaConfig& q : cfg.quotas) {
    std::string where = (q.origin.empty() ? "" : q.origin + ": ") + "quota.\"" + q.model + "\"";
    if (!(q.quota.weight > 0) || !std::isfinite(q.quota.weight))
      return InvalidArgument(where + ".weight: must be > 0");
    if (q.quota.max_bytes != 0 && q.quota.max_bytes < q.quota.min_bytes) {
      return InvalidArgument(where + ": max " + format_bytes(q.quota.max_bytes) +
                             " is below min " + format_bytes(q.quota.min_bytes));
    }
    mins += q.quota.min_bytes;
    if (mins > cfg.pool_bytes) {
      return InvalidArgument(where + ".min: the quotas' minimums sum to " + format_bytes(mins) +
                             ", more than pool.size " + format_bytes(cfg.pool_bytes));
    }
  }
  if (cfg.popularity_save_seconds < 1 || cfg.popularity_save_seconds > kMaxPopularitySaveSeconds)
    return InvalidArgument("popularity.save_interval: must be 1..86400 seconds");
  if (!(cfg.prefetch_min_probability >= 0 && cfg.prefetch_min_probability <= 1))
    return InvalidArgument("prefetch.min_probability: must be within 0..1");
  if (cfg.prefetch_distance < 1 || cfg.prefetch_distance > kMaxPrefetchDistance)
    return InvalidArgument("prefetch.distance: must be 1.." + std::to_string(kMaxPrefetchDistance));
  return Status::Ok();
}

std::string describe_budget_config(const DaemonConfig& cfg) {
  std::ostringstream out;
  char p[32];
  std::snprintf(p, sizeof p, "%g", cfg.prefetch_min_probability);
  out << "popularity.save_interval: " << cfg.popularity_save_seconds << " s\n"
      << "popularity.warmup:  " << (cfg.warmup ? "true" : "false") << "\n"
      << "prefetch.predictor: " << (cfg.prefetch_predictor ? "true" : "false") << "\n"
      << "prefetch.min_probability: " << p << "\n"
      << "prefetch.distance:  " << cfg.prefetch_distance << " layers\n";
  for (const QuotaConfig& q : cfg.quotas) {
    char w[32];
    std::snprintf(w, sizeof w, "%g", q.quota.weight);
    out << "quota.\"" << q.model << "\": weight " << w << ", min "
        << format_bytes(q.quota.min_bytes) << ", max "
        << (q.quota.max_bytes ? format_bytes(q.quota.max_bytes) : std::string("none")) << "\n";
  }
  return out.str();
}

}  // namespace moepool::config_detail
