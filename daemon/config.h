// moepoold's configuration: embedded defaults, overlaid by a TOML file
// (config/moepoold.toml documents every key), overlaid by command-line flags
// (daemon/config_cli.h). Precedence: defaults < config file < flags.
//
// Threads: these are plain functions on values; call them from the main thread at start.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/budget.h"

namespace moepool {

inline constexpr uint64_t kMinPoolBytes = 1ull << 20;          // pool.size may not be smaller
inline constexpr uint64_t kDefaultPoolBytes = 256ull << 20;    // pool.size default
inline constexpr uint64_t kAutoSegmentCapBytes = 64ull << 20;  // segment_size 0 = min(pool, this)
inline constexpr uint64_t kSegmentAlign = 4096;                // segment_size granularity
inline constexpr uint32_t kMaxQueueDepth = 4096;
inline constexpr int32_t kMaxVulkanDevice = 63;                // pool.vulkan_device upper bound
// True when this moepoold was built with the Vulkan (VRAM) pool backend.
bool have_vulkan_backend();
inline constexpr uint32_t kMaxPrefetchDistance = 8;            // prefetch.distance upper bound
inline constexpr uint64_t kDefaultMaxRequestBytes = 1ull << 20;  // io.max_request_bytes default
inline constexpr uint64_t kMaxMaxRequestBytes = 64ull << 20;     // io.max_request_bytes bound

// io.direct. Unscoped so that it reads as "O_DIRECT allowed" in a boolean context (only
// off is false).
enum IoDirect : uint8_t { kIoDirectOff = 0, kIoDirectOn = 1, kIoDirectAuto = 2 };
// "auto", "on" or "off".
const char* io_direct_name(IoDirect d);


// One [quota."<model name>"] table of the config file.
struct QuotaConfig {
  std::string model;   // the model's name as `moepoolctl stats` shows it (general.name)
  Quota quota;
  std::string origin;  // "<file>:<line>:<col>" of the table, for errors ("" = not from a file)
};

inline constexpr uint32_t kMaxPopularitySaveSeconds = 86400;  // popularity.save_interval bound

struct DaemonConfig {
  // daemon.socket: the gRPC Unix socket; the fd side channel is socket_path + ".fds".
  std::string socket_path;
  // daemon.socket_mode: permission bits of both sockets.
  uint32_t socket_mode = 0660;
  // pool.size in bytes, default 256M.
  uint64_t pool_bytes = kDefaultPoolBytes;
  // pool.segment_size: 0 = auto (see effective_segment_bytes), else a multiple of 4096.
  uint64_t segment_bytes = 0;
  // pool.lock: "auto" (try mlock, log if refused), "on" (fail if refused), "off".
  std::string lock_memory = "auto";
  // pool.backend: "host" (memfd segments, the default) or "vulkan" (exportable VRAM
  // segments, daemon/vk_pool_memory.h; only in a moepoold built with Vulkan).
  std::string pool_backend = "host";
  // pool.vulkan_device: which Vulkan physical device holds a "vulkan" pool; -1 = the first
  // discrete GPU, else integrated, else any (kernels/vk_device.h), n >= 0 = the n-th.
  int32_t vulkan_device = -1;
  // models.roots: realpath()ed by validate_config; empty = nothing can be opened.
  std::vector<std::string> model_roots;
  // "<file>:<line>:<col>" of each root from the file, for errors; cleared by
  // validate_config and by --model-root.
  std::vector<std::string> model_root_origins;
  // daemon.state_dir: state that survives restarts (popularity).
  std::string state_dir;
  // daemon.log_level: trace|debug|info|warn|error.
  std::string log_level = "info";
  // io.mode: auto|io_uring|pread.
  std::string io_mode = "auto";
  // io.direct: auto|on|off (true/false in the file mean on/off); see choose_direct_reads.
  IoDirect io_direct = kIoDirectAuto;
  // io.queue_depth: reads in flight, 1..4096.
  uint32_t queue_depth = 32;
  // io.max_request_bytes: larger reads are split; a multiple of 4096 in 4 KiB..64 MiB.
  uint64_t max_request_bytes = kDefaultMaxRequestBytes;
  // io.prefetch_bytes_in_flight: cap on prefetch bytes being read; 0 = auto, sized to the
  // device (see effective_prefetch_bytes).
  uint64_t prefetch_bytes_in_flight = 0;
  // policy.name: the expert cache's residency policy, "default" or "lru".
  std::string policy_name = "default";
  // quota."<model name>": per-model shares of the pool (daemon/budget.h), applied at start.
  std::vector<QuotaConfig> quotas;
  // popularity.save_interval: seconds between saves of expert popularity to state_dir.
  uint32_t popularity_save_seconds = 30;
  // popularity.warmup: on a model's first open, read its saved hottest experts.
  bool warmup = true;
  // prefetch.predictor: the daemon's own next-layer predictor issues prefetches.
  bool prefetch_predictor = true;
  // prefetch.min_probability: predicted experts below this are not read (moepool-sim's
  // default, so bench/policy's figures apply).
  double prefetch_min_probability = 0.5;
  // prefetch.distance: after layer L the predictor guesses layers L+1 .. L+distance, so a
  // read can start before the layer just ahead (moepool-sim's default), 1..kMaxPrefetchDistance.
  uint32_t prefetch_distance = 3;
  // admin.uids: may call admin RPCs (root and the daemon's own uid always may).
  std::vector<uint32_t> admin_uids;
  // admin.groups: group names whose members may call admin RPCs.
  std::vector<std::string> admin_groups;
  // Where the config was loaded from ("" = defaults only).
  std::string config_path;
};

// Returns the embedded defaults: socket and state under $XDG_RUNTIME_DIR/moepool (or
// /tmp/moepool-<uid> when unset), pool 256M.
DaemonConfig default_config();

// Loads a TOML file over `base`. Errors: "<file>:<line>:<col>: <reason>" — syntax errors,
// unknown keys, wrong types, out-of-range values. Never throws.
Result<DaemonConfig> load_config_file(const std::string& path, DaemonConfig base);

// Checks cross-field rules after CLI overrides (segment divides pool, etc.), resolves the
// auto segment size and normalises paths (model roots realpath()ed; they must exist).
Status validate_config(DaemonConfig* cfg);

// Returns the effective segment size: segment_bytes, or min(pool, 64M) rounded down to
// 4096 when it is 0.
uint64_t effective_segment_bytes(const DaemonConfig& cfg);

// Creates the socket's directory and state_dir (mode 0750 where new) and checks that each is
// a real directory (not a symlink) owned by this process's euid or root and not writable by
// others — so nobody can pre-create /tmp/moepool-<uid> and swap the socket. Call after
// validate_config, before binding the socket.
Status prepare_config_dirs(const DaemonConfig& cfg);

// Returns a multi-line human-readable dump of `cfg` (for --print-config and the log).
std::string describe_config(const DaemonConfig& cfg);

// How one model's files are read, decided when it is opened (io.direct).
struct DirectChoice {
  bool direct = true;  // O_DIRECT into the pool (false: buffered, through the page cache)
  std::string why;     // for the log: "file 1.2 GiB fits in 9.8 GiB available", ...
};
// The io.direct decision for a model: on/off as told; auto reads with O_DIRECT when
// `file_bytes` (the model's files plus those of the models already open) do not fit in
// `available_bytes` (free RAM the page cache may use: MemAvailable less the pool), and
// buffered when they do, so a model that fits in RAM is served from the page cache.
DirectChoice choose_direct_reads(IoDirect setting, uint64_t file_bytes, uint64_t available_bytes);
// The prefetch cap the I/O engine gets: io.prefetch_bytes_in_flight, or when 0 half of
// what the device has in flight at its full depth (queue_depth * max_request_bytes / 2),
// so demand reads always find half the queue.
uint64_t effective_prefetch_bytes(const DaemonConfig& cfg);
// MemAvailable of /proc/meminfo (or `meminfo_path`) in bytes.
Result<uint64_t> mem_available_bytes(const std::string& meminfo_path = "/proc/meminfo");

}  // namespace moepool
