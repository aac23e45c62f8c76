// Prefill, last step: out[t][r] = sum over k (in k order) of w[t][k] * partial[t * top_k + k][r].
// Deterministic: each out element is one thread's plain sum, no atomics.
#version 450

layout(local_size_x = 256) in;

layout(set = 0, binding = 0) readonly buffer Partial { float partial[]; };  // [n_pairs][n_embd]
layout(set = 0, binding = 1) readonly buffer W { float w[]; };              // [n_tokens][top_k]
layout(set = 0, binding = 2) writeonly buffer Out { float o[]; };           // [n_tokens][n_embd]

layout(push_constant) uniform Push {
  uint n_embd;
  uint top_k;
  uint n_tokens;
} pc;

// Workgroups: (ceil(n_embd / 256), n_tokens).
void main() {
  const uint r = gl_GlobalInvocationID.x, t = gl_WorkGroupID.y;
  if (r >= pc.n_embd) return;
  float acc = 0.0;
  for (uint k = 0u; k < pc.top_k; ++k) {
    const uint p = t * pc.top_k + k;
    acc += w[p] * partial[p * pc.n_embd + r];
  }
  o[t * pc.n_embd + r] = acc;
}
