// libmoepool's checks of what the daemon sends: leases must lie inside the pool, and gRPC
// errors keep their meaning and message.
#include "client/src/rpc_convert.h"

#include <gtest/gtest.h>

#include <vector>

namespace moepool::rpc {
namespace {

constexpr uint64_t kPool = 1 << 20;

// A real pool-sized buffer: leases point into it.
const uint8_t* pool_buffer() {
  static std::vector<uint8_t> buf(kPool);
  return buf.data();
}

v1::Lease good_lease() {
  v1::Lease l;
  l.set_expert(5);
  l.set_slot_id(17);
  l.set_generation(3);
  l.set_slot_class(1);
  l.set_slot_index(2);
  l.set_stride(64 << 10);
  l.set_pool_offset(2 * (64 << 10));
  l.set_hit(true);
  auto* gate = l.add_projections();
  gate->set_kind(v1::PROJECTION_GATE);
  gate->set_offset(0);
  gate->set_bytes(20000);
  auto* down = l.add_projections();
  down->set_kind(v1::PROJECTION_DOWN);
  down->set_offset(40960);
  down->set_bytes(64 * 1024 - 40960);  // ends exactly at the stride
  return l;
}

void expect_outside(const v1::Lease& l, const char* needle) {
  const uint8_t* pool = pool_buffer();
  auto r = to_lease(l, pool, kPool);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInternal);
  EXPECT_NE(r.status().message().find("daemon sent a lease outside the pool"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

TEST(RpcConvert, LeasePointsIntoThePool) {
  const uint8_t* pool = pool_buffer();
  auto r = to_lease(good_lease(), pool, kPool);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->expert, 5u);
  EXPECT_EQ(r->slot_id, 17u);
  EXPECT_EQ(r->generation, 3u);
  EXPECT_EQ(r->slot, pool + 2 * (64 << 10));
  EXPECT_TRUE(r->hit);
  ASSERT_EQ(r->projections.size(), 2u);
  EXPECT_EQ(r->projections[0].kind, Projection::kGate);
  EXPECT_EQ(r->projections[1].kind, Projection::kDown);
  EXPECT_EQ(r->projections[1].data, r->slot + 40960);
  EXPECT_EQ(r->projections[1].offset_in_slot, 40960u);
}

TEST(RpcConvert, RejectsSlotPastThePoolEnd) {
  v1::Lease l = good_lease();
  l.set_slot_index(kPool / (64 << 10));  // one past the last slot
  l.set_pool_offset(kPool);
  expect_outside(l, "exceeds the pool");
}

TEST(RpcConvert, RejectsOverflowingOffsets) {
  v1::Lease l = good_lease();
  l.set_pool_offset(~uint64_t{0} - 10);
  expect_outside(l, "exceeds the pool");
  l = good_lease();
  l.mutable_projections(0)->set_offset(~uint64_t{0} - 5);
  expect_outside(l, "exceeds the stride");
}

TEST(RpcConvert, RejectsProjectionPastItsSlot) {
  v1::Lease l = good_lease();
  l.mutable_projections(1)->set_bytes(64 * 1024 - 40960 + 1);
  expect_outside(l, "exceeds the stride");
}

TEST(RpcConvert, RejectsZeroStrideAndInconsistentIndex) {
  v1::Lease l = good_lease();
  l.set_stride(0);
  expect_outside(l, "stride is 0");
  l = good_lease();
  l.set_slot_index(3);  // pool_offset says 2
  expect_outside(l, "!= pool offset");
}

TEST(RpcConvert, RejectsUnknownProjectionKind) {
  const uint8_t* pool = pool_buffer();
  v1::Lease l = good_lease();
  l.mutable_projections(0)->set_kind(static_cast<v1::ProjectionKind>(42));
  auto r = to_lease(l, pool, kPool);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("42"), std::string::npos);
}

TEST(RpcConvert, GrpcCodesKeepTheirMeaningAndMessage) {
  struct Case {
    grpc::StatusCode in;
    Code out;
  } cases[] = {
      {grpc::StatusCode::INVALID_ARGUMENT, Code::kInvalidArgument},
      {grpc::StatusCode::NOT_FOUND, Code::kNotFound},
      {grpc::StatusCode::PERMISSION_DENIED, Code::kPermissionDenied},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, Code::kResourceExhausted},
      {grpc::StatusCode::UNAVAILABLE, Code::kUnavailable},
      {grpc::StatusCode::FAILED_PRECONDITION, Code::kFailedPrecondition},
      {grpc::StatusCode::DEADLINE_EXCEEDED, Code::kUnavailable},
      {grpc::StatusCode::INTERNAL, Code::kInternal},
      {grpc::StatusCode::UNIMPLEMENTED, Code::kInternal},
  };
  for (const Case& c : cases) {
    Status st = from_grpc(grpc::Status(c.in, "layer 7 has 8 experts"), "Acquire");
    EXPECT_EQ(st.code(), c.out) << static_cast<int>(c.in);
    EXPECT_EQ(st.message(), "Acquire: layer 7 has 8 experts");
  }
  EXPECT_TRUE(from_grpc(grpc::Status::OK, "Acquire").ok());
  EXPECT_EQ(from_grpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, ""), "Stats").message(),
            "Stats: UNAVAILABLE");
}

TEST(RpcConvert, ModelInfoKeepsLayersAndProjections) {
  v1::OpenModelReply r;
  r.set_model_id(0xabcdef);
  r.set_name("m");
  r.set_architecture("qwen2moe");
  r.set_block_count(4);
  auto* layer = r.add_layers();
  layer->set_layer(3);
  layer->set_n_experts(8);
  layer->set_expert_bytes(300);
  auto* p = layer->add_projections();
  p->set_kind(v1::PROJECTION_GATE_UP);
  p->set_ggml_type(8);
  p->add_ne(256);
  p->add_ne(512);
  p->add_ne(8);
  p->set_expert_bytes(300);
  auto info = to_model_info(r);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->id, 0xabcdefu);
  ASSERT_EQ(info->layers.size(), 1u);
  EXPECT_EQ(info->layers[0].layer, 3u);
  ASSERT_EQ(info->layers[0].projections.size(), 1u);
  EXPECT_EQ(info->layers[0].projections[0].kind, Projection::kGateUp);
  EXPECT_EQ(info->layers[0].projections[0].ne, (std::vector<uint64_t>{256, 512, 8}));
}

}  // namespace
}  // namespace moepool::rpc
