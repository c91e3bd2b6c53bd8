// Internal: the vocabulary shared by all tokenizer families, and the
// family-specific encoders. Not part of the public interface.
#pragma once

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace lmhost::tok {

inline uint64_t hash_bytes(std::string_view s) {
  const char* p = s.data();
  size_t n = s.size();
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 29;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 32;
  return h;
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return hash_bytes(s); }
};
using TokenMap = std::unordered_map<std::string, Token, StringHash, std::equal_to<>>;

// Open-addressing index from token text to id over a vector of texts (which
// must outlive it). Duplicate texts: the later id wins.
class TokenIndex {
 public:
  void build(const std::vector<std::string>& texts) {
    texts_ = &texts;
    size_t cap = 16;
    while (cap < texts.size() * 2) cap <<= 1;
    slots_.assign(cap, 0);
    mask_ = cap - 1;
    std::vector<uint64_t> hashes(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) hashes[i] = hash_bytes(texts[i]);
    constexpr size_t kAhead = 16;
    for (size_t i = 0; i < texts.size(); ++i) {
      if (i + kAhead < texts.size()) __builtin_prefetch(&slots_[hashes[i + kAhead] & mask_], 1);
      if (texts[i].empty()) continue;
      const uint64_t h = hashes[i];
      const uint64_t tag = h >> 32;
      for (size_t j = h & mask_;; j = (j + 1) & mask_) {
        const uint64_t e = slots_[j];
        if (e == 0 || ((e >> 32) == tag && texts[uint32_t(e) - 1] == texts[i])) {
          slots_[j] = (tag << 32) | uint64_t(i + 1);
          break;
        }
      }
    }
  }
  // Looks up n strings at once, overlapping the memory latency of the
  // lookups (used at load time for the merges table).
  void find_batch(const std::string_view* qs, size_t n, Token* out) const {
    constexpr size_t kMax = 256;
    uint64_t hs[kMax];
    if (slots_.empty()) {
      for (size_t i = 0; i < n; ++i) out[i] = -1;
      return;
    }
    for (size_t base = 0; base < n; base += kMax) {
      const size_t m = std::min(kMax, n - base);
      for (size_t i = 0; i < m; ++i) {
        hs[i] = hash_bytes(qs[base + i]);
        __builtin_prefetch(&slots_[hs[i] & mask_]);
      }
      for (size_t i = 0; i < m; ++i) {  // prefetch the candidate texts
        const uint64_t e = slots_[hs[i] & mask_];
        if (e != 0) __builtin_prefetch(&(*texts_)[uint32_t(e) - 1]);
      }
      for (size_t i = 0; i < m; ++i) out[base + i] = find_hashed(qs[base + i], hs[i]);
    }
  }
  Token find(std::string_view s) const { return slots_.empty() ? -1 : find_hashed(s, hash_bytes(s)); }
  Token find_hashed(std::string_view s, uint64_t h) const {
    const uint64_t tag = h >> 32;
    for (size_t j = h & mask_;; j = (j + 1) & mask_) {
      const uint64_t e = slots_[j];
      if (e == 0) return -1;
      if ((e >> 32) == tag && (*texts_)[uint32_t(e) - 1] == s) return Token(uint32_t(e) - 1);
    }
  }

 private:
  const std::vector<std::string>* texts_ = nullptr;
  std::vector<uint64_t> slots_;
  size_t mask_ = 0;
};

enum class Family { Spm, Bpe, Wpm };

// Per-token flags beyond the GGUF token type (llama.cpp's lstrip/rstrip).
enum : uint8_t { kLstrip = 1, kRstrip = 2 };

// A piece of input after special-token partitioning: raw text or a token.
struct Fragment {
  Token token = -1;  // -1: raw text
  std::string_view text;
};

class Vocab : public Tokenizer {
 public:
  // ---- Tokenizer interface (common parts) ----
  std::vector<Token> encode(std::string_view text, bool add_special, bool parse_special) const override;
  std::string token_to_piece(Token id, bool render_special = false) const override;
  std::string decode(std::span<const Token> ids, bool render_special = false) const override;
  std::string_view model_name() const override { return model_; }
  std::string_view pre_name() const override { return pre_; }
  int32_t n_vocab() const override { return int32_t(text_.size()); }
  std::string_view token_text(Token id) const override;
  TokenAttr token_attr(Token id) const override;
  Token bos() const override { return bos_; }
  Token eos() const override { return eos_; }
  bool is_eog(Token id) const override;

  // Token id of an exact vocab string, or -1.
  Token find(std::string_view s) const { return index_.find(s); }
  float score(Token id) const { return scores_.empty() ? 0.0f : scores_[id]; }
  bool valid(Token id) const { return id >= 0 && size_t(id) < text_.size(); }

  // Family encoder of one raw-text fragment; prev_special says whether the
  // fragment follows a special token or the start of the text.
  virtual void encode_text(std::string_view text, bool prev_special, std::vector<Token>& out) const = 0;
  // Text of a normal token as it appears in output.
  virtual std::string normal_piece(std::string_view text) const = 0;
  // Family-specific loading after the common data are filled (merges...).
  virtual void init(const gguf::File& file) {}

  // ---- loaded data (filled by from_gguf) ----
  Family family_ = Family::Spm;
  std::string model_, pre_;
  std::vector<std::string> text_;
  std::vector<float> scores_;
  std::vector<TokenAttr> attr_;
  std::vector<uint8_t> flags_;  // kLstrip / kRstrip
  TokenIndex index_;
  std::vector<Token> special_;  // control/user-defined/unknown, longest text first
  std::vector<uint8_t> eog_;    // per token
  Token bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1, sep_ = -1, pad_ = -1, cls_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
  size_t max_token_len_ = 0;

  void partition(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;
  void finish_load();  // special-token cache, eog set
};

std::unique_ptr<Vocab> make_spm();
std::unique_ptr<Vocab> make_wpm();
// Throws lmhost::Error on an unknown pre-tokenizer name.
std::unique_ptr<Vocab> make_bpe(std::string_view pre);

}  // namespace lmhost::tok
