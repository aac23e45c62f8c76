#include "daemon/serve.h"

#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>

#include "common/units.h"
#include "common/version.h"
#include "daemon/admin_service.h"
#include "daemon/config_cli.h"
#include "daemon/expert_cache.h"
#include "daemon/fd_server.h"
#include "daemon/io_engine.h"
#include "daemon/listener.h"
#include "daemon/model_registry.h"
#include "daemon/pool.h"
#include "daemon/popularity_store.h"
#include "daemon/prefetcher.h"
#include "daemon/session_registry.h"
#include "daemon/slot_writer.h"
#include "daemon/task_queue.h"
#include "daemon/vk_pool_memory.h"
#include "daemon/vk_slot_writer.h"
#include "daemon/warmup.h"
#include "daemon/worker_service.h"

#ifdef MOEPOOL_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#else
static int sd_notify(int, const char*) { return 0; }
#endif

namespace moepool {
namespace {

constexpr int kMaxMessageBytes = 4 << 20;  // larger requests are refused by gRPC itself

// Decides (io.direct, see choose_direct_reads) whether `m`'s files are read with O_DIRECT
// or buffered, closes the O_DIRECT descriptors of buffered ones (the engine reads a file
// without direct_fd buffered) and logs one line saying which and why.
void choose_model_read_mode(IoDirect setting, uint64_t pool_not_resident, uint64_t open_bytes,
                            Model* m) {
  uint64_t file_bytes = 0;
  for (const FileStamp& st : m->stamps) file_bytes += st.size;
  std::string refused;
  for (const ModelFile& f : m->files)
    if (f.direct_fd < 0 && refused.empty()) refused = f.path;
  const std::string name = m->catalog.name().empty() ? m->path : m->catalog.name();
  if (setting != kIoDirectOff && !refused.empty()) {
    spdlog::info("model {}: buffered reads (the filesystem of {} refuses O_DIRECT)", name, refused);
    return;
  }
  uint64_t available = 0;
  if (setting == kIoDirectAuto) {
    auto mem = mem_available_bytes();
    if (!mem.ok()) {
      spdlog::warn("model {}: O_DIRECT (cannot tell free RAM: {})", name, mem.status().message());
      return;
    }
    available = *mem > pool_not_resident ? *mem - pool_not_resident : 0;
  }
  DirectChoice c = choose_direct_reads(setting, open_bytes + file_bytes, available);
  if (!c.direct) {
    for (ModelFile& f : m->files) {
      if (f.direct_fd >= 0) ::close(f.direct_fd);
      f.direct_fd = -1;
    }
  }
  std::string why = c.why;
  if (setting == kIoDirectAuto && open_bytes)
    why += ", with " + format_bytes(open_bytes) + " of models already open";
  spdlog::info("model {}: {} ({}; this model {})", name,
               c.direct ? "O_DIRECT" : "buffered reads", why, format_bytes(file_bytes));
}

}  // namespace

int serve(const DaemonConfig& cfg, const ServeHooks& hooks) {
  DaemonContext ctx;
  ctx.config = cfg;
  for (const std::string& g : cfg.admin_groups) {
    if (const group* gr = getgrnam(g.c_str()))
      ctx.admin_gids.push_back(gr->gr_gid);
    else
      spdlog::warn("admin group '{}' does not exist; ignoring it", g);
  }
  if (Status st = prepare_config_dirs(cfg); !st.ok()) {
    spdlog::critical("{}", st.message());
    return 1;
  }

  Pool::Options pool_opts{cfg.pool_bytes, cfg.segment_bytes, cfg.lock_memory};
#ifdef MOEPOOL_DAEMON_HAVE_VULKAN
  std::unique_ptr<VkPoolMemory> vram;  // freed only at exit: exports cannot be revoked
  Result<std::unique_ptr<Pool>> pool = InvalidArgument("unreachable");
  if (cfg.pool_backend == "vulkan") {
    const uint64_t seg = cfg.segment_bytes;  // validate_config resolved auto
    auto mem = VkPoolMemory::create(cfg.vulkan_device, seg,
                                    static_cast<uint32_t>(cfg.pool_bytes / seg));
    if (!mem.ok()) {
      spdlog::critical("cannot create the VRAM pool: {}", mem.status().message());
      return 1;
    }
    vram = std::move(mem).value();
    spdlog::info("pool: VRAM backend, {}", vram->note());
    pool = Pool::create_external(pool_opts, vram->fds(), "vulkan", vram->device_uuid());
  } else {
    pool = Pool::create(pool_opts);
  }
#else
  if (cfg.pool_backend != "host") {
    spdlog::critical("pool.backend = \"{}\" but this moepoold was built without Vulkan",
                     cfg.pool_backend);
    return 1;
  }
  auto pool = Pool::create(pool_opts);
#endif
  if (!pool.ok()) {
    spdlog::critical("cannot create the pool: {}", pool.status().message());
    return 1;
  }
  spdlog::info("pool: {} MiB in {}", (*pool)->pool_bytes() >> 20, (*pool)->setup_note());

  IoEngine::Options io_opts;
  io_opts.mode = cfg.io_mode;
  io_opts.direct = cfg.io_direct != kIoDirectOff;  // auto: decided per model at open
  io_opts.queue_depth = cfg.queue_depth;
  io_opts.max_request_bytes = cfg.max_request_bytes;
  io_opts.prefetch_bytes_in_flight = effective_prefetch_bytes(cfg);
  std::string device_why;
  auto opened = IoEngine::open_device(io_opts, &device_why);
  if (!opened.ok()) {
    spdlog::critical("cannot start the I/O engine: {}", opened.status().message());
    return 1;
  }
  std::unique_ptr<IoBackend> device = std::move(opened).value();
  if (hooks.wrap_io_device) device = hooks.wrap_io_device(std::move(device));
  auto io = IoEngine::create(io_opts, std::move(device));
  if (!io.ok()) {
    spdlog::critical("cannot start the I/O engine: {}", io.status().message());
    return 1;
  }
  spdlog::info("io: {}{}{}, queue depth {}, reads split at {}, prefetch cap {}{}",
               (*io)->mode_name(), device_why.empty() ? "" : " (", device_why.empty() ? "" : device_why + ")",
               io_opts.queue_depth, format_bytes(io_opts.max_request_bytes),
               format_bytes(io_opts.prefetch_bytes_in_flight),
               cfg.prefetch_bytes_in_flight ? "" : " (auto: queue_depth * max_request_bytes / 2)");
  auto policy = make_policy(cfg.policy_name);
  if (!policy.ok()) {
    spdlog::critical("policy.name: {}", policy.status().message());
    return 1;
  }
  // How read bytes reach a slot: straight into host pool memory, or through pinned
  // staging and a transfer queue into VRAM (daemon/slot_writer.h).
  std::unique_ptr<SlotWriter> writer;
#ifdef MOEPOOL_DAEMON_HAVE_VULKAN
  if (vram) {
    // Staging holds two segments' worth of slots in flight (at least 8 MiB), so any slot
    // fits and reads overlap copies.
    auto vw = VkSlotWriter::create(vram.get(), io->get(),
                                   std::max<uint64_t>(2 * vram->segment_bytes(), 8ull << 20));
    if (!vw.ok()) {
      spdlog::critical("cannot start the VRAM upload path: {}", vw.status().message());
      return 1;
    }
    spdlog::info("pool: VRAM upload via {}", (*vw)->note());
    writer = std::move(vw).value();
  }
#endif
  if (!writer) {
    writer = std::make_unique<HostSlotWriter>((*pool)->base(), io->get());
    // Reads land straight in the pool: its memory becomes io_uring fixed buffers where the
    // kernel allows (the engine logs and reads plainly where it refuses).
    if (Status rb = (*io)->register_buffers({{(*pool)->base(), (*pool)->pool_bytes()}}); !rb.ok())
      spdlog::info("io: pool not registered as fixed buffers: {}", rb.message());
  }
  ExpertCache cache(pool->get(), writer.get(), std::move(policy).value());
  cache.set_prefetch_cap(io_opts.prefetch_bytes_in_flight);  // the engine's cap, for every source
  for (const QuotaConfig& q : cfg.quotas) {
    if (Status qs = cache.set_quota(q.model, q.quota); !qs.ok()) {
      spdlog::critical("{}{}", q.origin.empty() ? "" : q.origin + ": ", qs.message());
      return 1;
    }
    ctx.quotas[q.model] = q.quota;
  }
  PopularityStore popularity(cfg.state_dir);
  std::unique_ptr<Prefetcher> prefetcher;
  if (cfg.prefetch_predictor) {
    prefetcher = std::make_unique<Prefetcher>(
        cfg.prefetch_min_probability, cfg.prefetch_distance,
        [&cache](const std::shared_ptr<Model>& m, uint32_t layer, std::vector<uint32_t> experts,
                 std::vector<double> p) {
          auto r = cache.prefetch(m, layer, std::move(experts), std::move(p),
                                  PrefetchSource::kPredictor);
          if (!r.ok()) spdlog::debug("predicted prefetch refused: {}", r.status().message());
        });
  }
  Warmup warmup(&cache, &popularity, cfg.warmup);
  // The RAM the page cache may give model files: MemAvailable, less the pool where its
  // pages are not yet taken (a locked host pool is already out of MemAvailable).
  const uint64_t pool_not_resident =
      cfg.pool_backend == "host" && !(*pool)->locked() ? cfg.pool_bytes : 0;
  ModelRegistry models(cfg.model_roots, &cache,
                       [&cfg, pool_not_resident](Model* m, uint64_t open_bytes) {
                         choose_model_read_mode(cfg.io_direct, pool_not_resident, open_bytes, m);
                       });
  SessionRegistry sessions(&cache);
  Listener listener;
  ctx.pool = pool->get();
  ctx.io = io->get();
  ctx.cache = &cache;
  ctx.models = &models;
  ctx.sessions = &sessions;
  ctx.listener = &listener;
  ctx.popularity = &popularity;
  ctx.prefetcher = prefetcher.get();
  ctx.warmup = &warmup;
  ctx.fd_socket = cfg.socket_path + ".fds";

  TaskQueue control;
  WorkerService worker(&ctx, &control);
  AdminService admin(&ctx);
  grpc::ServerBuilder builder;  // no listening ports: the Listener hands connections in
  builder.RegisterService(&worker);
  builder.RegisterService(&admin);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    spdlog::critical("cannot start the gRPC server");
    return 1;
  }
  std::vector<int> fds{(*pool)->control_fd()};
  for (int fd : (*pool)->segment_fds()) fds.push_back(fd);
  FdServer fd_server(&sessions, fds);
  Status st = listener.start(cfg.socket_path, cfg.socket_mode, server.get());
  if (st.ok()) st = fd_server.start(ctx.fd_socket, cfg.socket_mode);
  if (!st.ok()) {
    spdlog::critical("cannot listen: {}", st.message());
    listener.stop();
    server->Shutdown();
    return 1;
  }
  std::string roots;
  for (const auto& r : cfg.model_roots) roots += (roots.empty() ? "" : ", ") + r;
  spdlog::info("moepoold {} ready on {} (pid {}, io {}, model roots: {})", version(),
               cfg.socket_path, getpid(), (*io)->mode_name(), roots.empty() ? "none" : roots);
  sd_notify(0, "READY=1\nSTATUS=serving");

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  const auto save_every = std::chrono::seconds(cfg.popularity_save_seconds);
  auto last_save = std::chrono::steady_clock::now();
  auto last_upload_log = last_save;
  uint64_t logged_upload_bytes = 0;
  for (;;) {
    timespec tick{1, 0};
    int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      break;
    }
    sessions.reap();
    if (prefetcher)
      prefetcher->forget_sessions([&sessions](uint64_t s) { return sessions.alive(s); });
    if (std::chrono::steady_clock::now() - last_save >= save_every) {
      popularity.save_all();  // logs its own errors
      last_save = std::chrono::steady_clock::now();
    }
    if (std::chrono::steady_clock::now() - last_upload_log >= std::chrono::minutes(1)) {
      UploadStats up = writer->stats();
      if (up.bytes != logged_upload_bytes) {
        spdlog::info("vram upload: {} slots, {} MiB in {} ms of copies ({:.2f} GB/s), {} staging waits",
                     up.copies, up.bytes >> 20, up.busy_ns / 1000000,
                     up.busy_ns ? static_cast<double>(up.bytes) / static_cast<double>(up.busy_ns) : 0.0,
                     up.staging_waits);
        logged_upload_bytes = up.bytes;
      }
      last_upload_log = std::chrono::steady_clock::now();
    }
    sd_notify(0, "WATCHDOG=1");
  }
  sd_notify(0, "STOPPING=1");
  listener.stop();
  fd_server.stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (Status ps = popularity.save_all(); ps.ok())
    spdlog::info("popularity saved in {}", cfg.state_dir);
  (*io)->stop();
  writer->stop();  // after the reads, before the cache its callbacks call goes away
  spdlog::info("moepoold stopped");
  return 0;
}

int serve_main(CLI::App& app, int argc, char** argv, const ServeHooks& hooks) {
  // Block the stop signals before any thread starts, so only sigtimedwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  CliOverrides overrides;
  add_config_flags(app, &overrides);
  bool print_config = false;
  app.add_flag("--print-config", print_config, "Print the effective configuration and exit");
  app.set_version_flag("--version", version());
  CLI11_PARSE(app, argc, argv);

  auto cfg = load_effective_config(overrides);
  if (!cfg.ok()) {
    std::string prog = std::filesystem::path(argc > 0 ? argv[0] : "moepoold").filename();
    fprintf(stderr, "%s: %s\n", prog.c_str(), cfg.status().message().c_str());
    return 2;
  }
  if (print_config) {
    printf("%s", describe_config(*cfg).c_str());
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(cfg->log_level));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  return serve(*cfg, hooks);
}

}  // namespace moepool
