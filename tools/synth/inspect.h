// `moepool-synth --inspect FILE [--json]`: prints a model as our Catalog and GGUF reader
// see it (files, every tensor, MoE layers and their expert extents), for people and for
// the cross-check against an independent parser (tests/gguf_js).
// Thread safety: one thread.
#pragma once

#include <ostream>
#include <string>

#include "common/status.h"

namespace moepool {

// Opens `path` (any part of a split model) and writes its description to `out`, as text
// or as one JSON object. Returns the error if the model cannot be opened.
Status synth_inspect(const std::string& path, bool json, std::ostream& out);

}  // namespace moepool
