#include "tools/sim/sim_sources.h"

#include "common/synthetic_trace.h"

namespace moepool::sim {

Result<Trace> make_synthetic_source(const std::string& spec_text, uint64_t steps_per_worker,
                                    uint32_t workers) {
  auto spec = parse_synthetic_spec(spec_text);
  if (!spec.ok())
    return InvalidArgument("--synthetic '" + spec_text + "': " + spec.status().message());
  SyntheticTraceSpec s = *spec;
  uint64_t per = steps_per_worker;
  if (per == 0)
    per = spec_text.find("steps=") != std::string::npos ? s.steps : kDefaultSyntheticSteps;
  if (workers == 0) workers = 1;
  if (per > (uint64_t{1} << 40) / workers)
    return InvalidArgument("--synthetic '" + spec_text + "': too many steps");
  s.steps = per * workers;
  if (s.sequence_tokens == 0 && workers > 1) s.sequence_tokens = per;
  auto t = generate_synthetic_trace(s);
  if (!t.ok())
    return InvalidArgument("--synthetic '" + spec_text + "': " + t.status().message());
  return t;
}

}  // namespace moepool::sim
