// "bert" (WordPiece). GGUF stores word-initial pieces with a "▁" prefix and
// continuation pieces bare (the "##" of the original vocab removed).
// Pre-processing as llama.cpp's BERT path: each code point is reduced to the
// first code point of its NFD decomposition (which drops accents of
// precomposed letters), lower-cased; whitespace splits words; control
// characters vanish; punctuation, ASCII symbols and CJK ideographs become
// one-character words. Each word is then matched greedily longest-first; a
// word that cannot be covered becomes [UNK].
#include <utf8proc.h>

#include "tokenizer/unicode_util.h"
#include "tokenizer/vocab.h"

namespace lmhost::tok {
namespace {

bool is_chinese_char(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) ||
         (c >= 0x2B920 && c <= 0x2CEAF) ||  // sic: the reference uses 0x2B920
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

uint32_t nfd_first(uint32_t c) {
  if (c < 0xC0) return c;
  utf8proc_int32_t buf[8];
  int last = 0;
  utf8proc_ssize_t n = utf8proc_decompose_char(utf8proc_int32_t(c), buf, 8, UTF8PROC_DECOMPOSE, &last);
  return n > 0 ? uint32_t(buf[0]) : c;
}

class Wpm final : public Vocab {
 public:
  Wpm() { family_ = Family::Wpm; }

  std::string normal_piece(std::string_view text) const override {
    if (text.compare(0, 3, "\xE2\x96\x81") == 0) return " " + std::string(text.substr(3));
    return std::string(text);
  }

  void encode_text(std::string_view raw, bool, std::vector<Token>& out) const override {
    std::vector<std::string> words(1);
    for (uint32_t cp0 : decode_utf8(raw)) {
      const uint32_t cp = nfd_first(cp0);
      if (cp_is_whitespace(cp)) {
        if (!words.back().empty()) words.emplace_back();
        continue;
      }
      const auto cat = utf8proc_category(utf8proc_int32_t(cp));
      const bool control = cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
                           cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS;
      if (cp == 0 || cp == 0xFFFD || control) continue;
      const bool punct = cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
      const bool symbol = cat >= UTF8PROC_CATEGORY_SM && cat <= UTF8PROC_CATEGORY_SO;
      std::string s;
      append_utf8(s, uint32_t(utf8proc_tolower(utf8proc_int32_t(cp))));
      if (punct || (cp < 0x7F && symbol) || is_chinese_char(cp)) {
        if (!words.back().empty()) words.emplace_back();
        words.back() = std::move(s);
        words.emplace_back();
      } else {
        words.back() += s;
      }
    }

    for (const std::string& w : words) {
      if (w.empty()) continue;
      const std::string word = "\xE2\x96\x81" + w;
      const size_t n = word.size();
      const size_t mark = out.size();
      bool ok = true;
      for (size_t i = 0; i < n;) {
        size_t j = std::min(n, i + max_token_len_);
        Token id = -1;
        for (; j > i; --j) {
          id = find(std::string_view(word).substr(i, j - i));
          if (id >= 0) break;
        }
        if (id < 0) { ok = false; break; }
        out.push_back(id);
        i = j;
      }
      if (!ok) out.resize(mark);
      if (out.size() == mark && unk_ >= 0) out.push_back(unk_);
    }
  }
};

}  // namespace

std::unique_ptr<Vocab> make_wpm() { return std::make_unique<Wpm>(); }

}  // namespace lmhost::tok
