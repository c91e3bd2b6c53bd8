// Token sampling: penalties, then top-k, top-p, min-p, temperature and a
// seeded draw (the order llama.cpp and Ollama use). temperature <= 0 is
// greedy. Same seed + same logits = same token sequence.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace lmhost {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;             // <= 0: off
  float top_p = 0.95f;        // >= 1: off
  float min_p = 0.05f;        // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off (llama.cpp style: divide positive logits, multiply negative)
  int repeat_last_n = 64;       // window for all penalties; -1: whole history
  float presence_penalty = 0.0f;   // OpenAI: subtract once if the token occurred
  float frequency_penalty = 0.0f;  // OpenAI: subtract per occurrence
  uint64_t seed = 0;            // 0 is a valid seed; callers pick a random one when the user gave none
};

// A small, portable PRNG (splitmix64-seeded xoshiro256**): identical streams
// on every platform and standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1)

 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks the next token from one row of logits (not modified).
  Token sample(std::span<const float> logits);
  // Records a token in the history that penalties look at (prompt tokens
  // too, if the caller wants them penalised, as llama.cpp does).
  void accept(Token t);
  const SamplingParams& params() const { return params_; }

 private:
  void apply_penalties(std::vector<std::pair<float, Token>>& cand) const;
  SamplingParams params_;
  Rng rng_;
  std::deque<Token> history_;
  std::unordered_map<Token, int> counts_;  // occurrences within the window
  std::vector<std::pair<float, Token>> cand_;  // scratch
  std::vector<float> weights_;                 // scratch
  Token draw_sorted(double all);
};

// Index of the largest logit (lowest id on ties).
Token argmax(std::span<const float> logits);

// log-softmax of the k most likely tokens: [(token, logprob)], best first.
std::vector<std::pair<Token, float>> top_logprobs(std::span<const float> logits, int k);
float token_logprob(std::span<const float> logits, Token t);

// Finds stop strings in streamed text. push() returns the text that is safe
// to emit now: anything that might still become a stop string is held back.
// After a stop string is seen, stopped() is true and the stop string and
// everything after it are dropped.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  std::string push(std::string_view text);
  std::string flush();  // end of generation: release what was held back
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace lmhost
