// The Vulkan half of `moepool-bench kernels`: opens the device, makes each shape x type's
// layer resident in device-local segments, and times MoeGpu's decode and prefill on it.
// Built without Vulkan (no moepool_kernels), run_gpu_kernels says so and measures nothing.
// Thread safety: called from one thread.
#pragma once

#include "moepool/status.h"
#include "tools/bench/kernels_bench.h"
#include "tools/bench/kernels_bench_report.h"

namespace moepool::bench {

// Whether this binary was built with the Vulkan kernels.
bool built_with_vulkan();

// Measures every configuration `o` asks for and appends its rows to `report` (and the
// device's facts). A configuration that fails (out of memory, a kernel error) adds a line
// to report->errors and the rest still run. Returns an error only when nothing can run:
// built without Vulkan, no device, or MoeGpu cannot be created.
Status run_gpu_kernels(const KernelsBenchOptions& o, KernelsReport* report);

}  // namespace moepool::bench
