// A worker process for integration tests: attaches to moepoold, opens a model, acquires
// experts of one layer, checks every byte against the model file, then releases them
// (or, with --hold, prints "held" and waits to be killed while holding its pins).
//
//   test_worker SOCKET MODEL LAYER E1,E2,... [--hold] [--repeat N]
// Exit status: 0 ok, 1 error (printed as "error <code>: <message>"), 3 byte mismatch.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "common/catalog.h"
#include "moepool/client.h"

using namespace moepool;

static int fail(const Status& st) {
  std::printf("error %s: %s\n", code_name(st.code()), st.message().c_str());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s SOCKET MODEL LAYER E1,E2,... [--hold] [--repeat N]\n", argv[0]);
    return 2;
  }
  std::string socket = argv[1], model_path = argv[2];
  uint32_t layer = static_cast<uint32_t>(std::stoul(argv[3]));
  std::vector<uint32_t> experts;
  std::stringstream ss(argv[4]);
  for (std::string tok; std::getline(ss, tok, ',');) experts.push_back(static_cast<uint32_t>(std::stoul(tok)));
  bool hold = false;
  int repeat = 1;
  for (int i = 5; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--hold")) hold = true;
    else if (!std::strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = std::atoi(argv[++i]);
  }

  auto catalog = Catalog::open(model_path);
  if (!catalog.ok()) return fail(catalog.status());
  const MoeLayer* moe = catalog->layer(layer);
  std::vector<int> fds;
  for (const auto& f : catalog->files()) fds.push_back(open(f.path.c_str(), O_RDONLY | O_CLOEXEC));

  auto client = Client::connect(socket, "test_worker");
  if (!client.ok()) return fail(client.status());
  auto model = (*client)->open_model(model_path);
  if (!model.ok()) return fail(model.status());

  uint64_t verified = 0;
  for (int r = 0; r < repeat; ++r) {
    auto leases = (*client)->acquire(model->id, layer, experts);
    if (!leases.ok()) return fail(leases.status());
    for (const Lease& l : *leases) {
      if (!moe || l.projections.size() != moe->projections.size()) {
        std::printf("mismatch: expert %u has %zu projections\n", l.expert, l.projections.size());
        return 3;
      }
      for (size_t p = 0; p < l.projections.size(); ++p) {
        Extent x = moe->projections[p].expert_extent(l.expert);
        std::vector<uint8_t> want(x.bytes);
        if (pread(fds[x.file_index], want.data(), x.bytes, static_cast<off_t>(x.offset)) !=
                static_cast<ssize_t>(x.bytes) ||
            l.projections[p].bytes != x.bytes ||
            std::memcmp(want.data(), l.projections[p].data, x.bytes) != 0) {
          std::printf("mismatch: layer %u expert %u projection %zu\n", layer, l.expert, p);
          return 3;
        }
        verified += x.bytes;
      }
    }
    if (hold) {
      std::printf("held %zu\n", leases->size());
      std::fflush(stdout);
      for (;;) pause();
    }
    Status st = (*client)->release(*leases);
    if (!st.ok()) return fail(st);
  }
  std::printf("ok verified %llu\n", static_cast<unsigned long long>(verified));
  return 0;
}
