// moepoold: the MoE expert pool daemon. Parses its flags and serves (daemon/serve.h); it
// sets no test hooks, so nothing on its command line or in its config can inject faults.
#include <CLI/CLI.hpp>

#include "daemon/serve.h"

int main(int argc, char** argv) {
  CLI::App app{
      "moepoold: serves MoE expert weights from GGUF files through one shared memory "
      "pool to every model-serving process on the host."};
  return moepool::serve_main(app, argc, argv, {});
}
