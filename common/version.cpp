#include "common/version.h"

namespace moepool {
const char* version() { return MOEPOOL_VERSION; }
}  // namespace moepool
