#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "engine/sampler.h"

using namespace lmhost;

namespace {
std::vector<float> make_logits(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> l(n);
  for (auto& v : l) v = static_cast<float>(rng.uniform() * 10.0 - 5.0);
  return l;
}
}  // namespace

TEST(Sampler, SameSeedSameSequence) {
  const auto logits = make_logits(1000, 1);
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 42;
  Sampler a(p), b(p);
  std::vector<Token> sa, sb;
  for (int i = 0; i < 200; ++i) {
    sa.push_back(a.sample(logits));
    sb.push_back(b.sample(logits));
  }
  EXPECT_EQ(sa, sb);
  p.seed = 43;
  Sampler c(p);
  std::vector<Token> sc;
  for (int i = 0; i < 200; ++i) sc.push_back(c.sample(logits));
  EXPECT_NE(sa, sc) << "a different seed should give a different sequence";
}

TEST(Sampler, GreedyAndTopK1AreArgmax) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto logits = make_logits(500, seed);
    const Token best = argmax(logits);
    SamplingParams g;
    g.temperature = 0.0f;
    EXPECT_EQ(Sampler(g).sample(logits), best);
    SamplingParams k1;
    k1.temperature = 5.0f;
    k1.top_k = 1;
    k1.seed = seed;
    EXPECT_EQ(Sampler(k1).sample(logits), best);
  }
}

TEST(Sampler, TopKRestrictsToBestK) {
  const auto logits = make_logits(300, 7);
  std::vector<Token> order(300);
  for (int i = 0; i < 300; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](Token a, Token b) { return logits[a] > logits[b]; });
  const std::set<Token> best5(order.begin(), order.begin() + 5);
  SamplingParams p;
  p.temperature = 100.0f;  // nearly uniform among survivors
  p.top_k = 5;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 1;
  Sampler s(p);
  std::set<Token> seen;
  for (int i = 0; i < 2000; ++i) seen.insert(s.sample(logits));
  EXPECT_EQ(seen, best5);
}

TEST(Sampler, TopPAndMinPCut) {
  // probabilities ~ 0.5, 0.25, 0.125, ... : top_p 0.7 keeps two tokens.
  std::vector<float> logits;
  for (int i = 0; i < 10; ++i) logits.push_back(-static_cast<float>(i) * std::log(2.0f));
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.min_p = 0.0f;
  p.top_p = 0.7f;
  p.seed = 3;
  Sampler s(p);
  std::set<Token> seen;
  for (int i = 0; i < 3000; ++i) seen.insert(s.sample(logits));
  EXPECT_EQ(seen, (std::set<Token>{0, 1}));

  p.top_p = 1.0f;
  p.min_p = 0.2f;  // keeps p >= 0.1: tokens 0,1,2 (0.5, 0.25, 0.125)
  Sampler m(p);
  seen.clear();
  for (int i = 0; i < 3000; ++i) seen.insert(m.sample(logits));
  EXPECT_EQ(seen, (std::set<Token>{0, 1, 2}));
}

TEST(Sampler, FrequenciesFollowSoftmax) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, -1.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 11;
  Sampler s(p);
  const int draws = 40000;
  std::map<Token, int> hits;
  for (int i = 0; i < draws; ++i) ++hits[s.sample(logits)];
  double z = 0;
  for (float l : logits) z += std::exp(l);
  for (Token t = 0; t < 4; ++t) {
    const double expect = std::exp(logits[t]) / z;
    EXPECT_NEAR(hits[t] / static_cast<double>(draws), expect, 0.01) << "token " << t;
  }
}

TEST(Sampler, PenaltiesDemoteRepeatedTokens) {
  std::vector<float> logits = {3.0f, 2.9f, 0.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.repeat_penalty = 1.5f;  // 3.0 / 1.5 = 2.0 < 2.9
  Sampler s(p);
  EXPECT_EQ(s.sample(logits), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(logits), 1);

  SamplingParams f;
  f.temperature = 0.0f;
  f.frequency_penalty = 0.05f;  // subtracted once per occurrence
  Sampler fs(f);
  fs.accept(0);
  EXPECT_EQ(fs.sample(logits), 0);  // 2.95 > 2.9
  fs.accept(0);
  fs.accept(0);
  EXPECT_EQ(fs.sample(logits), 1);  // 2.85 < 2.9
}

TEST(Sampler, PresenceAndWindow) {
  std::vector<float> logits = {3.0f, 2.9f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.presence_penalty = 0.5f;
  p.repeat_last_n = 2;
  Sampler s(p);
  s.accept(0);
  EXPECT_EQ(s.sample(logits), 1);
  s.accept(1);
  s.accept(1);  // token 0 leaves the window of 2
  EXPECT_EQ(s.sample(logits), 0);
}

TEST(Logprobs, TopAreNormalisedAndOrdered) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f};
  auto top = top_logprobs(logits, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].first, 1);
  EXPECT_EQ(top[1].first, 2);
  EXPECT_EQ(top[2].first, 0);
  double sum = 0;
  for (auto& [t, lp] : top) sum += std::exp(lp);
  EXPECT_NEAR(sum, 1.0, 1e-6);
  EXPECT_NEAR(token_logprob(logits, 1), top[0].second, 1e-6);
}

TEST(StopMatcher, HoldsBackPrefixesAndCuts) {
  StopMatcher m({"</s>", "STOP"});
  EXPECT_EQ(m.push("Hello <"), "Hello ");
  EXPECT_EQ(m.push("/"), "");
  EXPECT_EQ(m.push("x"), "</x");  // not a stop after all
  EXPECT_EQ(m.push(" ST"), " ");
  EXPECT_EQ(m.push("OP and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "STOP");
  EXPECT_EQ(m.push("later"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, EarliestStopWinsAndFlushReleases) {
  StopMatcher m({"bc", "abcd"});
  EXPECT_EQ(m.push("xabcd"), "x");  // both complete: the one that starts first
  EXPECT_EQ(m.matched(), "abcd");
  StopMatcher n({"END"});
  EXPECT_EQ(n.push("the EN"), "the ");
  EXPECT_FALSE(n.stopped());
  EXPECT_EQ(n.flush(), "EN");
}
