/* libmoepool, C API: a thin, exception-free wrapper of moepool/client.h for engines
 * written in C (or anything with a C FFI).
 *
 * Conventions (those of leveldb's c.h):
 *  - Opaque handles; every moepool_X_t made by a create/open/connect/acquire call is freed
 *    by the matching moepool_X_destroy.
 *  - Functions that can fail take `char** errptr` last (it may be NULL to ignore errors).
 *    On success *errptr is left unchanged; on failure the old *errptr is freed and a
 *    malloc()ed message "<kind>: <what went wrong>" is stored (kinds: "invalid argument",
 *    "not found", "permission denied", "resource exhausted", "unavailable", "failed
 *    precondition", "internal"); free it with moepool_free(). So: set `char* err = NULL;`
 *    before a call, and it is NULL afterwards iff the call succeeded. A call that returns
 *    a handle returns NULL on failure.
 *  - Accessors never fail: an index out of range returns 0 / NULL.
 *  - Pointers into the pool stay valid until the leases are released or the client is
 *    destroyed. Pool memory is read-only.
 *
 * Thread safety: a moepool_client_t may be used from several threads at once; a
 * moepool_model_t, moepool_leases_t or moepool_stats_t is immutable (any thread may
 * read it) until destroyed; moepool_leases_release on one leases handle must not race
 * with itself.
 */
#ifndef MOEPOOL_MOEPOOL_H_
#define MOEPOOL_MOEPOOL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moepool_client_t moepool_client_t;
typedef struct moepool_model_t moepool_model_t;
typedef struct moepool_leases_t moepool_leases_t;
typedef struct moepool_stats_t moepool_stats_t;

/* Projection kinds, as in moepool.v1.ProjectionKind. */
enum {
  MOEPOOL_PROJECTION_GATE = 1,
  MOEPOOL_PROJECTION_UP = 2,
  MOEPOOL_PROJECTION_DOWN = 3,
  MOEPOOL_PROJECTION_GATE_UP = 4 /* fused gate+up */
};

/* Frees a message stored through errptr (or anything else this library malloc()ed). */
void moepool_free(void* ptr);
/* Returns the library version, e.g. "0.1.0" (static storage). */
const char* moepool_version(void);

/* ---- client ----------------------------------------------------------------------- */

/* Connects to moepoold at `socket_path`, attaches a session and maps the pool read-only.
 * `client_name` (may be NULL) shows up in the daemon's logs. Fails within a few seconds
 * with "unavailable: cannot reach moepoold at <path>: <reason>" if no daemon listens. */
moepool_client_t* moepool_client_connect(const char* socket_path, const char* client_name,
                                         char** errptr);
/* Ends the session (the daemon drops every pin it holds) and unmaps the pool. */
void moepool_client_destroy(moepool_client_t* client);
uint64_t moepool_client_session_id(const moepool_client_t* client);
/* Slot k of a class with stride s sits at pool_base + k * s. NULL for a VRAM pool. */
const uint8_t* moepool_client_pool_base(const moepool_client_t* client);
uint64_t moepool_client_pool_bytes(const moepool_client_t* client);
/* "host" (segments mapped at pool_base) or "vulkan" (VRAM, never mapped here: import the
 * segments from moepool_client_dup_segment_fds into a Vulkan device (or CUDA) whose
 * deviceUUID equals moepool_client_device_uuid, and address slot k of stride s at segment
 * k*s / segment_bytes, offset k*s % segment_bytes). Each segment is an OPAQUE_FD export of a
 * dedicated allocation of a VkBuffer of segment_bytes (usage STORAGE_BUFFER |
 * TRANSFER_SRC | TRANSFER_DST); import it with VkMemoryDedicatedAllocateInfo. The string
 * lives as long as the client. */
const char* moepool_client_pool_backend(const moepool_client_t* client);
/* Copies the 16-byte deviceUUID of a "vulkan" pool's GPU to uuid (zeros for host). */
void moepool_client_device_uuid(const moepool_client_t* client, uint8_t uuid[16]);
uint64_t moepool_client_segment_bytes(const moepool_client_t* client);
uint32_t moepool_client_segment_count(const moepool_client_t* client);
/* Writes new fds (the caller owns and closes them; a successful Vulkan import consumes
 * one) for the segments of a "vulkan" pool, in segment order, to fds[0..capacity) and
 * returns how many (segment_count). 0 with *errptr set for a host pool or when capacity
 * is too small. */
size_t moepool_client_dup_segment_fds(moepool_client_t* client, int* fds, size_t capacity,
                                      char** errptr);

/* ---- models ----------------------------------------------------------------------- */

/* Opens the GGUF model at `path` (under one of the daemon's model roots). */
moepool_model_t* moepool_model_open(moepool_client_t* client, const char* path, char** errptr);
void moepool_model_destroy(moepool_model_t* model);
/* Content identity: the same files give the same id, in any process. */
uint64_t moepool_model_id(const moepool_model_t* model);
const char* moepool_model_name(const moepool_model_t* model);
const char* moepool_model_architecture(const moepool_model_t* model);
uint32_t moepool_model_block_count(const moepool_model_t* model);
/* MoE layers are numbered i = 0 .. n_moe_layers-1 below; moepool_model_layer_index
 * gives the model's own layer number (what moepool_acquire takes). */
uint32_t moepool_model_n_moe_layers(const moepool_model_t* model);
uint32_t moepool_model_layer_index(const moepool_model_t* model, uint32_t i);
uint32_t moepool_model_layer_n_experts(const moepool_model_t* model, uint32_t i);
uint64_t moepool_model_layer_expert_bytes(const moepool_model_t* model, uint32_t i);
uint32_t moepool_model_layer_n_projections(const moepool_model_t* model, uint32_t i);
/* Projection p of MoE layer i: its MOEPOOL_PROJECTION_* kind, ggml_type value, bytes of
 * one expert, and shape ne[d] for d = 0, 1, 2 ([ne0, ne1, n_expert]). */
int moepool_model_projection_kind(const moepool_model_t* model, uint32_t i, uint32_t p);
uint32_t moepool_model_projection_ggml_type(const moepool_model_t* model, uint32_t i, uint32_t p);
uint64_t moepool_model_projection_expert_bytes(const moepool_model_t* model, uint32_t i,
                                               uint32_t p);
uint64_t moepool_model_projection_ne(const moepool_model_t* model, uint32_t i, uint32_t p,
                                     uint32_t d);

/* ---- experts ---------------------------------------------------------------------- */

/* Pins experts[0..n) (distinct ids) of layer `layer`, reading the missing ones; returns
 * one lease per expert in the order asked. On error nothing stays pinned. */
moepool_leases_t* moepool_acquire(moepool_client_t* client, uint64_t model_id, uint32_t layer,
                                  const uint32_t* experts, size_t n, char** errptr);
/* Unpins all leases of `leases` (once; a second call is an error). The handle itself
 * stays until moepool_leases_destroy. */
void moepool_leases_release(moepool_client_t* client, moepool_leases_t* leases, char** errptr);
/* Frees the handle. It does not release: leases never released stay pinned until the
 * client is destroyed. */
void moepool_leases_destroy(moepool_leases_t* leases);
size_t moepool_leases_count(const moepool_leases_t* leases);
uint32_t moepool_leases_expert(const moepool_leases_t* leases, size_t i);
uint64_t moepool_leases_slot_index(const moepool_leases_t* leases, size_t i);
uint64_t moepool_leases_stride(const moepool_leases_t* leases, size_t i);
/* First byte of lease i's slot: pool_base + slot_index * stride (NULL for a VRAM pool). */
const uint8_t* moepool_leases_slot(const moepool_leases_t* leases, size_t i);
/* 1 if the expert was resident (or already loading) when asked, else 0. */
int moepool_leases_hit(const moepool_leases_t* leases, size_t i);
size_t moepool_leases_n_projections(const moepool_leases_t* leases, size_t i);
int moepool_leases_projection_kind(const moepool_leases_t* leases, size_t i, size_t p);
/* The expert's bytes of projection p: data == slot + offset (NULL for a VRAM pool). */
const uint8_t* moepool_leases_projection_data(const moepool_leases_t* leases, size_t i,
                                              size_t p);
uint64_t moepool_leases_projection_offset(const moepool_leases_t* leases, size_t i, size_t p);
uint64_t moepool_leases_projection_bytes(const moepool_leases_t* leases, size_t i, size_t p);

/* Hints that these experts will be wanted soon; never pins. Returns how many reads the
 * daemon started (0 on error). */
uint32_t moepool_prefetch(moepool_client_t* client, uint64_t model_id, uint32_t layer,
                          const uint32_t* experts, size_t n, char** errptr);
/* The same with a guess per expert: probabilities[i] in [0, 1] is how likely experts[i]
 * is to be used (NULL: every hint is certain). */
uint32_t moepool_prefetch_with_probabilities(moepool_client_t* client, uint64_t model_id,
                                             uint32_t layer, const uint32_t* experts,
                                             const float* probabilities, size_t n,
                                             char** errptr);

/* ---- stats ------------------------------------------------------------------------ */

/* Pool-wide counters (moepool.v1.StatsReply). */
moepool_stats_t* moepool_client_stats(moepool_client_t* client, char** errptr);
void moepool_stats_destroy(moepool_stats_t* stats);
uint64_t moepool_stats_pool_bytes(const moepool_stats_t* stats);
uint64_t moepool_stats_used_bytes(const moepool_stats_t* stats);
uint64_t moepool_stats_pinned_bytes(const moepool_stats_t* stats);
uint64_t moepool_stats_hits(const moepool_stats_t* stats);
uint64_t moepool_stats_misses(const moepool_stats_t* stats);
uint64_t moepool_stats_bytes_read(const moepool_stats_t* stats);
uint64_t moepool_stats_reads(const moepool_stats_t* stats);
uint64_t moepool_stats_read_errors(const moepool_stats_t* stats);
uint64_t moepool_stats_evictions(const moepool_stats_t* stats);
uint64_t moepool_stats_prefetches(const moepool_stats_t* stats);
uint32_t moepool_stats_sessions(const moepool_stats_t* stats);
/* VRAM pools: bytes copied from staging into VRAM and the transfer queue's busy time
 * (upload rate = bytes / ns * 1e9 bytes/s), slots copied, reads that waited for staging. */
uint64_t moepool_stats_upload_bytes(const moepool_stats_t* stats);
uint64_t moepool_stats_upload_busy_ns(const moepool_stats_t* stats);
uint64_t moepool_stats_upload_copies(const moepool_stats_t* stats);
uint64_t moepool_stats_staging_waits(const moepool_stats_t* stats);

/* ---- helpers for tests and tools -------------------------------------------------- */

/* Parses the model at `path` locally (no daemon) and returns where expert `expert` of
 * projection `proj` (index as in moepool_model_projection_*) of layer `layer` lies:
 * the file that holds it (*file_path, malloc()ed, free with moepool_free; pass NULL if
 * not wanted), its absolute byte offset and length. Returns 0 on success, -1 on error. */
int moepool_debug_expert_extent(const char* path, uint32_t layer, uint32_t expert,
                                uint32_t proj, char** file_path, uint64_t* offset,
                                uint64_t* bytes, char** errptr);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOEPOOL_MOEPOOL_H_ */
