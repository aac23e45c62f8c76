// moepoold-corrupt: moepoold with one extra, test-only flag that makes the daemon serve
// one wrong byte — the negative control proving an engine reads the pool (issue 3). Built
// only with the tests (MOEPOOL_BUILD_TESTS), into build/bin; the production moepoold has
// no such flag and sets no hooks.
//
//   moepoold-corrupt --corrupt-file-offset N [--corrupt-file-offset M ...] [every moepoold flag]
//
// Every read of a model file that covers absolute byte N of that file (in any model file
// the daemon reads) completes normally, then that byte is inverted (XOR 0xFF) in the
// destination slot. So the expert whose extent holds byte N is served with exactly that
// byte different from the file, and every other byte equal. Several offsets each act so
// (a read covering more than one inverts only the first given).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <vector>

#include "daemon/fault_backend.h"
#include "daemon/serve.h"

int main(int argc, char** argv) {
  CLI::App app{
      "moepoold-corrupt (TEST BUILDS ONLY): moepoold whose reads invert one byte. Every read "
      "of a model file that covers absolute byte N of that file (any model file) completes, "
      "then byte N is inverted (XOR 0xFF) in the pool slot: the expert whose extent holds "
      "byte N is served with exactly that byte differing from the file. All other flags are "
      "moepoold's."};
  std::vector<uint64_t> offsets;
  app.add_option("--corrupt-file-offset", offsets,
                 "Absolute byte offset N in the model file whose byte is inverted in the pool "
                 "(required; repeat for several bytes)")
      ->type_name("N")
      ->required();
  moepool::ServeHooks hooks;
  hooks.wrap_io_device = [&offsets](std::unique_ptr<moepool::IoBackend> device) {
    auto faulty = std::make_unique<moepool::FaultyBackend>(std::move(device));
    std::vector<moepool::FaultyBackend::Rule> rules;
    for (uint64_t o : offsets) rules.push_back(moepool::FaultyBackend::corrupt_file_offset(o));
    faulty->set_rule([rules](uint64_t n, const moepool::IoOp& op) {
      for (const auto& rule : rules)
        if (auto f = rule(n, op); f.action != moepool::FaultyBackend::Action::kPass) return f;
      return moepool::FaultyBackend::Fault{};
    });
    spdlog::warn("moepoold-corrupt: reads covering {} chosen file offsets invert those bytes",
                 offsets.size());
    return std::unique_ptr<moepool::IoBackend>(std::move(faulty));
  };
  return moepool::serve_main(app, argc, argv, hooks);
}
