#include "daemon/policy.h"

#include <cstdlib>

#include "daemon/policy_adaptive.h"
#include "daemon/policy_decayed.h"
#include "daemon/policy_lru.h"

namespace moepool {

std::string_view default_policy_name() { return "adaptive"; }

Result<std::unique_ptr<ResidencyPolicy>> make_policy(std::string_view name) {
  if (name == "default") name = default_policy_name();
  if (name == "lru") return std::unique_ptr<ResidencyPolicy>(new LruResidencyPolicy());
  if (name == "lrfu") return std::unique_ptr<ResidencyPolicy>(new DecayedFrequencyPolicy());
  if (name.starts_with("lrfu/")) {  // lrfu/H: half-life H slots' worth of accesses
    DecayedFrequencyOptions o;
    std::string h(name.substr(5));
    char* end = nullptr;
    o.half_life_per_slot = std::strtod(h.c_str(), &end);
    if (h.empty() || *end != '\0' || !(o.half_life_per_slot > 0))
      return InvalidArgument("policy '" + std::string(name) + "': the half-life after / must be a positive number");
    o.name = std::string(name);
    return std::unique_ptr<ResidencyPolicy>(new DecayedFrequencyPolicy(o));
  }
  if (name == "adaptive") return std::unique_ptr<ResidencyPolicy>(new AdaptivePolicy());
  if (name == "adaptive-full") {  // the shadows replay every layer (the unsampled reference)
    AdaptivePolicyOptions o;
    o.shadow_fraction = 1;
    o.name = "adaptive-full";
    return std::unique_ptr<ResidencyPolicy>(new AdaptivePolicy(o));
  }
  if (name.starts_with("stale/")) {  // stale/L: the adaptive policy fixed at lambda L
    AdaptivePolicyOptions o;
    std::string l(name.substr(6));
    char* end = nullptr;
    double lambda = std::strtod(l.c_str(), &end);
    if (l.empty() || *end != '\0' || !(lambda > 0))
      return InvalidArgument("policy '" + std::string(name) + "': the lambda after / must be a positive number");
    o.lambdas = {lambda};
    o.name = std::string(name);
    return std::unique_ptr<ResidencyPolicy>(new AdaptivePolicy(o));
  }
  if (name == "lfu") {
    DecayedFrequencyOptions o;
    o.half_life_per_slot = 1e6;  // ages barely matter: frequency over the whole run
    o.default_half_life = 1e9;
    o.name = "lfu";
    return std::unique_ptr<ResidencyPolicy>(new DecayedFrequencyPolicy(o));
  }
  return InvalidArgument("unknown policy '" + std::string(name) +
                         "' (expected default, adaptive, adaptive-full, stale/L, lru, lrfu, lrfu/H or lfu)");
}

}  // namespace moepool
