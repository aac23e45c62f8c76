// The moepool version string, from the top-level CMake project version.
#pragma once

namespace moepool {
// Returns e.g. "0.1.0".
const char* version();
}  // namespace moepool
