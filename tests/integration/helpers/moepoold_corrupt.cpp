// moepoold-corrupt: moepoold with one extra, test-only flag that makes the daemon serve
// one wrong byte — the negative control proving an engine reads the pool (issue 3). Built
// only with the tests (MOEPOOL_BUILD_TESTS), into build/bin; the production moepoold has
// no such flag and sets no hooks.
//
//   moepoold-corrupt --corrupt-file-offset N [every moepoold flag]
//
// Every read of a model file that covers absolute byte N of that file (in any model file
// the daemon reads) completes normally, then that byte is inverted (XOR 0xFF) in the
// destination slot. So the expert whose extent holds byte N is served with exactly that
// byte different from the file, and every other byte equal.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <optional>

#include "daemon/fault_backend.h"
#include "daemon/serve.h"

int main(int argc, char** argv) {
  CLI::App app{
      "moepoold-corrupt (TEST BUILDS ONLY): moepoold whose reads invert one byte. Every read "
      "of a model file that covers absolute byte N of that file (any model file) completes, "
      "then byte N is inverted (XOR 0xFF) in the pool slot: the expert whose extent holds "
      "byte N is served with exactly that byte differing from the file. All other flags are "
      "moepoold's."};
  std::optional<uint64_t> offset;
  app.add_option("--corrupt-file-offset", offset,
                 "Absolute byte offset N in the model file whose byte is inverted in the pool "
                 "(required)")
      ->type_name("N")
      ->required();
  moepool::ServeHooks hooks;
  hooks.wrap_io_device = [&offset](std::unique_ptr<moepool::IoBackend> device) {
    auto faulty = std::make_unique<moepool::FaultyBackend>(std::move(device));
    faulty->set_rule(moepool::FaultyBackend::corrupt_file_offset(*offset));
    spdlog::warn("moepoold-corrupt: reads covering file offset {} invert that byte", *offset);
    return std::unique_ptr<moepool::IoBackend>(std::move(faulty));
  };
  return moepool::serve_main(app, argc, argv, hooks);
}
