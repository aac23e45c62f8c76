// moepoold-corrupt, the test-only daemon of negative controls: a real daemon process whose
// reads invert the byte at one file offset. A worker acquiring the expert that holds it
// through libmoepool sees exactly that byte differ from the file and every other byte of
// every expert equal; the production moepoold has no flag to do this.
#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "common/catalog.h"
#include "tests/integration/daemon_harness.h"

namespace moepool::testing {
namespace {

class CorruptDaemon : public DaemonFixture {
 protected:
  // Starts moepoold-corrupt on a model of `synth_args`, inverting byte `at` of the down
  // projection of expert `expert` of layer 1, and checks what a worker sees for experts
  // expert-1..expert+1 of that layer.
  void expect_only_that_byte_differs(const std::vector<std::string>& synth_args, uint32_t expert,
                                     uint64_t at) {
    std::string model = synth("m.gguf", synth_args);
    auto catalog = Catalog::open(model);
    ASSERT_TRUE(catalog.ok()) << catalog.status().to_string();
    const MoeLayer* moe = catalog->layer(1);
    ASSERT_NE(moe, nullptr);
    const size_t down = moe->projections.size() - 1;
    ASSERT_EQ(moe->projections[down].kind, ProjKind::kDown);
    Extent target = moe->projections[down].expert_extent(expert);
    ASSERT_LT(at, target.bytes);
    const uint64_t offset = target.offset + at;
    start_daemon("16M", {"--corrupt-file-offset", std::to_string(offset)}, "moepoold-corrupt");

    auto c = connect();
    ASSERT_NE(c, nullptr);
    auto m = c->open_model(model);
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    std::vector<uint32_t> experts = {expert - 1, expert, expert + 1};
    auto leases = c->acquire(m->id, 1, experts);
    ASSERT_TRUE(leases.ok()) << leases.status().to_string();
    uint64_t differing = 0;
    for (const Lease& l : *leases) {
      ASSERT_EQ(l.projections.size(), moe->projections.size());
      for (size_t p = 0; p < l.projections.size(); ++p) {
        Extent x = moe->projections[p].expert_extent(l.expert);
        ASSERT_EQ(l.projections[p].bytes, x.bytes);
        std::vector<uint8_t> want = file_bytes(model, x.offset, x.bytes);
        for (uint64_t i = 0; i < x.bytes; ++i) {
          if (l.projections[p].data[i] == want[i]) continue;
          ++differing;
          EXPECT_TRUE(l.expert == expert && p == down && i == at)
              << "expert " << l.expert << " projection " << p << " byte " << i << " differs";
          EXPECT_EQ(l.projections[p].data[i], static_cast<uint8_t>(want[i] ^ 0xFF));
        }
      }
    }
    EXPECT_EQ(differing, 1u) << "exactly the byte at file offset " << offset;
    EXPECT_TRUE(c->release(*leases).ok());
  }
};

TEST_F(CorruptDaemon, ServesExactlyTheCorruptedByteDifferentFromTheFile) {
  // q8_0 [256, 512]: 139264 = 34 x 4 KiB per expert and projection, read in place.
  expect_only_that_byte_differs(
      {"--layers", "2", "--experts", "8", "--embd", "256", "--ffn", "512", "--type", "q8_0"},
      /*expert=*/5, /*at=*/1234);
}

// f32 [40, 33]: 5280 bytes per expert, an odd multiple of 32, so O_DIRECT reads land most
// experts away from the layer's offset and the daemon moves them: the inverted byte moves
// with them (first and last byte of an extent).
std::vector<std::string> unaligned_model() {
  return {"--layers", "2", "--experts", "8", "--embd", "40", "--ffn", "33", "--type", "f32"};
}

TEST_F(CorruptDaemon, FirstByteOfAnExpertMovedToTheLayersOffset) {
  expect_only_that_byte_differs(unaligned_model(), /*expert=*/3, /*at=*/0);
}

TEST_F(CorruptDaemon, LastByteOfAnExpertMovedToTheLayersOffset) {
  expect_only_that_byte_differs(unaligned_model(), /*expert=*/6, /*at=*/5279);
}

TEST_F(CorruptDaemon, ProductionMoepooldHasNoCorruptionFlag) {
  auto [rc, out] = run({bin("moepoold"), "--corrupt-file-offset", "100", "--print-config"});
  EXPECT_NE(rc, 0) << out;
  auto [rc2, out2] = run({bin("moepoold-corrupt"), "--print-config"});
  EXPECT_NE(rc2, 0) << "moepoold-corrupt requires --corrupt-file-offset: " << out2;
}

}  // namespace
}  // namespace moepool::testing
