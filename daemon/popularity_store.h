// How often each expert of each model was demanded, counted from Acquire and kept in the
// state directory (one file per model, named by its id) so it survives restarts; warm-up
// (daemon/warmup.h) reads it on a model's first open. Saved files are written atomically
// (temp file, fsync, rename, fsync of the directory). A malformed or unreadable file is
// logged and ignored, never fatal; the next save replaces it.
// Thread safety: every method may be called from any thread (one internal mutex; count()
// is a few hash updates under it).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace moepool {

struct PopularityEntry {
  uint32_t layer = 0, expert = 0;
  double count = 0;  // demands, older runs' halved at each load
  bool operator==(const PopularityEntry&) const = default;
};

inline constexpr uint32_t kPopularityFormatVersion = 1;

// The file format: a versioned text header, one "layer expert count" line per expert,
// and an "end N" trailer (so a cut-off file is detected). Entries sorted by (layer, expert).
std::string encode_popularity(uint64_t model_id, const std::string& model_name,
                              std::vector<PopularityEntry> entries);
// Parses a file written by encode_popularity for model `model_id`. Errors name the line
// and what is wrong ("line 3: count 'x' is not a number").
Result<std::vector<PopularityEntry>> decode_popularity(std::string_view text, uint64_t model_id);

class PopularityStore {
 public:
  // Files live in `dir` (the daemon's state_dir, which must exist).
  explicit PopularityStore(std::string dir);

  // Counts one demand of each of `experts` of `layer` of model `model_id`.
  void count(uint64_t model_id, const std::string& model_name, uint32_t layer,
             const std::vector<uint32_t>& experts);

  struct Opened {
    bool first = false;  // first open of this model in this process
    std::vector<PopularityEntry> entries;  // saved (halved) plus counted since
  };
  // A model was opened: on the first call for `model_id`, merges its saved file (halved:
  // older runs weigh less) into the counts. Returns the counts now.
  Opened open_model(uint64_t model_id, const std::string& model_name);

  // Writes the file of every model counted since its last save. Returns the first error
  // (every model is still tried); errors are logged too.
  Status save_all();

  // Where model `model_id`'s counts are saved: <dir>/<16 hex digits>.popularity.
  std::string path_for(uint64_t model_id) const;

 private:
  struct ModelCounts {
    std::string name;
    std::unordered_map<uint64_t, double> counts;  // by layer << 32 | expert
    bool loaded = false;
    bool dirty = false;
  };
  static std::vector<PopularityEntry> entries_of(const ModelCounts& m);

  std::string dir_;
  std::mutex mu_;
  std::unordered_map<uint64_t, ModelCounts> models_;
};

}  // namespace moepool
