// upstream.backends in YAML: compact strings and {url, kind, key, prefix, models}
// maps (turned into the compact form --upstream takes), upstream.balance.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "config/config.h"

using namespace lmhost::config;

namespace {

std::string write_yaml(const std::string& text) {
  static int n = 0;
  const auto p = std::filesystem::temp_directory_path() /
                 ("lmhost-config-upstream-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".yaml");
  std::ofstream(p) << text;
  return p.string();
}

}  // namespace

TEST(ConfigUpstream, BackendsAsMapsAndStrings) {
  const std::string f = write_yaml(
      "upstream:\n"
      "  balance: least_outstanding\n"
      "  backends:\n"
      "    - ollama:http://a:11434\n"
      "    - {url: http://b:11434, prefix: b-}\n"
      "    - url: https://api.example.com/v1\n"
      "      kind: openai\n"
      "      key: sk-secret\n"
      "      models: {chat: gpt-4o-mini, embed: text-embedding-3-small}\n"
      "    - {url: http://c:8080, kind: openai, models: [m1, local=m2]}\n");
  LoadInput in;
  in.file = f;
  Config c = load(in);
  EXPECT_EQ(c.upstream_balance, "least_outstanding");
  ASSERT_EQ(c.upstreams.size(), 4u);
  EXPECT_EQ(c.upstreams[0], "ollama:http://a:11434");
  EXPECT_EQ(c.upstreams[1], "ollama:http://b:11434?prefix=b-");
  EXPECT_EQ(c.upstreams[2],
            "openai:https://api.example.com/v1?models=chat=gpt-4o-mini+embed=text-embedding-3-small#sk-secret");
  EXPECT_EQ(c.upstreams[3], "openai:http://c:8080?models=m1+local=m2");
  // The key never printed.
  const std::string y = to_yaml(c, true);
  EXPECT_EQ(y.find("sk-secret"), std::string::npos) << y;
  EXPECT_NE(y.find("embed=text-embedding-3-small#<redacted>"), std::string::npos) << y;
  std::filesystem::remove(f);
}

TEST(ConfigUpstream, BadEntriesAreNamed) {
  const std::string f = write_yaml(
      "upstream:\n"
      "  balance: random\n"
      "  backends:\n"
      "    - {kind: gopher, colour: red}\n"
      "    - {url: http://x, prefix: \"a+b\"}\n");
  const auto problems = check_file(f);
  std::string all;
  for (const auto& p : problems) all += p + "\n";
  EXPECT_NE(all.find("upstream.balance: expected one of round_robin,least_outstanding"), std::string::npos) << all;
  EXPECT_NE(all.find("upstream.backends: an upstream needs a url"), std::string::npos) << all;
  EXPECT_NE(all.find("upstream.backends.kind: expected ollama or openai"), std::string::npos) << all;
  EXPECT_NE(all.find("upstream.backends.colour: unknown key"), std::string::npos) << all;
  EXPECT_NE(all.find("upstream.backends.prefix: holds one of"), std::string::npos) << all;
  std::filesystem::remove(f);
}
