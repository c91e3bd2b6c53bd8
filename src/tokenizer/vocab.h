// Internal: the vocabulary shared by all tokenizer families, and the
// family-specific encoders. Not part of the public interface.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace lmhost::tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, Token, StringHash, std::equal_to<>>;

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
  Token find(std::string_view s) const {
    auto it = map_.find(s);
    return it == map_.end() ? -1 : it->second;
  }
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
  std::vector<std::string> pieces_;  // rendered pieces (render_special = true)
  TokenMap map_;
  std::vector<Token> special_;  // control/user-defined/unknown, longest text first
  std::vector<uint8_t> eog_;    // per token
  Token bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1, sep_ = -1, pad_ = -1, cls_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
  size_t max_token_len_ = 0;

  void partition(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;
  void finish_load();  // special-token cache, pieces, eog set
};

std::unique_ptr<Vocab> make_spm();
std::unique_ptr<Vocab> make_wpm();
// Throws lmhost::Error on an unknown pre-tokenizer name.
std::unique_ptr<Vocab> make_bpe(std::string_view pre);

}  // namespace lmhost::tok
