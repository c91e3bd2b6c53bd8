#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lmhost {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

Token argmax(std::span<const float> logits) {
  Token best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = static_cast<Token>(i);
  return best;
}

namespace {
// log of the softmax denominator, computed stably.
double log_sum_exp(std::span<const float> logits) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  return mx + std::log(sum);
}
}  // namespace

std::vector<std::pair<Token, float>> top_logprobs(std::span<const float> logits, int k) {
  std::vector<std::pair<Token, float>> out;
  if (logits.empty() || k <= 0) return out;
  k = std::min<int>(k, static_cast<int>(logits.size()));
  std::vector<Token> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<Token>(i);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](Token a, Token b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const double lse = log_sum_exp(logits);
  for (int i = 0; i < k; ++i) out.emplace_back(ids[i], static_cast<float>(logits[ids[i]] - lse));
  return out;
}

float token_logprob(std::span<const float> logits, Token t) {
  return static_cast<float>(logits[t] - log_sum_exp(logits));
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

void Sampler::accept(Token t) {
  const int window = params_.repeat_last_n;
  if (window == 0) return;
  history_.push_back(t);
  ++counts_[t];
  if (window > 0 && static_cast<int>(history_.size()) > window) {
    const Token old = history_.front();
    history_.pop_front();
    if (--counts_[old] == 0) counts_.erase(old);
  }
}

void Sampler::apply_penalties(std::vector<std::pair<float, Token>>& cand) const {
  const bool any = params_.repeat_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                   params_.frequency_penalty != 0.0f;
  if (!any || counts_.empty()) return;
  for (const auto& [tok, n] : counts_) {
    if (tok < 0 || static_cast<size_t>(tok) >= cand.size()) continue;
    float& l = cand[tok].first;  // cand is still indexed by token id here
    if (params_.repeat_penalty != 1.0f) l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    l -= static_cast<float>(n) * params_.frequency_penalty + params_.presence_penalty;
  }
}

Token Sampler::sample(std::span<const float> logits) {
  const size_t n = logits.size();
  cand_.resize(n);
  for (size_t i = 0; i < n; ++i) cand_[i] = {logits[i], static_cast<Token>(i)};
  apply_penalties(cand_);

  auto better = [](const std::pair<float, Token>& a, const std::pair<float, Token>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (params_.temperature <= 0.0f) {
    return std::min_element(cand_.begin(), cand_.end(), better)->second;
  }

  // No cut at all (OpenAI's defaults: no top-k, top_p 1, min_p 0): draw from
  // the tempered softmax over the whole vocabulary directly, without sorting it
  // (a full sort of a 150k vocabulary cost ~10 ms a token; same distribution).
  const bool cut_k = params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n;
  if (!cut_k && params_.top_p >= 1.0f && params_.min_p <= 0.0f) {
    float mx = cand_[0].first;
    for (size_t i = 1; i < n; ++i) mx = std::max(mx, cand_[i].first);
    const float inv_t = 1.0f / params_.temperature;
    std::vector<float>& w = weights_;
    w.resize(n);
    double total = 0;
    for (size_t i = 0; i < n; ++i) total += (w[i] = std::exp((cand_[i].first - mx) * inv_t));
    double r = rng_.uniform() * total;
    for (size_t i = 0; i < n; ++i) {
      r -= w[i];
      if (r < 0) return cand_[i].second;
    }
    return cand_[n - 1].second;
  }

  // top-k: keep the k best, sorted. Without top-k we still sort, because
  // top-p needs the order; a min-p cut drops the candidates it would remove
  // first (p_i >= min_p * p_max  <=>  l_i >= l_max + log(min_p)), so only
  // the survivors are sorted.
  size_t keep = n;
  if (cut_k) keep = params_.top_k;
  if (!cut_k && params_.min_p > 0.0f) {
    float mx = cand_[0].first;
    for (size_t i = 1; i < n; ++i) mx = std::max(mx, cand_[i].first);
    // A little slack below the exact bound: the exact min-p test below decides.
    const float floor_l = mx + std::log(params_.min_p) - 1e-3f;
    // The softmax below is normalised over all candidates: keep their sum.
    double all = 0;
    for (size_t i = 0; i < n; ++i) all += std::exp(static_cast<double>(cand_[i].first) - mx);
    auto end = std::partition(cand_.begin(), cand_.end(), [&](const auto& c) { return c.first >= floor_l; });
    const size_t m = static_cast<size_t>(end - cand_.begin());
    std::sort(cand_.begin(), end, better);
    cand_.resize(m);
    return draw_sorted(all);
  }
  std::partial_sort(cand_.begin(), cand_.begin() + keep, cand_.end(), better);
  cand_.resize(keep);
  return draw_sorted(-1.0);
}

// cand_ sorted best first; `all`: the softmax normaliser over every candidate
// (< 0: over cand_).
Token Sampler::draw_sorted(double all) {
  const size_t keep0 = cand_.size();
  size_t keep = keep0;
  // Softmax over the survivors (before temperature, as llama.cpp does for top-p / min-p).
  std::vector<double> p(keep);
  const double mx = cand_[0].first;
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += (p[i] = std::exp(cand_[i].first - mx));
  if (all > 0) sum = all;
  for (auto& v : p) v /= sum;

  if (params_.top_p < 1.0f) {
    double cum = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      cum += p[i];
      if (cum >= params_.top_p) { cut = i + 1; break; }
    }
    keep = cut;
  }
  if (params_.min_p > 0.0f) {
    const double threshold = p[0] * params_.min_p;
    size_t cut = 1;
    while (cut < keep && p[cut] >= threshold) ++cut;
    keep = cut;
  }

  // Temperature, then draw.
  std::vector<double> w(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i)
    total += (w[i] = std::exp((cand_[i].first - mx) / params_.temperature));
  double r = rng_.uniform() * total;
  for (size_t i = 0; i < keep; ++i) {
    r -= w[i];
    if (r < 0) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return {};
  held_.append(text);
  // Earliest complete stop string wins.
  size_t best = std::string::npos;
  for (const auto& s : stops_) {
    const size_t at = held_.find(s);
    if (at < best) { best = at; matched_ = s; }
  }
  if (best != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, best);
    held_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, held_.size());
    for (size_t len = max_len; len > hold; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) { hold = len; break; }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopMatcher::flush() {
  if (stopped_) return {};
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace lmhost
