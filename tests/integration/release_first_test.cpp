// Acquire's release_first: a worker hands back the previous layer's leases in the same
// round trip as the next acquire (what the llama.cpp adapter does every layer).
#include "tests/integration/daemon_harness.h"

namespace moepool::testing {
namespace {

std::vector<std::string> small_model() {
  return {"--layers", "4", "--experts", "16", "--embd", "256", "--ffn", "512", "--type", "q8_0"};
}

class ReleaseFirstTest : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    path_ = synth("m.gguf", small_model());
    start_daemon("16M");
    client_ = connect();
    ASSERT_TRUE(client_);
    auto info = client_->open_model(path_);
    ASSERT_TRUE(info.ok()) << info.status().to_string();
    model_ = info->id;
  }

  uint64_t pinned() {
    auto st = client_->stats();
    EXPECT_TRUE(st.ok());
    return st.ok() ? st->pinned_bytes : UINT64_MAX;
  }

  std::string path_;
  std::unique_ptr<Client> client_;
  uint64_t model_ = 0;
};

TEST_F(ReleaseFirstTest, PreviousLayersPinsGoBackWithTheNextAcquire) {
  std::vector<uint32_t> a = {0, 1, 2}, b = {3, 4};
  auto first = client_->acquire(model_, 0, a);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  uint64_t per_expert = pinned() / a.size();
  ASSERT_GT(per_expert, 0u);
  auto second = client_->acquire(model_, 1, b, *first);
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  EXPECT_EQ(pinned(), per_expert * b.size()) << "layer 0's pins must be gone, layer 1's held";
  ASSERT_TRUE(client_->release(*second).ok());
  EXPECT_EQ(pinned(), 0u);
}

TEST_F(ReleaseFirstTest, AStaleLeaseInReleaseFirstFailsAndAcquiresNothing) {
  std::vector<uint32_t> a = {0, 1};
  auto first = client_->acquire(model_, 0, a);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_TRUE(client_->release(*first).ok());
  // Handing back leases that are no longer held is an error, and no new pins appear.
  auto again = client_->acquire(model_, 1, std::vector<uint32_t>{5}, *first);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("release_first"), std::string::npos)
      << again.status().to_string();
  EXPECT_EQ(pinned(), 0u);
  // The daemon keeps serving.
  auto ok = client_->acquire(model_, 1, std::vector<uint32_t>{5});
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_TRUE(client_->release(*ok).ok());
}

}  // namespace
}  // namespace moepool::testing
