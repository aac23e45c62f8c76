// moepoolctl's hand-written JSON: escaping and structure.
#include "common/json_writer.h"

#include <gtest/gtest.h>

#include <limits>

namespace moepool::ctl {
namespace {

TEST(JsonWriter, QuotesAndEscapesStrings) {
  EXPECT_EQ(JsonWriter::quote("plain"), "\"plain\"");
  EXPECT_EQ(JsonWriter::quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonWriter::quote("t\tn\nr\rb\bf\f"), "\"t\\tn\\nr\\rb\\bf\\f\"");
  EXPECT_EQ(JsonWriter::quote(std::string("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(JsonWriter::quote(std::string("nul\0x", 5)), "\"nul\\u0000x\"");
}

TEST(JsonWriter, KeepsValidUtf8AndReplacesInvalidBytes) {
  EXPECT_EQ(JsonWriter::quote("Grüße 模型 🙂"), "\"Grüße 模型 🙂\"");
  EXPECT_EQ(JsonWriter::quote("a\xff"
                              "b"),
            "\"a\\ufffdb\"");                                                 // never a UTF-8 byte
  EXPECT_EQ(JsonWriter::quote("\xc3"), "\"\\ufffd\"");                        // truncated sequence
  EXPECT_EQ(JsonWriter::quote("\xc0\xaf"), "\"\\ufffd\\ufffd\"");             // overlong '/'
  EXPECT_EQ(JsonWriter::quote("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");  // surrogate
  EXPECT_EQ(JsonWriter::quote("\xf4\x90\x80\x80"),
            "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  // > U+10FFFF
}

TEST(JsonWriter, WritesNestedObjectsAndArrays) {
  JsonWriter w;
  w.begin_object();
  w.field("n", uint64_t{18446744073709551615ull});
  w.field("s", "x");
  w.field("b", true);
  w.key("list");
  w.begin_array();
  w.begin_object();
  w.field("id", "00ff");
  w.end_object();
  w.begin_object();
  w.end_object();
  w.value(uint32_t{7});
  w.end_array();
  w.key("empty");
  w.begin_array();
  w.end_array();
  w.end_object();
  EXPECT_EQ(w.str(),
            "{\"n\": 18446744073709551615, \"s\": \"x\", \"b\": true, \"list\": [{\"id\": "
            "\"00ff\"}, {}, 7], \"empty\": []}");
}

TEST(JsonWriter, NonFiniteDoublesAreNull) {
  JsonWriter w;
  w.begin_array();
  w.value(0.5);
  w.value(std::numeric_limits<double>::quiet_NaN());
  w.value(std::numeric_limits<double>::infinity());
  w.end_array();
  EXPECT_EQ(w.str(), "[0.5, null, null]");
}

}  // namespace
}  // namespace moepool::ctl
