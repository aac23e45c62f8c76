// moepoold-faulty: moepoold whose I/O device is wrapped by the fault backend
// (daemon/fault_backend.h), so integration tests can watch a real daemon and real workers
// live through failed, short and stalled reads. Built only with the tests, into build/bin;
// the production moepoold has none of these flags and sets no hooks.
//
//   moepoold-faulty [--fail-read N] [--short-read N [--short-bytes B]]
//                   [--stall-read N [--stall-ms MS]] [every moepoold flag]
//
// Reads are numbered from 1 in the order the engine issues them to the device (retries and
// resubmissions included). --fail-read N: read N completes with EIO. --short-read N: read N
// reports B bytes (default 0, as at end of file: the request fails with "short read";
// B > 0: the engine resubmits the rest). --stall-read N: read N is held back until
// SIGUSR1 arrives or MS milliseconds passed since it stalled (0, the default: until
// SIGUSR1), then goes to the device.
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "daemon/fault_backend.h"
#include "daemon/serve.h"

namespace {

// Releases the stalled read when SIGUSR1 arrives or its time is up. The rule (engine
// thread) calls stalled(); the releaser thread runs run().
class StallReleaser {
 public:
  void stalled() {
    std::lock_guard<std::mutex> lock(mu_);
    ++stalls_;
    cv_.notify_all();
  }
  // Thread body: waits for each stall, then for SIGUSR1 (blocked in every thread) or the
  // timeout, then releases. Runs until the process exits.
  void run(moepool::FaultyBackend* faulty, uint64_t stall_ms) {
    uint64_t released = 0;
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stalls_ > released; });
        released = stalls_;
      }
      if (stall_ms == 0) {
        int sig = 0;
        sigwait(&usr1, &sig);
      } else {
        timespec t{static_cast<time_t>(stall_ms / 1000), static_cast<long>(stall_ms % 1000) * 1000000};
        while (sigtimedwait(&usr1, nullptr, &t) < 0 && errno == EINTR) {
        }
      }
      spdlog::warn("moepoold-faulty: releasing the stalled read");
      faulty->release_stalled();
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t stalls_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  // SIGUSR1 is taken by sigwait in the releaser only: block it before any thread starts.
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, nullptr);

  CLI::App app{
      "moepoold-faulty (TEST BUILDS ONLY): moepoold whose device fails, shortens or stalls "
      "chosen reads (numbered from 1 in issue order). All other flags are moepoold's."};
  uint64_t fail_read = 0, short_read = 0, short_bytes = 0, stall_read = 0, stall_ms = 0;
  app.add_option("--fail-read", fail_read, "Read N completes with EIO")->type_name("N");
  app.add_option("--short-read", short_read,
                 "Read N reports only --short-bytes bytes (default 0: the request fails)")
      ->type_name("N");
  app.add_option("--short-bytes", short_bytes, "Bytes the short read reports")->type_name("B");
  app.add_option("--stall-read", stall_read,
                 "Read N is held back until SIGUSR1 or --stall-ms milliseconds")
      ->type_name("N");
  app.add_option("--stall-ms", stall_ms, "How long the stalled read waits (0: until SIGUSR1)")
      ->type_name("MS");

  StallReleaser releaser;
  moepool::ServeHooks hooks;
  hooks.wrap_io_device = [&](std::unique_ptr<moepool::IoBackend> device) {
    using moepool::FaultyBackend;
    auto faulty = std::make_unique<FaultyBackend>(std::move(device));
    faulty->set_rule([=, &releaser](uint64_t n, const moepool::IoOp&) {
      FaultyBackend::Fault f;
      if (n == fail_read) {
        f.action = FaultyBackend::Action::kFail;
        f.err = EIO;
      } else if (n == short_read) {
        f.action = FaultyBackend::Action::kShort;
        f.short_bytes = short_bytes;
      } else if (n == stall_read) {
        f.action = FaultyBackend::Action::kStall;
        releaser.stalled();
      }
      return f;
    });
    if (stall_read) {
      // Detached: it lives until the process exits. The daemon cannot stop while the read
      // is stalled (the engine waits for it), so the backend outlives every release.
      std::thread([&releaser, p = faulty.get(), stall_ms] { releaser.run(p, stall_ms); }).detach();
    }
    spdlog::warn("moepoold-faulty: fail read {}, short read {} ({} bytes), stall read {} ({} ms)",
                 fail_read, short_read, short_bytes, stall_read, stall_ms);
    return std::unique_ptr<moepool::IoBackend>(std::move(faulty));
  };
  return moepool::serve_main(app, argc, argv, hooks);
}
