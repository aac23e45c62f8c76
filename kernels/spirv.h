// The SPIR-V of every kernels/shaders/*.comp, compiled by glslc at build time and
// embedded in libmoepool-kernels (kernels/embed_spirv.cmake writes the table).
// Thread safety: immutable data; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace moepool::kernels {

// Returns the words of module `name` (`<shader stem>` or `<shader stem>_<variant>`), or an
// empty span when no such module was built.
std::span<const uint32_t> spirv(std::string_view name);

// Returns the names of every embedded module.
std::vector<std::string_view> spirv_names();

}  // namespace moepool::kernels
