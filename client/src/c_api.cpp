// The C API (moepool/moepool.h) over the C++ Client. Every entry point catches
// everything: no exception crosses into C.
// Thread safety: as documented in moepool.h; the handles add no shared state.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "common/version.h"
#include "moepool/client.h"
#include "moepool/moepool.h"

using moepool::Status;

struct moepool_client_t {
  std::unique_ptr<moepool::Client> client;
};

struct moepool_model_t {
  moepool::ModelInfo info;
};

struct moepool_leases_t {
  std::vector<moepool::Lease> leases;
  std::atomic<bool> released{false};
};

struct moepool_stats_t {
  moepool::PoolStats stats;
};

namespace {

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

// Stores `st` as the caller's error message (leveldb's SaveError). Returns true iff
// `st` is an error.
bool save_error(char** errptr, const Status& st) {
  if (st.ok()) return false;
  if (errptr != nullptr) {
    std::free(*errptr);
    *errptr = copy_string(st.to_string());
  }
  return true;
}

// Runs `fn`; an exception becomes an "internal" error and `fallback` is returned.
template <typename T, typename Fn>
T guarded(char** errptr, T fallback, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    save_error(errptr, moepool::Internal(std::string("libmoepool: ") + e.what()));
  } catch (...) {
    save_error(errptr, moepool::Internal("libmoepool: unknown exception"));
  }
  return fallback;
}

const moepool::LayerShape* layer_at(const moepool_model_t* m, uint32_t i) {
  if (m == nullptr || i >= m->info.layers.size()) return nullptr;
  return &m->info.layers[i];
}

const moepool::ProjectionShape* proj_at(const moepool_model_t* m, uint32_t i, uint32_t p) {
  const moepool::LayerShape* l = layer_at(m, i);
  if (l == nullptr || p >= l->projections.size()) return nullptr;
  return &l->projections[p];
}

const moepool::Lease* lease_at(const moepool_leases_t* l, size_t i) {
  if (l == nullptr || i >= l->leases.size()) return nullptr;
  return &l->leases[i];
}

const moepool::ProjectionView* view_at(const moepool_leases_t* l, size_t i, size_t p) {
  const moepool::Lease* lease = lease_at(l, i);
  if (lease == nullptr || p >= lease->projections.size()) return nullptr;
  return &lease->projections[p];
}

// Checks the arguments every expert-list call shares.
Status check_client_and_experts(const moepool_client_t* c, const uint32_t* experts, size_t n) {
  if (c == nullptr) return moepool::InvalidArgument("client is NULL");
  if (experts == nullptr && n > 0) return moepool::InvalidArgument("experts is NULL");
  return Status::Ok();
}

}  // namespace

extern "C" {

void moepool_free(void* ptr) { std::free(ptr); }

const char* moepool_version(void) { return moepool::version(); }

// ---- client ---------------------------------------------------------------------------

moepool_client_t* moepool_client_connect(const char* socket_path, const char* client_name,
                                         char** errptr) {
  return guarded<moepool_client_t*>(errptr, nullptr, [&]() -> moepool_client_t* {
    if (socket_path == nullptr) {
      save_error(errptr, moepool::InvalidArgument("socket_path is NULL"));
      return nullptr;
    }
    auto client = moepool::Client::connect(socket_path, client_name ? client_name : "");
    if (save_error(errptr, client.status())) return nullptr;
    return new moepool_client_t{std::move(client).value()};
  });
}

void moepool_client_destroy(moepool_client_t* client) {
  try {
    delete client;
  } catch (...) {
  }
}

uint64_t moepool_client_session_id(const moepool_client_t* c) {
  return c ? c->client->session_id() : 0;
}

const uint8_t* moepool_client_pool_base(const moepool_client_t* c) {
  return c ? c->client->pool_base() : nullptr;
}

uint64_t moepool_client_pool_bytes(const moepool_client_t* c) {
  return c ? c->client->pool_bytes() : 0;
}

const char* moepool_client_pool_backend(const moepool_client_t* c) {
  return c ? c->client->pool_backend().c_str() : "";
}

void moepool_client_device_uuid(const moepool_client_t* c, uint8_t uuid[16]) {
  if (uuid == nullptr) return;
  std::array<uint8_t, 16> u{};
  if (c) u = c->client->device_uuid();
  std::memcpy(uuid, u.data(), u.size());
}

uint64_t moepool_client_segment_bytes(const moepool_client_t* c) {
  return c ? c->client->segment_bytes() : 0;
}

uint32_t moepool_client_segment_count(const moepool_client_t* c) {
  return c ? c->client->segment_count() : 0;
}

size_t moepool_client_dup_segment_fds(moepool_client_t* c, int* fds, size_t capacity,
                                      char** errptr) {
  return guarded<size_t>(errptr, 0, [&]() -> size_t {
    if (c == nullptr || (fds == nullptr && capacity > 0)) {
      save_error(errptr, moepool::InvalidArgument("client or fds is NULL"));
      return 0;
    }
    if (capacity < c->client->segment_count()) {
      save_error(errptr, moepool::InvalidArgument(
                             "fds has room for " + std::to_string(capacity) + " of " +
                             std::to_string(c->client->segment_count()) + " segments"));
      return 0;
    }
    auto got = c->client->dup_segment_fds();
    if (save_error(errptr, got.status())) return 0;
    std::copy(got->begin(), got->end(), fds);
    return got->size();
  });
}

// ---- models ---------------------------------------------------------------------------

moepool_model_t* moepool_model_open(moepool_client_t* c, const char* path, char** errptr) {
  return guarded<moepool_model_t*>(errptr, nullptr, [&]() -> moepool_model_t* {
    if (c == nullptr || path == nullptr) {
      save_error(errptr, moepool::InvalidArgument(c ? "path is NULL" : "client is NULL"));
      return nullptr;
    }
    auto info = c->client->open_model(path);
    if (save_error(errptr, info.status())) return nullptr;
    return new moepool_model_t{std::move(info).value()};
  });
}

void moepool_model_destroy(moepool_model_t* model) { delete model; }

uint64_t moepool_model_id(const moepool_model_t* m) { return m ? m->info.id : 0; }
const char* moepool_model_name(const moepool_model_t* m) {
  return m ? m->info.name.c_str() : nullptr;
}
const char* moepool_model_architecture(const moepool_model_t* m) {
  return m ? m->info.architecture.c_str() : nullptr;
}
uint32_t moepool_model_block_count(const moepool_model_t* m) { return m ? m->info.block_count : 0; }
uint32_t moepool_model_n_moe_layers(const moepool_model_t* m) {
  return m ? static_cast<uint32_t>(m->info.layers.size()) : 0;
}
uint32_t moepool_model_layer_index(const moepool_model_t* m, uint32_t i) {
  const auto* l = layer_at(m, i);
  return l ? l->layer : 0;
}
uint32_t moepool_model_layer_n_experts(const moepool_model_t* m, uint32_t i) {
  const auto* l = layer_at(m, i);
  return l ? l->n_experts : 0;
}
uint64_t moepool_model_layer_expert_bytes(const moepool_model_t* m, uint32_t i) {
  const auto* l = layer_at(m, i);
  return l ? l->expert_bytes : 0;
}
uint32_t moepool_model_layer_n_projections(const moepool_model_t* m, uint32_t i) {
  const auto* l = layer_at(m, i);
  return l ? static_cast<uint32_t>(l->projections.size()) : 0;
}
int moepool_model_projection_kind(const moepool_model_t* m, uint32_t i, uint32_t p) {
  const auto* pr = proj_at(m, i, p);
  return pr ? static_cast<int>(pr->kind) : 0;
}
uint32_t moepool_model_projection_ggml_type(const moepool_model_t* m, uint32_t i, uint32_t p) {
  const auto* pr = proj_at(m, i, p);
  return pr ? pr->ggml_type : 0;
}
uint64_t moepool_model_projection_expert_bytes(const moepool_model_t* m, uint32_t i, uint32_t p) {
  const auto* pr = proj_at(m, i, p);
  return pr ? pr->expert_bytes : 0;
}
uint64_t moepool_model_projection_ne(const moepool_model_t* m, uint32_t i, uint32_t p, uint32_t d) {
  const auto* pr = proj_at(m, i, p);
  return pr && d < pr->ne.size() ? pr->ne[d] : 0;
}

// ---- experts --------------------------------------------------------------------------

moepool_leases_t* moepool_acquire(moepool_client_t* c, uint64_t model_id, uint32_t layer,
                                  const uint32_t* experts, size_t n, char** errptr) {
  return guarded<moepool_leases_t*>(errptr, nullptr, [&]() -> moepool_leases_t* {
    if (save_error(errptr, check_client_and_experts(c, experts, n))) return nullptr;
    auto leases = c->client->acquire(model_id, layer, std::span<const uint32_t>(experts, n));
    if (save_error(errptr, leases.status())) return nullptr;
    auto* out = new moepool_leases_t;
    out->leases = std::move(leases).value();
    return out;
  });
}

void moepool_leases_release(moepool_client_t* c, moepool_leases_t* leases, char** errptr) {
  guarded<int>(errptr, 0, [&] {
    if (c == nullptr || leases == nullptr) {
      save_error(errptr, moepool::InvalidArgument(c ? "leases is NULL" : "client is NULL"));
      return 0;
    }
    if (leases->released.exchange(true)) {
      save_error(errptr, moepool::FailedPrecondition("these leases were already released"));
      return 0;
    }
    Status st = c->client->release(leases->leases);
    if (save_error(errptr, st)) leases->released = false;  // still pinned: may retry
    return 0;
  });
}

void moepool_leases_destroy(moepool_leases_t* leases) { delete leases; }

size_t moepool_leases_count(const moepool_leases_t* l) { return l ? l->leases.size() : 0; }
uint32_t moepool_leases_expert(const moepool_leases_t* l, size_t i) {
  const auto* x = lease_at(l, i);
  return x ? x->expert : 0;
}
uint64_t moepool_leases_slot_index(const moepool_leases_t* l, size_t i) {
  const auto* x = lease_at(l, i);
  return x ? x->slot_index : 0;
}
uint64_t moepool_leases_stride(const moepool_leases_t* l, size_t i) {
  const auto* x = lease_at(l, i);
  return x ? x->stride : 0;
}
const uint8_t* moepool_leases_slot(const moepool_leases_t* l, size_t i) {
  const auto* x = lease_at(l, i);
  return x ? x->slot : nullptr;
}
int moepool_leases_hit(const moepool_leases_t* l, size_t i) {
  const auto* x = lease_at(l, i);
  return x && x->hit ? 1 : 0;
}
size_t moepool_leases_n_projections(const moepool_leases_t* l, size_t i) {
  const auto* x = lease_at(l, i);
  return x ? x->projections.size() : 0;
}
int moepool_leases_projection_kind(const moepool_leases_t* l, size_t i, size_t p) {
  const auto* v = view_at(l, i, p);
  return v ? static_cast<int>(v->kind) : 0;
}
const uint8_t* moepool_leases_projection_data(const moepool_leases_t* l, size_t i, size_t p) {
  const auto* v = view_at(l, i, p);
  return v ? v->data : nullptr;
}
uint64_t moepool_leases_projection_offset(const moepool_leases_t* l, size_t i, size_t p) {
  const auto* v = view_at(l, i, p);
  return v ? v->offset_in_slot : 0;
}
uint64_t moepool_leases_projection_bytes(const moepool_leases_t* l, size_t i, size_t p) {
  const auto* v = view_at(l, i, p);
  return v ? v->bytes : 0;
}

uint32_t moepool_prefetch(moepool_client_t* c, uint64_t model_id, uint32_t layer,
                          const uint32_t* experts, size_t n, char** errptr) {
  return guarded<uint32_t>(errptr, 0, [&]() -> uint32_t {
    if (save_error(errptr, check_client_and_experts(c, experts, n))) return 0;
    auto queued = c->client->prefetch(model_id, layer, std::span<const uint32_t>(experts, n));
    if (save_error(errptr, queued.status())) return 0;
    return *queued;
  });
}

uint32_t moepool_prefetch_with_probabilities(moepool_client_t* c, uint64_t model_id,
                                             uint32_t layer, const uint32_t* experts,
                                             const float* probabilities, size_t n,
                                             char** errptr) {
  return guarded<uint32_t>(errptr, 0, [&]() -> uint32_t {
    if (save_error(errptr, check_client_and_experts(c, experts, n))) return 0;
    std::span<const float> p;
    if (probabilities != nullptr) p = std::span<const float>(probabilities, n);
    auto queued = c->client->prefetch(model_id, layer, std::span<const uint32_t>(experts, n), p);
    if (save_error(errptr, queued.status())) return 0;
    return *queued;
  });
}

// ---- stats ----------------------------------------------------------------------------

moepool_stats_t* moepool_client_stats(moepool_client_t* c, char** errptr) {
  return guarded<moepool_stats_t*>(errptr, nullptr, [&]() -> moepool_stats_t* {
    if (c == nullptr) {
      save_error(errptr, moepool::InvalidArgument("client is NULL"));
      return nullptr;
    }
    auto stats = c->client->stats();
    if (save_error(errptr, stats.status())) return nullptr;
    return new moepool_stats_t{std::move(stats).value()};
  });
}

void moepool_stats_destroy(moepool_stats_t* stats) { delete stats; }

#define MOEPOOL_STATS_FIELD(type, field) \
  type moepool_stats_##field(const moepool_stats_t* s) { return s ? s->stats.field : 0; }
MOEPOOL_STATS_FIELD(uint64_t, pool_bytes)
MOEPOOL_STATS_FIELD(uint64_t, used_bytes)
MOEPOOL_STATS_FIELD(uint64_t, pinned_bytes)
MOEPOOL_STATS_FIELD(uint64_t, hits)
MOEPOOL_STATS_FIELD(uint64_t, misses)
MOEPOOL_STATS_FIELD(uint64_t, bytes_read)
MOEPOOL_STATS_FIELD(uint64_t, reads)
MOEPOOL_STATS_FIELD(uint64_t, read_errors)
MOEPOOL_STATS_FIELD(uint64_t, evictions)
MOEPOOL_STATS_FIELD(uint64_t, prefetches)
MOEPOOL_STATS_FIELD(uint32_t, sessions)
MOEPOOL_STATS_FIELD(uint64_t, upload_bytes)
MOEPOOL_STATS_FIELD(uint64_t, upload_busy_ns)
MOEPOOL_STATS_FIELD(uint64_t, upload_copies)
MOEPOOL_STATS_FIELD(uint64_t, staging_waits)
#undef MOEPOOL_STATS_FIELD

}  // extern "C"
