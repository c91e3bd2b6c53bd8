// A deterministic fake model and byte tokenizer for scheduler and server
// tests: the logits of a position depend on every token of its sequence, so
// a scheduler that feeds the wrong tokens, positions or sequences shows up
// as different text.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend.h"
#include "engine/sampler.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace lmhost::testing {

// Tokens 0..255 are bytes; 256 is EOS.
class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<Token> encode(std::string_view text, bool, bool) const override {
    std::vector<Token> out;
    for (unsigned char c : text) out.push_back(c);
    return out;
  }
  std::string token_to_piece(Token id, bool) const override {
    if (id >= 0 && id < 256) return std::string(1, static_cast<char>(id));
    return "";
  }
  std::string decode(std::span<const Token> ids, bool rs) const override {
    std::string s;
    for (Token t : ids) s += token_to_piece(t, rs);
    return s;
  }
  std::string_view model_name() const override { return "bytes"; }
  std::string_view pre_name() const override { return ""; }
  int32_t n_vocab() const override { return 260; }
  std::string_view token_text(Token) const override { return ""; }
  TokenAttr token_attr(Token id) const override { return id < 256 ? TokenAttr::Byte : TokenAttr::Control; }
  Token bos() const override { return -1; }
  Token eos() const override { return 256; }
  bool is_eog(Token id) const override { return id == 256; }
};

inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h *= 0xff51afd7ed558ccdULL;
  return h ^ (h >> 33);
}

// Logits after a sequence of tokens: a lower-case letter wins by a wide
// margin (which one depends on the whole sequence); EOS wins when the
// sequence ends in '.' and eos_after_dot.
inline void fake_logits(const std::vector<Token>& seq, float* out, int n_vocab, bool eos_after_dot) {
  uint64_t h = 1469598103934665603ULL;
  for (Token t : seq) h = mix(h, static_cast<uint64_t>(t));
  for (int v = 0; v < n_vocab; ++v) out[v] = static_cast<float>(mix(h, v) % 1000) / 1000.0f;
  out['a' + h % 26] += 10.0f;
  out[' '] += 9.0f;
  if (eos_after_dot && !seq.empty() && seq.back() == '.') out[256] += 20.0f;
}

class FakeBackend final : public Backend {
 public:
  FakeBackend(int n_seq, int n_ctx, std::chrono::microseconds step_delay = std::chrono::microseconds(0),
              bool eos_after_dot = false)
      : seqs_(n_seq), n_ctx_(n_ctx), delay_(step_delay), eos_after_dot_(eos_after_dot) {}
  int n_seq() const override { return static_cast<int>(seqs_.size()); }
  int n_ctx_per_seq() const override { return n_ctx_; }
  int n_vocab() const override { return 260; }
  std::span<const float> forward(std::span<const SeqToken> batch) override {
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    out_.clear();
    int n_prompt_like = 0, seqs_in_batch = 0;
    std::vector<bool> seen(seqs_.size());
    for (const auto& e : batch) {
      if (e.seq < 0 || e.seq >= n_seq()) throw Error("bad seq");
      auto& s = seqs_[e.seq];
      if (e.pos != static_cast<int>(s.size())) throw Error("bad pos " + std::to_string(e.pos));
      if (e.pos >= n_ctx_) throw Error("context overflow");
      s.push_back(e.token);
      if (!seen[e.seq]) { seen[e.seq] = true; ++seqs_in_batch; }
      if (!e.logits) ++n_prompt_like;
      if (e.logits) {
        out_.resize(out_.size() + 260);
        fake_logits(s, out_.data() + out_.size() - 260, 260, eos_after_dot_);
      }
    }
    max_batch = std::max<int>(max_batch, static_cast<int>(batch.size()));
    max_seqs_in_batch = std::max(max_seqs_in_batch.load(), seqs_in_batch);
    ++steps;
    return out_;
  }
  void clear_seq(int seq) override { seqs_.at(seq).clear(); }
  void truncate_seq(int seq, int n_keep) override { seqs_.at(seq).resize(n_keep); }

  std::atomic<int> max_batch{0};
  std::atomic<int> max_seqs_in_batch{0};
  std::atomic<int> steps{0};

 private:
  std::vector<std::vector<Token>> seqs_;
  int n_ctx_;
  std::chrono::microseconds delay_;
  bool eos_after_dot_;
  std::vector<float> out_;
};

// Greedy continuation computed directly from fake_logits (the oracle).
inline std::string fake_greedy(std::vector<Token> seq, int n, bool eos_after_dot = false) {
  std::string out;
  std::vector<float> l(260);
  for (int i = 0; i < n; ++i) {
    fake_logits(seq, l.data(), 260, eos_after_dot);
    const Token t = argmax(l);
    if (t == 256) break;
    out.push_back(static_cast<char>(t));
    seq.push_back(t);
  }
  return out;
}

}  // namespace lmhost::testing
