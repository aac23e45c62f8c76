#include "tools/sim/sim_sources.h"

#include <algorithm>
#include <cstdlib>

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

Result<SequenceRange> parse_sequence_range(const std::string& text) {
  auto bad = [&] {
    return InvalidArgument("--sequences '" + text + "': expected A-B, A- or A "
                           "(0-based sequence indices, B >= A)");
  };
  auto number = [](const std::string& s, uint64_t* out) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return false;
    *out = std::strtoull(s.c_str(), nullptr, 10);
    return true;
  };
  SequenceRange r;
  size_t dash = text.find('-');
  if (dash == std::string::npos) {
    if (!number(text, &r.first)) return bad();
    r.last = r.first;
    return r;
  }
  if (!number(text.substr(0, dash), &r.first)) return bad();
  std::string tail = text.substr(dash + 1);
  if (!tail.empty() && (!number(tail, &r.last) || r.last < r.first)) return bad();
  return r;
}

Result<Trace> select_sequences(const Trace& trace, const SequenceRange& range) {
  const auto& seqs = trace.sequences();
  if (range.first >= seqs.size())
    return InvalidArgument("trace " + trace.name() + " has " + std::to_string(seqs.size()) +
                           " sequences; --sequences starts at " + std::to_string(range.first));
  uint64_t last = std::min<uint64_t>(range.last, seqs.size() - 1);
  std::vector<TraceSequence> out;
  std::vector<uint8_t> ids;
  const size_t stride = trace.step_stride();
  uint64_t steps = 0;
  for (uint64_t i = range.first; i <= last; ++i) {
    TraceSequence s = seqs[i];
    const uint8_t* from = trace.step(s.offset);
    ids.insert(ids.end(), from, from + s.n_tokens * stride);
    s.offset = steps;
    steps += s.n_tokens;
    out.push_back(std::move(s));
  }
  TraceShape shape = trace.shape();
  shape.steps = steps;
  std::string name = trace.name() + "[" + std::to_string(range.first) + "-" +
                     std::to_string(last) + "]";
  return Trace::from_ids(std::move(name), shape, std::move(out), std::move(ids));
}

}  // namespace moepool::sim
