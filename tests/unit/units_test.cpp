#include "common/units.h"

#include <gtest/gtest.h>

namespace moepool {
namespace {

uint64_t parsed(const char* text) {
  auto r = parse_size(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().to_string();
  return r.ok() ? *r : 0;
}

void expect_rejected(const char* text, const char* needle) {
  auto r = parse_size(text);
  ASSERT_FALSE(r.ok()) << "'" << text << "' parsed as " << *r;
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find(needle), std::string::npos)
      << "'" << text << "': " << r.status().message();
}

TEST(Units, ParsesBinarySuffixes) {
  EXPECT_EQ(parsed("512M"), 512ull << 20);
  EXPECT_EQ(parsed("4G"), 4ull << 30);
  EXPECT_EQ(parsed("64K"), 64ull << 10);
  EXPECT_EQ(parsed("2T"), 2ull << 40);
  EXPECT_EQ(parsed("1P"), 1ull << 50);
  EXPECT_EQ(parsed("64k"), 64ull << 10);
  EXPECT_EQ(parsed("64KiB"), 64ull << 10);
  EXPECT_EQ(parsed("64KB"), 64ull << 10);
  EXPECT_EQ(parsed("3 GiB"), 3ull << 30);
  EXPECT_EQ(parsed(" 8M "), 8ull << 20);
}

TEST(Units, ParsesPlainBytes) {
  EXPECT_EQ(parsed("1024"), 1024u);
  EXPECT_EQ(parsed("0"), 0u);
  EXPECT_EQ(parsed("17B"), 17u);
  EXPECT_EQ(parsed("18446744073709551615"), UINT64_MAX);
}

TEST(Units, ParsesFractionsRoundingDown) {
  EXPECT_EQ(parsed("1.5G"), 3ull << 29);
  EXPECT_EQ(parsed("0.5K"), 512u);
  EXPECT_EQ(parsed("1.25M"), 1310720u);
  EXPECT_EQ(parsed("1.1K"), 1126u);  // 1126.4 rounds down
  EXPECT_EQ(parsed(".5M"), 512u << 10);
}

TEST(Units, RejectsGarbage) {
  expect_rejected("", "empty");
  expect_rejected("   ", "empty");
  expect_rejected("G", "expected a number");
  expect_rejected("abc", "expected a number");
  expect_rejected("12X", "unknown suffix 'X'");
  expect_rejected("12Mx", "unknown suffix");
  expect_rejected("1.2.3M", "unknown suffix");
  expect_rejected("1.5", "whole number");
  expect_rejected("4 G G", "unknown suffix");
}

TEST(Units, RejectsNegativeAndSigned) {
  expect_rejected("-1", "unsigned");
  expect_rejected("-4G", "unsigned");
  expect_rejected("+4G", "unsigned");
}

TEST(Units, RejectsOverflow) {
  expect_rejected("18446744073709551616", "2^64-1");
  expect_rejected("99999999999999999999999999999999999999999", "2^64-1");
  expect_rejected("16E", "unknown suffix");  // exa is not offered
  expect_rejected("16384P", "2^64-1");
  expect_rejected("17179869184G", "2^64-1");
  EXPECT_EQ(parsed("16383P"), 16383ull << 50);
}

TEST(Units, FormatsBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.00 KiB");
  EXPECT_EQ(format_bytes(64ull << 10), "64.00 KiB");
  EXPECT_EQ(format_bytes(512ull << 20), "512.00 MiB");
  EXPECT_EQ(format_bytes(3ull << 29), "1.50 GiB");
  EXPECT_EQ(format_bytes(5ull << 40), "5.00 TiB");
  EXPECT_EQ(format_bytes(UINT64_MAX), "16.00 EiB");
}

TEST(Units, FormatRoundTripsThroughParse) {
  for (uint64_t v : {1ull << 10, 3ull << 29, 7ull << 40}) {
    std::string s = format_bytes(v);
    EXPECT_EQ(parsed(s.c_str()), v) << s;
  }
}

}  // namespace
}  // namespace moepool
