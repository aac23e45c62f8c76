// Pool: segments, slot classes at a fixed stride, segment ownership.
#include "daemon/pool.h"

#include <gtest/gtest.h>

#include <sys/mman.h>

#include <set>

namespace moepool {
namespace {

std::unique_ptr<Pool> make_pool(uint64_t pool_bytes, uint64_t segment_bytes) {
  auto pool = Pool::create({pool_bytes, segment_bytes, "off"});
  EXPECT_TRUE(pool.ok()) << pool.status().to_string();
  return std::move(pool).value();
}

TEST(Pool, NeverExceedsConfiguredSize) {
  auto pool = make_pool(1000 * 1024, 256 * 1024);  // not a multiple: rounds down
  EXPECT_EQ(pool->segment_count(), 3u);
  EXPECT_EQ(pool->pool_bytes(), 3u * 256 * 1024);
  EXPECT_LE(pool->pool_bytes(), 1000u * 1024);
  ControlHeader* h = pool->control();
  EXPECT_EQ(h->magic, kControlMagic);
  EXPECT_EQ(h->version, kLayoutVersion);
  EXPECT_EQ(h->pool_bytes, pool->pool_bytes());
}

TEST(Pool, RejectsPoolSmallerThanASegment) {
  auto pool = Pool::create({64 * 1024, 256 * 1024, "off"});
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), Code::kInvalidArgument);
}

TEST(Pool, SlotsSitAtMultiplesOfTheStrideInsideThePool) {
  auto pool = make_pool(1 << 20, 256 * 1024);
  auto c = pool->class_for(96 * 1024);
  ASSERT_TRUE(c.ok());
  std::set<uint64_t> offsets;
  while (auto slot = pool->take_free_slot(*c)) {
    uint64_t off = pool->slot_offset(*slot);
    EXPECT_EQ(off % (96 * 1024), 0u);
    EXPECT_LE(off + 96 * 1024, pool->pool_bytes());
    EXPECT_TRUE(offsets.insert(off).second) << "slot handed out twice";
  }
  // One class owning the whole pool uses the slots straddling segment boundaries too.
  EXPECT_EQ(offsets.size(), (1u << 20) / (96 * 1024));
  EXPECT_EQ(offsets.size(), pool->capacity_slots(*c));
}

TEST(Pool, StrideLargerThanASegmentIsRefused) {
  auto pool = make_pool(1 << 20, 256 * 1024);
  auto c = pool->class_for(512 * 1024);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kResourceExhausted);
  EXPECT_NE(c.status().message().find("segment"), std::string::npos);
}

TEST(Pool, SameStrideSameClass) {
  auto pool = make_pool(1 << 20, 256 * 1024);
  auto a = pool->class_for(64 * 1024), b = pool->class_for(64 * 1024), d = pool->class_for(128 * 1024);
  ASSERT_TRUE(a.ok() && b.ok() && d.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *d);
  EXPECT_EQ(pool->control()->classes[*d].stride, 128u * 1024);
  EXPECT_EQ(pool->control()->classes[*d].active.load(), 1u);
}

TEST(Pool, SegmentsMoveBetweenClassesOnlyWhenReleased) {
  auto pool = make_pool(1 << 20, 256 * 1024);
  auto a = *pool->class_for(64 * 1024);
  auto b = *pool->class_for(128 * 1024);
  std::vector<uint64_t> taken;
  while (auto s = pool->take_free_slot(a)) taken.push_back(*s);
  EXPECT_EQ(taken.size(), 16u);
  EXPECT_EQ(pool->free_segments(), 0u);
  EXPECT_FALSE(pool->take_free_slot(b).has_value()) << "b must not get memory a holds";

  // Empty segment 2 and hand it over.
  std::vector<uint64_t> in_seg = pool->slots_touching(2);
  EXPECT_EQ(in_seg.size(), 4u);
  for (uint64_t s : in_seg) pool->return_slot(s);
  pool->release_segment(2);
  EXPECT_EQ(pool->segment_owner(2), Pool::kNoClass);
  auto s = pool->take_free_slot(b);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(pool->segment_owner(2), b);
  uint64_t off = pool->slot_offset(*s);
  EXPECT_GE(off, 2u * 256 * 1024);
  EXPECT_LE(off + 128 * 1024, 3u * 256 * 1024);
}

TEST(Pool, WorkersCannotMapSegmentsWritable) {
  auto pool = make_pool(1 << 20, 256 * 1024);
  int fd = pool->segment_fds()[0];
  void* rw = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  EXPECT_EQ(rw, MAP_FAILED) << "segments are sealed against new writable mappings";
  void* ro = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(ro, MAP_FAILED);
  pool->base()[100] = 42;  // the daemon's own mapping stays writable
  EXPECT_EQ(static_cast<uint8_t*>(ro)[100], 42);
  munmap(ro, 4096);
}

}  // namespace
}  // namespace moepool
