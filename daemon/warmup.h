// Warm-up of a model's first open in this daemon's life: loads the popularity saved in
// the state directory (daemon/popularity_store.h), picks the hottest experts that fit the
// model's share and the pool's free memory, and hands them to ExpertCache::warm() in file
// order, so the reads sweep the file once, sequentially. Runs on its own thread: OpenModel
// never waits for it. Logs its start (experts planned, bytes) and end (loaded, seconds);
// `moepoolctl stats` shows its state and progress (the cache counts them).
// Thread safety: on_open() from any thread; the destructor stops a warm-up being watched.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "daemon/expert_cache.h"
#include "daemon/model.h"
#include "daemon/popularity_store.h"
#include "daemon/task_queue.h"

namespace moepool {

// The hottest experts of `entries` (highest count first; ties by layer, expert) whose slots
// fit in `budget_bytes`, returned in file order (by the file and offset of each expert's
// first byte). Entries `model` does not have are skipped. `*bytes`, when given, gets the
// slot bytes of the plan.
std::vector<WarmItem> plan_warmup(const Model& model, std::vector<PopularityEntry> entries,
                                  uint64_t budget_bytes, uint64_t* bytes = nullptr);

class Warmup {
 public:
  // `enabled` false: on_open() only merges the saved popularity (nothing is read).
  Warmup(ExpertCache* cache, PopularityStore* popularity, bool enabled);
  ~Warmup();

  // Model `model` was opened by a session. On its first open, starts the warm-up in the
  // background; later opens do nothing.
  void on_open(std::shared_ptr<Model> model);

 private:
  void run(const std::shared_ptr<Model>& model);

  ExpertCache* cache_;
  PopularityStore* popularity_;
  bool enabled_;
  std::atomic<bool> stopping_{false};
  TaskQueue queue_;  // last: its thread runs tasks that use the members above
};

}  // namespace moepool
