// The CPU half of `moepool-bench kernels --cpu`: the CPU Q4_K decode fast path
// (kernels/q4k_cpu.h, AVX2 and scalar) against the plain reference (moe_ffn_reference) on
// the same synthetic Q4_K layer held in host memory, one thread, wall-clock time.
// Thread safety: called from one thread.
#pragma once

#include "moepool/status.h"
#include "tools/bench/kernels_bench.h"
#include "tools/bench/kernels_bench_report.h"

namespace moepool::bench {

// The reference is slow (dequantization and double sums): at most this many timed calls.
inline constexpr uint32_t kCpuReferenceReps = 5;

// Appends rows "cpu_avx2" (where the CPU has AVX2+FMA), "cpu_scalar" and "cpu_reference"
// (one token only) for every shape of `o` and every --tokens count. Errors of one
// configuration go to report->errors; returns an error only when nothing can run.
Status run_cpu_kernels(const KernelsBenchOptions& o, KernelsReport* report);

}  // namespace moepool::bench
