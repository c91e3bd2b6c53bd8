#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "gateway/auth.h"
#include "util/error.h"

using namespace lmhost::gateway;

TEST(Auth, Sha256KnownAnswer) {
  EXPECT_EQ(to_hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto d = digest_from_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, sha256("abc"));
  EXPECT_FALSE(digest_from_hex("xyz"));
}

TEST(Auth, GeneratedKeysAreLongAndDistinct) {
  const std::string a = generate_key(), b = generate_key();
  EXPECT_EQ(a.rfind("lmh_", 0), 0u);
  EXPECT_EQ(a.size(), 4u + 43u);
  EXPECT_NE(a, b);
}

TEST(Auth, PresentedKeyFromBearerOrXApiKey) {
  std::string bearer = "Bearer  abc ", lower = "bearer xyz", basic = "Basic Zm9v", x = "k1";
  EXPECT_EQ(presented_key(&bearer, nullptr).value(), "abc");
  EXPECT_EQ(presented_key(&lower, nullptr).value(), "xyz");
  EXPECT_FALSE(presented_key(&basic, nullptr));
  EXPECT_EQ(presented_key(&basic, &x).value(), "k1");
  EXPECT_EQ(presented_key(nullptr, &x).value(), "k1");
  EXPECT_FALSE(presented_key(nullptr, nullptr));
}

TEST(Auth, StoreFindsByHashOnly) {
  KeyStore s;
  s.add_plain("alice", "key-a", {"demo"});
  s.add_plain("bob", "key-b");
  ASSERT_NE(s.find("key-a"), nullptr);
  EXPECT_EQ(s.find("key-a")->name, "alice");
  EXPECT_EQ(s.find("key-b")->name, "bob");
  EXPECT_EQ(s.find("key-c"), nullptr);
  EXPECT_EQ(s.find(""), nullptr);
  EXPECT_TRUE(s.find("key-a")->allows_model("demo"));
  EXPECT_TRUE(s.find("key-a")->allows_model("demo:latest"));
  EXPECT_FALSE(s.find("key-a")->allows_model("qwen2"));
  EXPECT_TRUE(s.find("key-b")->allows_model("anything"));
  EXPECT_THROW(s.add_plain("alice", "other"), lmhost::Error);
}

TEST(Auth, KeysFileRoundTripStoresOnlyHashes) {
  const auto p = std::filesystem::temp_directory_path() / ("lmhost-keys-" + std::to_string(::getpid()));
  std::filesystem::remove(p);
  const std::string key = generate_key();
  append_key_file(p.string(), "alice", sha256(key), {"demo", "qwen2"}, {60, 5, 1000});
  append_key_file(p.string(), "bob", sha256("bob-key"));
  EXPECT_THROW(append_key_file(p.string(), "alice", sha256("x")), lmhost::Error);
  EXPECT_THROW(append_key_file(p.string(), "has space", sha256("x")), lmhost::Error);
  std::ifstream in(p);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text.find(key), std::string::npos);  // never the key itself
  EXPECT_NE(text.find(to_hex(sha256(key))), std::string::npos);
  EXPECT_EQ(std::filesystem::status(p).permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none);
  KeyStore s;
  s.load_file(p.string());
  ASSERT_EQ(s.size(), 2u);
  const ApiKey* a = s.find(key);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->name, "alice");
  EXPECT_EQ(a->models, (std::vector<std::string>{"demo", "qwen2"}));
  EXPECT_EQ(a->limits.requests_per_minute, 60);
  EXPECT_EQ(a->limits.burst, 5);
  EXPECT_EQ(a->limits.tokens_per_minute, 1000);
  EXPECT_EQ(s.find("bob-key")->limits.requests_per_minute, -1);
  std::filesystem::remove(p);
}

TEST(Auth, BadKeysFileLineIsNamed) {
  const auto p = std::filesystem::temp_directory_path() / ("lmhost-badkeys-" + std::to_string(::getpid()));
  std::ofstream(p) << "# comment\n\nalice nothex\n";
  KeyStore s;
  try {
    s.load_file(p.string());
    FAIL();
  } catch (const lmhost::Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string() + ":3"), std::string::npos) << e.what();
  }
  std::filesystem::remove(p);
}
