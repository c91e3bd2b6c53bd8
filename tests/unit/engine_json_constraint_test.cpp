// The JSON grammar state machine behind format "json": valid prefixes are
// accepted, invalid bytes rejected, completion detected, whitespace bounded.
#include <gtest/gtest.h>

#include "engine/json_constraint.h"

using lmhost::JsonConstraint;

namespace {
bool valid_prefix(std::string_view s, bool object_only = true) { return JsonConstraint(object_only).accepts(s); }
bool complete(std::string_view s, bool object_only = true) {
  JsonConstraint c(object_only);
  if (!c.accepts(s)) return false;
  c.advance(s);
  return c.complete();
}
}  // namespace

TEST(JsonConstraint, ValidDocumentsCompleteAndEveryPrefixIsAccepted) {
  const char* docs[] = {
      "{}", " {\n}", "{\"a\":1}", "{\"a\": [1, 2.5, -3e+10, 0, -0.0e-1, 1E5]}",
      "{\"s\":\"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"}", "{\"t\":true,\"f\":false,\"n\":null}",
      "{\"nested\":{\"a\":[{\"b\":[[],{}]}],\"c\":\"\"}}", "{\"utf8\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"}",
      "{\"a\" : [ 1 , { } ] }"};
  for (const char* d : docs) {
    std::string s = d;
    for (size_t i = 0; i <= s.size(); ++i) EXPECT_TRUE(valid_prefix(s.substr(0, i))) << s << " prefix " << i;
    EXPECT_TRUE(complete(s)) << s;
    // Every document ends with its closing '}': no strict prefix is complete.
    for (size_t i = 0; i < s.size(); ++i) EXPECT_FALSE(complete(s.substr(0, i))) << s << " prefix " << i;
  }
}

TEST(JsonConstraint, InvalidBytesAreRejected) {
  const char* bad[] = {"[", "\"a\"", "1", "true", "x", "{a", "{\"a\" 1", "{\"a\":}", "{\"a\":1,}", "{,", "{\"a\":01",
                       "{\"a\":1.}", "{\"a\":1.e", "{\"a\":-}", "{\"a\":+1", "{\"a\":tru}", "{\"a\":nul1",
                       "{\"a\":\"\\x\"", "{\"a\":\"\\u12G\"", "{\"a\":\"\n\"", "{\"a\":[1}", "{\"a\":{]",
                       "{}}", "{} ", "{}x", "{\"a\":1e}", "{\"a\":\"\xc0\xaf\"", "{\"a\":\"\xed\xa0\x80\"",
                       "{\"a\":\"\xf5\"", "{\"a\":\"\xe2\x82\"}", "{\"a\":[1 2]}", "{\"a\":\"b\":1}"};
  for (const char* b : bad) EXPECT_FALSE(valid_prefix(b)) << b;
}

TEST(JsonConstraint, ObjectOnlyIsOptional) {
  EXPECT_TRUE(valid_prefix("[1, \"a\"]", false));
  EXPECT_TRUE(complete("[1, \"a\"]", false));
  EXPECT_TRUE(complete("\"s\"", false));
  EXPECT_TRUE(complete("null", false));
  EXPECT_FALSE(valid_prefix("[", true));
}

TEST(JsonConstraint, IncrementalAdvanceAndDeadState) {
  JsonConstraint c;
  c.advance("{\"k\":");
  EXPECT_TRUE(c.accepts("[1"));
  EXPECT_FALSE(c.accepts("}"));
  c.advance(" \"v\\u00");
  EXPECT_TRUE(c.accepts("41\"}"));
  EXPECT_FALSE(c.accepts("4Z"));
  c.advance("41\"");
  EXPECT_FALSE(c.complete());
  c.advance("}");
  EXPECT_TRUE(c.complete());
  EXPECT_FALSE(c.accepts(" "));
  JsonConstraint d;
  d.advance("{x");
  EXPECT_TRUE(d.dead());
  EXPECT_FALSE(d.accepts("}"));
  EXPECT_FALSE(d.complete());
}

TEST(JsonConstraint, WhitespaceRunsAreBounded) {
  JsonConstraint c(true, 8);
  EXPECT_TRUE(c.accepts(std::string(8, ' ')));
  EXPECT_FALSE(c.accepts(std::string(9, ' ')));
  c.advance("{" + std::string(8, '\n'));
  EXPECT_FALSE(c.accepts(" "));
  EXPECT_TRUE(c.accepts("\"a\"" + std::string(8, ' ') + ":"));
  // Spaces inside strings are content, not whitespace runs.
  EXPECT_TRUE(c.accepts("\"" + std::string(100, ' ') + "\""));
}

TEST(JsonConstraint, CloseCostIsTheShortestCompletion) {
  auto cost = [](std::string_view s) {
    JsonConstraint c;
    c.advance(s);
    return c.close_cost();
  };
  EXPECT_EQ(cost(""), 2);                 // {}
  EXPECT_EQ(cost("{"), 1);                // }
  EXPECT_EQ(cost("{\"ab"), 4);            // ":0}
  EXPECT_EQ(cost("{\"a\""), 3);           // :0}
  EXPECT_EQ(cost("{\"a\":[[\"x"), 4);     // "]]}
  EXPECT_EQ(cost("{\"a\":[1,"), 3);       // 0]}
  EXPECT_EQ(cost("{\"a\":1,"), 5);        // "":0}
  EXPECT_EQ(cost("{\"a\":tr"), 3);        // ue}
  EXPECT_EQ(cost("{\"a\":\"\\u1"), 5);    // 234"}
  EXPECT_EQ(cost("{\"a\":\"\xe2"), 4);    // two continuation bytes, "}
  EXPECT_EQ(cost("{\"a\":1.5e"), 2);      // 0}
  EXPECT_EQ(cost("{}"), 0);
  JsonConstraint c;
  c.advance("{\"a\":");
  EXPECT_EQ(c.close_cost_after("\"b\"}"), 0);
  EXPECT_EQ(c.close_cost_after("}"), -1);
}
