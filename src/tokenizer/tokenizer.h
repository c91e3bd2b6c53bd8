// Tokenizers built from GGUF metadata alone (tokenizer.ggml.*):
//   "llama"  SentencePiece-style (score-driven merges, byte fallback)
//   "gpt2"   byte-level BPE (ranked merges) with the pre-tokenizer rules
//            named by tokenizer.ggml.pre
//   "bert"   WordPiece
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lmhost::gguf { class File; }

namespace lmhost {

using Token = int32_t;

enum class TokenAttr : uint8_t { Normal, Control, UserDefined, Unknown, Byte, Unused };

class Tokenizer {
 public:
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& file);
  virtual ~Tokenizer() = default;

  // add_special: add BOS/EOS (or CLS/SEP) as the metadata says
  //   (tokenizer.ggml.add_bos_token / add_eos_token, with per-model defaults).
  // parse_special: text matching a control / user-defined token's text is
  //   emitted as that token instead of being tokenized as plain text.
  virtual std::vector<Token> encode(std::string_view text, bool add_special, bool parse_special) const = 0;

  // Bytes of one token as it appears in output text (byte tokens → the raw
  // byte, SentencePiece "▁" → space, byte-level BPE chars → bytes). Control
  // tokens render as "" unless render_special.
  virtual std::string token_to_piece(Token id, bool render_special = false) const = 0;
  // Concatenated pieces; strips the leading space SentencePiece adds when the
  // first token is the start of the text (as llama.cpp does).
  virtual std::string decode(std::span<const Token> ids, bool render_special = false) const = 0;

  virtual std::string_view model_name() const = 0;  // "llama", "gpt2", "bert"
  virtual std::string_view pre_name() const = 0;    // tokenizer.ggml.pre or ""
  virtual int32_t n_vocab() const = 0;
  virtual std::string_view token_text(Token id) const = 0;  // raw vocab string
  virtual TokenAttr token_attr(Token id) const = 0;
  virtual Token bos() const = 0;  // -1 when absent (CLS for bert)
  virtual Token eos() const = 0;  // -1 when absent (SEP for bert)
  virtual bool is_eog(Token id) const = 0;  // end of generation: eos, eot, <|im_end|>, ...
};

// Streaming detokenizer: push token ids one at a time and get back only
// complete UTF-8 (a multi-byte character split across tokens is held back
// until it completes; invalid bytes become U+FFFD once they cannot complete).
class StreamDecoder {
 public:
  // keep: special tokens written as their text even without render_special
  // (a tool-call format's markers, which its parser needs to see).
  explicit StreamDecoder(const Tokenizer& tok, bool render_special = false, std::vector<Token> keep = {})
      : tok_(tok), render_special_(render_special), keep_(std::move(keep)) {}
  std::string push(Token id);
  std::string flush();  // whatever is still held, invalid bytes replaced

 private:
  const Tokenizer& tok_;
  bool render_special_;
  std::vector<Token> keep_;
  bool first_ = true;
  std::string pending_;
};

}  // namespace lmhost
