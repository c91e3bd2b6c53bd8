// Scheduler behaviour over a deterministic fake model: batching must not
// change results, stop/length/cancel/timeout end requests properly, the queue
// is bounded, long prompts are chunked, cached prefixes are reused.
#include <gtest/gtest.h>

#include <thread>

#include "engine/scheduler.h"
#include "unit/engine_sched_fake.h"

using namespace lmhost;
using namespace lmhost::testing;
using namespace std::chrono_literals;

namespace {

std::vector<Token> bytes(const std::string& s) { return std::vector<Token>(s.begin(), s.end()); }

GenerateRequest greedy(const std::string& prompt, int max_tokens) {
  GenerateRequest r;
  r.prompt = bytes(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = max_tokens;
  return r;
}

struct Fixture {
  ByteTokenizer tok;
  FakeBackend* backend = nullptr;
  std::unique_ptr<Scheduler> sched;
  Fixture(int n_seq, int n_ctx, SchedulerOptions o = {}, std::chrono::microseconds delay = 0us, bool eos_dot = false) {
    auto b = std::make_unique<FakeBackend>(n_seq, n_ctx, delay, eos_dot);
    backend = b.get();
    sched = std::make_unique<Scheduler>(std::move(b), tok, o);
  }
};

}  // namespace

TEST(EngineSched, GreedyMatchesOracleAlone) {
  Fixture f(2, 256);
  auto h = f.sched->submit(greedy("Hello there", 20));
  auto r = collect(*h);
  EXPECT_EQ(r.finish, FinishReason::Length);
  EXPECT_EQ(r.text, fake_greedy(bytes("Hello there"), 20));
  EXPECT_EQ(r.stats.completion_tokens, 20);
  EXPECT_EQ(r.stats.prompt_tokens, 11);
  EXPECT_EQ(r.tokens.size(), 20u);
}

TEST(EngineSched, ConcurrentRequestsBatchTogetherWithSameResults) {
  Fixture f(4, 512, {}, 300us);
  std::vector<std::string> prompts = {"alpha", "a much longer prompt about beta", "gamma gamma", "d", "epsilon",
                                      "zeta zeta zeta", "eta", "theta!"};
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (auto& p : prompts) hs.push_back(f.sched->submit(greedy(p, 30)));
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = collect(*hs[i]);
    EXPECT_EQ(r.finish, FinishReason::Length) << i;
    EXPECT_EQ(r.text, fake_greedy(bytes(prompts[i]), 30)) << prompts[i];
  }
  EXPECT_GE(f.backend->max_seqs_in_batch.load(), 2) << "sequences were not decoded together";
  auto st = f.sched->stats();
  EXPECT_EQ(st.active, 0);
  EXPECT_EQ(st.queued, 0);
  EXPECT_EQ(st.requests_total, prompts.size());
}

TEST(EngineSched, StopStringEndsAndIsExcluded) {
  Fixture f(1, 256);
  const std::string full = fake_greedy(bytes("xyz"), 40);
  ASSERT_GE(full.size(), 10u);
  const std::string stop = full.substr(5, 3);
  auto req = greedy("xyz", 40);
  req.stop = {stop};
  auto r = collect(*f.sched->submit(req));
  EXPECT_EQ(r.finish, FinishReason::Stop);
  EXPECT_EQ(r.text, full.substr(0, full.find(stop)));
}

TEST(EngineSched, EndOfGenerationTokenStops) {
  Fixture f(1, 256, {}, 0us, /*eos_dot=*/true);
  auto r = collect(*f.sched->submit(greedy("ends here.", 10)));
  EXPECT_EQ(r.finish, FinishReason::Stop);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.stats.completion_tokens, 0);
}

TEST(EngineSched, ContextFullEndsWithLength) {
  Fixture f(1, 32);
  auto r = collect(*f.sched->submit(greedy("0123456789", -1)));
  EXPECT_EQ(r.finish, FinishReason::Length);
  EXPECT_EQ(r.stats.completion_tokens, 32 - 10 + 1);  // the last one is sampled, never fed
}

TEST(EngineSched, RejectsPromptLongerThanContext) {
  Fixture f(1, 16);
  try {
    f.sched->submit(greedy(std::string(40, 'a'), 4));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("context"), std::string::npos);
  }
  EXPECT_THROW(f.sched->submit(greedy("", 4)), Error);
}

TEST(EngineSched, CancelFreesSlotWithinAStep) {
  Fixture f(1, 4096, {}, 2000us);
  auto h = f.sched->submit(greedy("long one", 2000));
  std::vector<TokenEvent> evs;
  while (evs.empty()) h->wait_pop(evs, 100ms);  // it is running
  const int steps_before = f.backend->steps.load();
  h->cancel();
  auto r = collect(*h);
  EXPECT_EQ(r.finish, FinishReason::Cancelled);
  EXPECT_LE(f.backend->steps.load() - steps_before, 2);
  // The slot is free again: a new request runs.
  auto r2 = collect(*f.sched->submit(greedy("next", 3)));
  EXPECT_EQ(r2.finish, FinishReason::Length);
  EXPECT_EQ(f.sched->stats().active, 0);
}

TEST(EngineSched, FullQueueRejectsAtOnceWith503) {
  SchedulerOptions o;
  o.max_queue = 2;
  Fixture f(1, 4096, o, 1000us);
  auto running = f.sched->submit(greedy("runs", 5000));
  std::vector<TokenEvent> evs;
  while (evs.empty()) running->wait_pop(evs, 100ms);
  auto q1 = f.sched->submit(greedy("waits 1", 2));
  auto q2 = f.sched->submit(greedy("waits 2", 2));
  const auto t0 = SteadyClock::now();
  try {
    f.sched->submit(greedy("rejected", 2));
    FAIL() << "expected 503";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), 503);
  }
  EXPECT_LT(SteadyClock::now() - t0, 50ms);
  EXPECT_EQ(f.sched->stats().rejected_total, 1u);
  running->cancel();
  EXPECT_EQ(collect(*q1).finish, FinishReason::Length);
  EXPECT_EQ(collect(*q2).finish, FinishReason::Length);
}

TEST(EngineSched, CancelWhileQueued) {
  Fixture f(1, 4096, {}, 1000us);
  auto running = f.sched->submit(greedy("runs", 5000));
  auto queued = f.sched->submit(greedy("waits", 5));
  queued->cancel();
  running->cancel();
  EXPECT_EQ(collect(*queued).finish, FinishReason::Cancelled);
  EXPECT_EQ(collect(*running).finish, FinishReason::Cancelled);
}

TEST(EngineSched, DeadlineEndsWithTimeout) {
  Fixture f(1, 4096, {}, 1000us);
  auto req = greedy("slow", 100000);
  req.deadline = SteadyClock::now() + 60ms;
  auto r = collect(*f.sched->submit(req));
  EXPECT_EQ(r.finish, FinishReason::Timeout);
  EXPECT_GT(r.stats.completion_tokens, 0);
  EXPECT_EQ(r.text, fake_greedy(bytes("slow"), r.stats.completion_tokens));
}

TEST(EngineSched, LongPromptIsChunkedWhileOthersDecode) {
  SchedulerOptions o;
  o.chunk = 64;
  Fixture f(2, 4096, o, 200us);
  auto a = f.sched->submit(greedy("short", 200));
  std::vector<TokenEvent> evs;
  while (evs.empty()) a->wait_pop(evs, 100ms);
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "some words ";
  auto b = f.sched->submit(greedy(long_prompt, 5));
  auto rb = collect(*b);
  auto ra = collect(*a);
  std::string first;  // wait_pop may have taken several events already
  for (const auto& e : evs) first += e.text;
  ra.text = first + ra.text;
  EXPECT_EQ(rb.text, fake_greedy(bytes(long_prompt), 5));
  EXPECT_EQ(ra.text, fake_greedy(bytes("short"), 200));
  EXPECT_LE(f.backend->max_batch.load(), 64 + 1);
}

TEST(EngineSched, PrefixIsReusedAndResultsUnchanged) {
  Fixture f(2, 4096);
  const std::string turn1 = "User: hi\nAssistant:";
  auto r1 = collect(*f.sched->submit(greedy(turn1, 12)));
  const std::string turn2 = turn1 + r1.text + "\nUser: more\nAssistant:";
  auto r2 = collect(*f.sched->submit(greedy(turn2, 12)));
  EXPECT_GE(r2.stats.cached_tokens, static_cast<int>(turn1.size()));
  EXPECT_EQ(r2.text, fake_greedy(bytes(turn2), 12));
  // A different prompt in the same slot still computes correctly.
  auto r3 = collect(*f.sched->submit(greedy("User: other", 12)));
  EXPECT_EQ(r3.text, fake_greedy(bytes("User: other"), 12));
  // The identical prompt again: all but the last token reused.
  auto r4 = collect(*f.sched->submit(greedy(turn2, 12)));
  EXPECT_EQ(r4.stats.cached_tokens, static_cast<int>(turn2.size()) - 1);
  EXPECT_EQ(r4.text, r2.text);
}

TEST(EngineSched, LogprobsReported) {
  Fixture f(1, 256);
  auto req = greedy("lp", 3);
  req.logprobs = true;
  req.top_logprobs = 3;
  auto r = collect(*f.sched->submit(req), /*keep_events=*/true);
  ASSERT_EQ(r.token_events.size(), 3u);
  for (auto& e : r.token_events) {
    EXPECT_EQ(e.chosen.token, e.token);
    EXPECT_LE(e.chosen.logprob, 0.0f);
    ASSERT_EQ(e.top.size(), 3u);
    EXPECT_EQ(e.top[0].token, e.token);  // greedy picks the best
    EXPECT_GE(e.top[0].logprob, e.top[1].logprob);
  }
}

TEST(EngineSched, SeededSamplingIsReproducible) {
  Fixture f(2, 256);
  auto req = greedy("seeded", 20);
  req.sampling.temperature = 1.5f;
  req.sampling.top_k = 0;
  req.sampling.top_p = 1.0f;
  req.sampling.min_p = 0.0f;
  req.sampling.seed = 1234;
  auto a = collect(*f.sched->submit(req));
  auto b = collect(*f.sched->submit(req));
  EXPECT_EQ(a.text, b.text);
}

TEST(EngineSched, StopWithRequestsInFlight) {
  Fixture f(1, 4096, {}, 1000us);
  auto a = f.sched->submit(greedy("a", 100000));
  auto b = f.sched->submit(greedy("b", 10));
  f.sched->stop();
  EXPECT_EQ(collect(*a).finish, FinishReason::Cancelled);
  EXPECT_EQ(collect(*b).finish, FinishReason::Cancelled);
  EXPECT_THROW(f.sched->submit(greedy("c", 1)), Error);
}
