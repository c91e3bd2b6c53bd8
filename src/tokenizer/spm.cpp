// "llama" (SentencePiece BPE): characters are merged greedily by the score
// of the token they form (highest first, leftmost on ties); characters that
// never become a token fall back to <0xNN> byte tokens.
#include <cstdio>
#include <queue>

#include "tokenizer/unicode_util.h"
#include "tokenizer/vocab.h"

namespace lmhost::tok {
namespace {

class Spm final : public Vocab {
 public:
  Spm() { family_ = Family::Spm; }

  void init(const gguf::File&) override {
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      Token id = find(buf);
      if (id < 0) id = find(std::string(1, char(b)));
      byte_tok_[b] = id;
    }
  }

  std::string normal_piece(std::string_view text) const override {
    // "▁" -> " "
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
        out.push_back(' ');
        i += 3;
      } else {
        out.push_back(text[i++]);
      }
    }
    return out;
  }

  void encode_text(std::string_view raw, bool prev_special, std::vector<Token>& out) const override {
    std::string text;
    text.reserve(raw.size() + 16);
    if (add_space_prefix_ && prev_special) text += "\xE2\x96\x81";
    for (char c : raw) {
      if (c == ' ') text += "\xE2\x96\x81";
      else text.push_back(c);
    }
    if (text.empty()) return;

    struct Sym { int prev, next; uint32_t start, n; };
    std::vector<Sym> syms;
    syms.reserve(text.size());
    for (size_t off = 0; off < text.size();) {
      uint32_t len = uint32_t(std::min(utf8_len((unsigned char)text[off]), text.size() - off));
      int idx = int(syms.size());
      syms.push_back(Sym{idx - 1, -1, uint32_t(off), len});
      off += len;
      if (off < text.size()) syms.back().next = idx + 1;
    }

    struct Bigram { float score; int left, right; uint32_t size; };
    struct Cmp {
      bool operator()(const Bigram& a, const Bigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
      }
    };
    std::priority_queue<Bigram, std::vector<Bigram>, Cmp> q;
    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const uint32_t size = syms[l].n + syms[r].n;
      Token id = find(std::string_view(text).substr(syms[l].start, size));
      if (id < 0) return;
      q.push(Bigram{score(id), l, r, size});
    };
    for (int i = 1; i < int(syms.size()); ++i) try_add(i - 1, i);

    while (!q.empty()) {
      Bigram b = q.top();
      q.pop();
      Sym& l = syms[b.left];
      Sym& r = syms[b.right];
      if (l.n == 0 || r.n == 0 || l.n + r.n != b.size || l.next != b.right) continue;
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }

    for (int i = 0; i != -1; i = syms[i].next) {
      const Sym& s = syms[i];
      Token id = find(std::string_view(text).substr(s.start, s.n));
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      for (uint32_t j = 0; j < s.n; ++j) {
        Token bt = byte_tok_[(unsigned char)text[s.start + j]];
        if (bt < 0) bt = unk_;
        if (bt >= 0) out.push_back(bt);
      }
    }
  }

 private:
  Token byte_tok_[256];
};

}  // namespace

std::unique_ptr<Vocab> make_spm() { return std::make_unique<Spm>(); }

}  // namespace lmhost::tok
