// Tokenizer::from_gguf and the parts common to all families: vocabulary,
// special-token partitioning, pieces, decode.
#include <algorithm>
#include <cctype>

#include "gguf/gguf.h"
#include "tokenizer/unicode_util.h"
#include "tokenizer/vocab.h"
#include "util/error.h"

namespace lmhost {

using tok::Vocab;

namespace {

// GGUF token types (llama.cpp's llama_token_type).
TokenAttr attr_from_type(int64_t t) {
  switch (t) {
    case 1: return TokenAttr::Normal;
    case 2: return TokenAttr::Unknown;
    case 3: return TokenAttr::Control;
    case 4: return TokenAttr::UserDefined;
    case 5: return TokenAttr::Unused;
    case 6: return TokenAttr::Byte;
    default: return TokenAttr::Unused;  // undefined: rendered as nothing, never special
  }
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = char(std::tolower((unsigned char)c));
  return r;
}

bool is_space(char c) { return std::isspace((unsigned char)c) != 0; }

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::File& f) {
  const std::string where = f.path().empty() ? std::string("<gguf>") : f.path();
  auto model = f.get_string("tokenizer.ggml.model");
  if (!model) throw Error(where + ": no tokenizer in this file (tokenizer.ggml.model is missing)");
  const std::string pre(f.get_string("tokenizer.ggml.pre").value_or(""));

  std::unique_ptr<Vocab> v;
  if (*model == "llama") {
    v = tok::make_spm();
  } else if (*model == "gpt2") {
    v = tok::make_bpe(pre);
  } else if (*model == "bert") {
    v = tok::make_wpm();
  } else {
    throw Error(where + ": unsupported tokenizer model '" + std::string(*model) +
                "' (supported: llama, gpt2, bert)");
  }
  v->model_ = std::string(*model);
  v->pre_ = pre;

  const gguf::Value* tokens = f.find("tokenizer.ggml.tokens");
  if (!tokens || !tokens->is_array() || tokens->array_type() != gguf::ValueType::STRING)
    throw Error(where + ": tokenizer.ggml.tokens is missing or not an array of strings");
  const auto texts = tokens->as_string_array();
  const size_t n = texts.size();
  if (n == 0) throw Error(where + ": tokenizer.ggml.tokens is empty");
  if (n > size_t(INT32_MAX)) throw Error(where + ": too many tokens");

  v->text_.reserve(n);
  for (auto t : texts) v->text_.emplace_back(t);

  if (const gguf::Value* sc = f.find("tokenizer.ggml.scores")) {
    if (!sc->is_array() || sc->array_size() != n)
      throw Error(where + ": tokenizer.ggml.scores must be an array of " + std::to_string(n) + " numbers");
    v->scores_ = sc->as_float_array();
  }
  v->attr_.assign(n, TokenAttr::Normal);
  if (const gguf::Value* tt = f.find("tokenizer.ggml.token_type")) {
    if (!tt->is_array() || tt->array_size() != n)
      throw Error(where + ": tokenizer.ggml.token_type must be an array of " + std::to_string(n) + " integers");
    const auto types = tt->as_int_array();
    for (size_t i = 0; i < n; ++i) v->attr_[i] = attr_from_type(types[i]);
  }
  v->flags_.assign(n, 0);

  v->index_.build(v->text_);  // later duplicates win, as llama.cpp
  for (const auto& t : v->text_) v->max_token_len_ = std::max(v->max_token_len_, t.size());

  // Family defaults (llama.cpp's), then the metadata overrides them.
  switch (v->family_) {
    case tok::Family::Spm:
      v->bos_ = 1; v->eos_ = 2; v->unk_ = 0;
      v->add_bos_ = true; v->add_space_prefix_ = true;
      break;
    case tok::Family::Bpe:
      v->bos_ = 11; v->eos_ = 11;
      break;
    case tok::Family::Wpm:
      v->bos_ = 101; v->unk_ = 100; v->sep_ = 102; v->pad_ = 0; v->cls_ = 101;
      v->add_bos_ = true;
      break;
  }
  auto read_id = [&](const char* key, Token& dst) {
    if (auto id = f.get_int(key)) {
      if (*id >= 0 && size_t(*id) < n) dst = Token(*id);
    }
  };
  read_id("tokenizer.ggml.bos_token_id", v->bos_);
  read_id("tokenizer.ggml.eos_token_id", v->eos_);
  read_id("tokenizer.ggml.eot_token_id", v->eot_);
  read_id("tokenizer.ggml.eom_token_id", v->eom_);
  read_id("tokenizer.ggml.unknown_token_id", v->unk_);
  read_id("tokenizer.ggml.seperator_token_id", v->sep_);
  read_id("tokenizer.ggml.padding_token_id", v->pad_);
  read_id("tokenizer.ggml.cls_token_id", v->cls_);
  // Defaults that do not exist in this vocab are absent.
  for (Token* id : {&v->bos_, &v->eos_, &v->eot_, &v->eom_, &v->unk_, &v->sep_, &v->pad_, &v->cls_})
    if (*id >= 0 && size_t(*id) >= n) *id = -1;
  if (v->family_ == tok::Family::Wpm) {
    // BERT: CLS opens, SEP closes.
    if (v->cls_ >= 0) v->bos_ = v->cls_;
    v->eos_ = v->sep_;
  }
  if (auto b = f.get_bool("tokenizer.ggml.add_space_prefix")) v->add_space_prefix_ = *b;
  if (auto b = f.get_bool("tokenizer.ggml.add_bos_token")) v->add_bos_ = *b;
  if (auto b = f.get_bool("tokenizer.ggml.add_eos_token")) v->add_eos_ = *b;

  v->init(f);
  v->finish_load();

  // Per-model token attributes that GGUF does not carry (as llama.cpp).
  const std::string name = lower(f.get_string("general.name").value_or(""));
  auto set_flag = [&](std::string_view text, uint8_t flag, bool on) {
    Token id = v->find(text);
    if (id < 0) return;
    if (on) v->flags_[id] |= flag; else v->flags_[id] &= uint8_t(~flag);
  };
  if (pre == "jina-v2-de" || pre == "jina-v2-es" || pre == "jina-v2-code") {
    set_flag("<mask>", tok::kLstrip, true);
  } else if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (Token id : v->special_) v->flags_[id] |= tok::kRstrip;
    set_flag("</s>", tok::kRstrip, true);
    for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) set_flag(t, tok::kRstrip, false);
  }
  return v;
}

namespace tok {

void Vocab::finish_load() {
  const size_t n = text_.size();
  eog_.assign(n, 0);

  // Tokens recognised by name (llama.cpp marks them control and, for the
  // end-of-turn family, end-of-generation).
  static const char* const kEot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                     "<EOT>", "_<EOT>", "<｜end▁of▁sentence｜>"};
  static const char* const kEog[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                     "<|eom_id|>", "<EOT>", "_<EOT>"};
  static const char* const kFim[] = {"<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                                     "<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                                     "<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                                     "<|fim_pad|>", "<fim-pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>",
                                     "<fim-repo>", "<REPO>", "<|file_sep|>"};
  static const char* const kFimEog[] = {"<|fim_pad|>", "<fim-pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>",
                                        "<fim-repo>", "<REPO>", "<|file_sep|>"};
  if (eot_ < 0) {
    for (const char* t : kEot) {
      Token id = find(t);
      if (id >= 0) { eot_ = id; break; }
    }
  }
  if (eot_ >= 0) attr_[eot_] = TokenAttr::Control;
  for (const char* t : kFim) {
    Token id = find(t);
    if (id >= 0) attr_[id] = TokenAttr::Control;
  }
  for (const char* t : kEog) {
    Token id = find(t);
    if (id >= 0) {
      eog_[id] = 1;
      attr_[id] = TokenAttr::Control;
    }
  }
  for (const char* t : kFimEog) {
    Token id = find(t);
    if (id >= 0 && attr_[id] == TokenAttr::Control) eog_[id] = 1;
  }
  for (Token id : {eos_, eot_, eom_})
    if (valid(id)) eog_[id] = 1;

  // Special-token cache: longest text first.
  special_.clear();
  for (size_t i = 0; i < n; ++i) {
    const TokenAttr a = attr_[i];
    if ((a == TokenAttr::Control || a == TokenAttr::UserDefined || a == TokenAttr::Unknown) && !text_[i].empty())
      special_.push_back(Token(i));
  }
  std::stable_sort(special_.begin(), special_.end(),
                   [&](Token a, Token b) { return text_[a].size() > text_[b].size(); });

}

std::string_view Vocab::token_text(Token id) const {
  if (!valid(id)) throw Error("token id " + std::to_string(id) + " is out of range (vocab has " +
                              std::to_string(text_.size()) + " tokens)");
  return text_[id];
}

TokenAttr Vocab::token_attr(Token id) const {
  if (!valid(id)) throw Error("token id " + std::to_string(id) + " is out of range (vocab has " +
                              std::to_string(text_.size()) + " tokens)");
  return attr_[id];
}

bool Vocab::is_eog(Token id) const { return valid(id) && eog_[id] != 0; }

void Vocab::partition(std::string_view text, bool parse_special, std::vector<Fragment>& out) const {
  out.clear();
  out.push_back(Fragment{-1, text});
  std::vector<Fragment> next;
  for (Token sid : special_) {
    const TokenAttr a = attr_[sid];
    // Without parse_special, only user-defined tokens are cut out.
    if (!parse_special && a != TokenAttr::UserDefined) continue;
    const std::string& st = text_[sid];
    bool any = false;
    for (const Fragment& fr : out) {
      if (fr.token >= 0) continue;
      if (fr.text.find(st) != std::string_view::npos) { any = true; break; }
    }
    if (!any) continue;
    next.clear();
    for (const Fragment& fr : out) {
      if (fr.token >= 0) { next.push_back(fr); continue; }
      std::string_view rest = fr.text;
      while (!rest.empty()) {
        size_t pos = rest.find(st);
        if (pos == std::string_view::npos) {
          next.push_back(Fragment{-1, rest});
          break;
        }
        std::string_view left = rest.substr(0, pos);
        if (flags_[sid] & kLstrip)
          while (!left.empty() && is_space(left.back())) left.remove_suffix(1);
        if (!left.empty()) next.push_back(Fragment{-1, left});
        next.push_back(Fragment{sid, {}});
        rest = rest.substr(pos + st.size());
        if (flags_[sid] & kRstrip)
          while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
      }
    }
    out.swap(next);
  }
}

std::vector<Token> Vocab::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<Token> out;
  out.reserve(text.size() / 3 + 4);
  const bool wpm = family_ == Family::Wpm;
  if (add_special && (wpm ? bos_ >= 0 : (add_bos_ && bos_ >= 0))) out.push_back(bos_);
  if (!text.empty()) {
    std::vector<Fragment> frags;
    partition(text, parse_special, frags);
    bool prev_special = true;
    for (const Fragment& fr : frags) {
      if (fr.token >= 0) {
        out.push_back(fr.token);
        prev_special = true;
      } else {
        encode_text(fr.text, prev_special, out);
        prev_special = false;
      }
    }
  }
  if (add_special && (wpm ? sep_ >= 0 : (add_eos_ && eos_ >= 0))) out.push_back(wpm ? sep_ : eos_);
  return out;
}

std::string Vocab::token_to_piece(Token id, bool render_special) const {
  if (!valid(id)) return std::string();
  switch (attr_[id]) {
    case TokenAttr::Normal:
      return normal_piece(text_[id]);
    case TokenAttr::Byte: {
      const std::string& t = text_[id];  // "<0xNN>"
      if (family_ != Family::Bpe && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
          std::isxdigit((unsigned char)t[3]) && std::isxdigit((unsigned char)t[4]))
        return std::string(1, char(std::stoi(t.substr(3, 2), nullptr, 16)));
      return std::string();
    }
    case TokenAttr::UserDefined:
      return text_[id];
    case TokenAttr::Control:
    case TokenAttr::Unknown:
      return render_special ? text_[id] : std::string();
    case TokenAttr::Unused:
      return std::string();
  }
  return std::string();
}

std::string Vocab::decode(std::span<const Token> ids, bool render_special) const {
  std::string out;
  const bool strip = (family_ == Family::Spm && add_space_prefix_) || family_ == Family::Wpm;
  bool at_start = true;
  for (Token id : ids) {
    std::string p = token_to_piece(id, render_special);
    if (at_start && strip) {
      // A leading BOS / control token does not end "the start of the text".
      if (id == bos_ && valid(id) && attr_[id] != TokenAttr::Normal) {
        out += p;
        continue;
      }
      if (!p.empty() && p[0] == ' ') p.erase(0, 1);
    }
    at_start = false;
    out += p;
  }
  return out;
}

}  // namespace tok
}  // namespace lmhost
