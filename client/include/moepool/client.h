// libmoepool, C++ API: start here.
//
// A worker (a model-serving process) connects to moepoold, opens a model, and for each
// MoE layer acquires the experts its router picked: the daemon makes them resident in
// the shared pool and returns leases whose pointers point straight into the pool, mapped
// read-only in this process. Release the leases when the layer's expert products are
// done; the daemon may then evict those experts. All pool segments are mapped at
// consecutive addresses of one range starting at pool_base(), so slot k of a class with
// stride s always sits at pool_base() + k * s.
//
// VRAM pools (the daemon's pool.backend = "vulkan"; pool_backend() says which): the
// segments are exported device memory, never mapped into this process. pool_base(),
// Lease::slot and ProjectionView::data are then null; slot_index, stride and the
// projection offsets stay valid. The worker imports the segments into its own Vulkan
// device (or CUDA) from dup_segment_fds() and addresses slot k of stride s at
//   segment = k * s / segment_bytes(),  offset = k * s % segment_bytes()
// (a slot never straddles two segments). Each segment is an OPAQUE_FD export of a
// dedicated allocation of a VkBuffer of segment_bytes() (usage STORAGE_BUFFER |
// TRANSFER_SRC | TRANSFER_DST): import it with VkImportMemoryFdInfoKHR plus
// VkMemoryDedicatedAllocateInfo into a buffer of the same size created with
// VkExternalMemoryBufferCreateInfo(OPAQUE_FD), and only on the physical device whose
// deviceUUID equals device_uuid(). A lease's bytes are in VRAM before acquire() returns:
// the daemon serves a slot only after its copy into VRAM completed.
//
// Errors are values (moepool::Status); nothing here throws. A Client may be used from
// several threads at once.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moepool/status.h"

namespace moepool {

enum class Projection : uint8_t { kGate = 1, kUp = 2, kDown = 3, kGateUp = 4 };

struct ProjectionView {
  Projection kind;
  const uint8_t* data;      // first byte of this expert's projection, inside the pool
                            // (null for a VRAM pool: use offset_in_slot)
  uint64_t bytes;
  uint64_t offset_in_slot;  // data == slot + offset_in_slot
};

// One pinned expert. Valid until released (or the Client is destroyed).
struct Lease {
  uint32_t expert = 0;
  uint64_t slot_id = 0;      // slot table index
  uint64_t generation = 0;
  uint32_t slot_class = 0;
  uint64_t slot_index = 0;   // k: slot = pool_base() + k * stride
  uint64_t stride = 0;
  const uint8_t* slot = nullptr;  // null for a VRAM pool (see the top of this file)
  std::vector<ProjectionView> projections;  // gate, up, down (or gate_up, down)
  bool hit = false;          // was already resident or loading
};

struct ProjectionShape {
  Projection kind;
  uint32_t ggml_type;
  std::vector<uint64_t> ne;  // [ne0, ne1, n_expert]
  uint64_t expert_bytes;
};

struct LayerShape {
  uint32_t layer;
  uint32_t n_experts;
  uint64_t expert_bytes;
  std::vector<ProjectionShape> projections;
};

struct ModelInfo {
  uint64_t id = 0;  // content identity
  std::string name;
  std::string architecture;
  uint32_t block_count = 0;
  std::vector<LayerShape> layers;  // MoE layers only
};

struct ModelStats {
  uint64_t model_id = 0;
  std::string name;
  uint64_t resident_experts = 0, used_bytes = 0, pinned_bytes = 0;
  uint64_t hits = 0, misses = 0, bytes_read = 0, read_errors = 0, evictions = 0;
  uint64_t prefetches = 0, predicted_prefetches = 0;
  // Quota (weight, min, max; 0 = no max) and the share it entitles the model to now.
  double weight = 1;
  uint64_t min_bytes = 0, max_bytes = 0, share_bytes = 0;
  bool active = false;
  // Warm-up from saved popularity: "none", "running", "done", "failed: ...".
  std::string warmup_state;
  uint64_t warmup_planned_experts = 0, warmup_loaded_experts = 0, warmup_bytes_read = 0;
};

struct PoolStats {
  uint64_t pool_bytes = 0, used_bytes = 0, pinned_bytes = 0;
  uint64_t hits = 0, misses = 0, bytes_read = 0, reads = 0, read_errors = 0;
  uint64_t evictions = 0, prefetches = 0;
  uint32_t sessions = 0;
  std::vector<ModelStats> models;
  // "host" or "vulkan". For "vulkan": staging -> VRAM copies, so that
  // upload_bytes / (upload_busy_ns / 1e9) is the upload rate in bytes per second.
  std::string pool_backend = "host";
  uint64_t upload_bytes = 0, upload_busy_ns = 0, upload_copies = 0, staging_waits = 0;
};

class Client {
 public:
  // Connects to the daemon at `socket_path`, attaches a session, opens its session
  // stream and maps the pool read-only. `client_name` shows up in the daemon's logs.
  static Result<std::unique_ptr<Client>> connect(const std::string& socket_path,
                                                 const std::string& client_name = "");
  ~Client();

  // Opens the model at `path` (must lie under one of the daemon's model roots).
  Result<ModelInfo> open_model(const std::string& path);
  // Pins `experts` (distinct ids) of `layer`, reading the missing ones; leases come back
  // in the order asked. On error nothing stays pinned.
  Result<std::vector<Lease>> acquire(uint64_t model_id, uint32_t layer,
                                     std::span<const uint32_t> experts);
  // The same, releasing `release_first` (leases of this Client) in the same round trip
  // before acquiring, e.g. the previous layer's. If that release fails, nothing is
  // acquired and the error says so; `release_first` stays valid only when the error is
  // not about them (check with a plain release()).
  Result<std::vector<Lease>> acquire(uint64_t model_id, uint32_t layer,
                                     std::span<const uint32_t> experts,
                                     std::span<const Lease> release_first);
  // Unpins leases returned by acquire().
  Status release(std::span<const Lease> leases);
  // Like release(), but returns without waiting for the daemon's reply: the pins go
  // away a round trip later, so a following acquire() may still see them (and be refused
  // with kResourceExhausted if the pool is pinned full). A failure is returned by the next
  // release_async() call (a lost release is undone when the session ends). The Client's
  // destructor waits for releases in flight.
  Status release_async(std::vector<Lease> leases);
  // Hints that these experts will be wanted soon. Returns how many reads it started.
  Result<uint32_t> prefetch(uint64_t model_id, uint32_t layer,
                            std::span<const uint32_t> experts);
  // The same with a guess per expert: `probabilities[i]` in [0, 1] is how likely
  // experts[i] is to be used (the daemon's policy weighs it against what it would evict).
  // An empty span means every hint is certain; otherwise it must match `experts` in length.
  Result<uint32_t> prefetch(uint64_t model_id, uint32_t layer,
                            std::span<const uint32_t> experts,
                            std::span<const float> probabilities);
  // Pool-wide and per-model counters.
  Result<PoolStats> stats();

  uint64_t session_id() const;
  // Where the pool is mapped in this process; null for a VRAM ("vulkan") pool.
  const uint8_t* pool_base() const;
  uint64_t pool_bytes() const;
  // "host" (memfd segments mapped at pool_base()) or "vulkan" (VRAM; see the top of file).
  const std::string& pool_backend() const;
  // deviceUUID of the GPU holding a "vulkan" pool; zeros for a host pool.
  std::array<uint8_t, 16> device_uuid() const;
  uint64_t segment_bytes() const;
  uint32_t segment_count() const;
  // New fds for the segments of a "vulkan" pool, in segment order, for the worker's
  // Vulkan (or CUDA) import; the caller owns them (an import consumes an fd; close the
  // ones not imported). kFailedPrecondition for a host pool. May be called repeatedly.
  Result<std::vector<int>> dup_segment_fds() const;

  class Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moepool
