// The read-bandwidth ceiling (kernels/gpu_read_ceiling.h): streams byte ranges of the bound
// segments with 16-byte loads and does nothing with them but XOR them together, so its GPU
// time is what the memory system needs to deliver those bytes, the bound a weight-reading
// kernel can approach. Each workgroup reads one CHUNK_BYTES chunk of one range (the last
// chunk of a range may be shorter): every byte of every range is read exactly once. Each
// lane keeps UNROLL independent 16-byte loads in flight per step, consecutive lanes reading
// consecutive 16 bytes. Output: one uint per workgroup, the XOR of every 32-bit word it read.
#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;               // threads per workgroup
layout(constant_id = 1) const uint NSEG = 1;               // segments bound at binding 0
layout(constant_id = 2) const uint CHUNK_BYTES = 65536;    // bytes per workgroup, 16 * k
layout(constant_id = 3) const uint UNROLL = 4;             // 16-byte loads per lane per step

// The segments as in moe_weights.glsl (one descriptor array, a dynamically uniform index).
layout(set = 0, binding = 0) readonly buffer Seg128 { uvec4 w[]; } seg128[NSEG];
// Per range: (segment, byte offset, byte length, index of its first chunk); offsets and
// lengths are multiples of 16, ranges are in order of their first chunk.
layout(set = 0, binding = 1) readonly buffer Ranges { uvec4 ranges[]; };
layout(set = 0, binding = 2) writeonly buffer Out { uint partial[]; };  // [chunks]

layout(push_constant) uniform Push {
  uint n_ranges;
  uint n_chunks;
} pc;

shared uint wg_xor;

void main() {
  // 2D grid where the chunks outnumber maxComputeWorkGroupCount[0].
  const uint wg = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  if (wg >= pc.n_chunks) return;  // the whole workgroup: uniform
  const uint lid = gl_LocalInvocationID.x;
  if (lid == 0u) wg_xor = 0u;
  barrier();

  // The range holding chunk wg: the last one whose first chunk is <= wg.
  uint lo = 0u, hi = pc.n_ranges - 1u;
  while (lo < hi) {
    const uint mid = (lo + hi + 1u) >> 1;
    if (ranges[mid].w <= wg) lo = mid; else hi = mid - 1u;
  }
  const uvec4 r = ranges[lo];
  const uint s = r.x;
  const uint done = (wg - r.w) * CHUNK_BYTES;  // bytes of the range before this chunk
  const uint base = (r.y + done) >> 4;         // first uvec4
  const uint n = min(CHUNK_BYTES, r.z - done) >> 4;

  uvec4 acc = uvec4(0u);
  const uint step = WG * UNROLL;
  uint i = 0u;
  for (; i + step <= n; i += step) {
    uvec4 v[UNROLL];
    [[unroll]] for (uint u = 0u; u < UNROLL; ++u) v[u] = seg128[s].w[base + i + u * WG + lid];
    [[unroll]] for (uint u = 0u; u < UNROLL; ++u) acc ^= v[u];
  }
  for (uint j = i + lid; j < n; j += WG) acc ^= seg128[s].w[base + j];

  const uint x = subgroupXor(acc.x ^ acc.y ^ acc.z ^ acc.w);
  if (subgroupElect()) atomicXor(wg_xor, x);
  barrier();
  if (lid == 0u) partial[wg] = wg_xor;
}
