// "gpt2" (byte-level BPE): the text is split by the pre-tokenizer regexes
// named by tokenizer.ggml.pre (PCRE2, UTF + UCP, JIT), each word's bytes are
// mapped to GPT-2's printable code points, and adjacent symbols are merged by
// the rank of their pair in tokenizer.ggml.merges (lowest rank first,
// leftmost on ties) until no ranked pair remains.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <queue>

#include "gguf/gguf.h"
#include "tokenizer/unicode_util.h"
#include "tokenizer/vocab.h"
#include "util/error.h"

namespace lmhost::tok {
namespace {

struct PreSpec {
  std::vector<const char*> regexes;
  bool ignore_merges = false;
  bool add_bos = false;
};

// The regex sets of llama.cpp's pre-tokenizer types (applied in sequence;
// each one splits the pieces the previous ones produced, keeping both the
// matches and the text between them).
const char* const kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kCjk = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+";

PreSpec pre_spec(std::string_view pre) {
  auto is = [&](std::initializer_list<std::string_view> names) {
    for (auto n : names)
      if (pre == n) return true;
    return false;
  };
  if (is({"default", ""})) return {{R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}};
  if (is({"llama3", "llama-v3", "llama-bpe", "falcon3"})) return {{kLlama3}, true, true};
  if (is({"dbrx", "smaug-bpe", "chatglm-bpe"})) return {{kLlama3}};
  if (is({"deepseek-llm"}))
    return {{"[\r\n]",
             // Cased letters, as code point escapes (literal characters here
             // would be at the mercy of editors that normalise Unicode).
             "\\s?["
             "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"
             "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-"
             "\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-"
             "\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-"
             "\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-"
             "\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}"
             "\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-"
             "\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-"
             "\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}"
             "\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
             "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}"
             "\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-"
             "\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-"
             "\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}"
             "\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
             "]+",
             "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", kCjk, "\\p{N}+"}};
  if (is({"deepseek-v3"}))
    return {{R"(\p{N}{1,3})", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
             R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}};
  if (is({"deepseek-coder"})) return {{"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kCjk, R"(\p{N})"}};
  if (is({"falcon"})) return {{R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"}};
  if (is({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"}))
    return {{R"(\p{N})", kGpt2}};
  if (is({"gpt-2", "gpt2", "mpt", "olmo", "jais", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en",
          "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "trillion", "gpt-neox"}))
    return {{kGpt2}};
  if (is({"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan"})) return {{kQwen2}};
  if (is({"poro-chat", "bloom", "gpt3-finnish"})) return {{" ?[^(\\s|.,!?…。，、।۔،)]+"}};
  if (is({"viking"})) return {{" ?[^(\\s|.,!?…。，、।۔،)]+", R"(\p{N})"}};
  if (is({"tekken"}))
    return {{R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
            true,
            true};
  if (is({"gpt-4o"}))
    return {{R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}};
  throw Error("unknown pre-tokenizer '" + std::string(pre) +
              "' (tokenizer.ggml.pre); supported: default, gpt-2, llama-bpe, qwen2, deepseek-llm, "
              "deepseek-coder, deepseek-v3, falcon, starcoder, refact, command-r, smollm, mpt, olmo, "
              "dbrx, stablelm2, poro-chat, gpt-4o, tekken, ...");
}

struct Regex {
  pcre2_code* code = nullptr;
  Regex() = default;
  Regex(const Regex&) = delete;
  Regex(Regex&& o) noexcept : code(o.code) { o.code = nullptr; }
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
};

// Per-thread JIT stack (large runs of whitespace need more than the default).
struct MatchEnv {
  pcre2_match_context* mctx = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchEnv() {
    mctx = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    if (mctx && stack) pcre2_jit_stack_assign(mctx, nullptr, stack);
  }
  ~MatchEnv() {
    if (stack) pcre2_jit_stack_free(stack);
    if (mctx) pcre2_match_context_free(mctx);
  }
};

struct Piece { uint32_t start, len; };

struct Merge { int32_t rank; Token result; };

// Open-addressing map (left id, right id) -> merge; the first insertion wins.
class MergeTable {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    keys_.assign(cap, kEmpty);
    vals_.assign(cap, Merge{0, -1});
    mask_ = cap - 1;
  }
  void insert(uint64_t key, Merge m) {
    for (size_t j = mix(key) & mask_;; j = (j + 1) & mask_) {
      if (keys_[j] == key) return;
      if (keys_[j] == kEmpty) {
        keys_[j] = key;
        vals_[j] = m;
        return;
      }
    }
  }
  void prefetch(uint64_t key) const {
    const size_t j = mix(key) & mask_;
    __builtin_prefetch(&keys_[j]);
    __builtin_prefetch(&vals_[j]);
  }
  const Merge* find(uint64_t key) const {
    if (keys_.empty()) return nullptr;
    for (size_t j = mix(key) & mask_;; j = (j + 1) & mask_) {
      if (keys_[j] == key) return &vals_[j];
      if (keys_[j] == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t mix(uint64_t x) {
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
  }
  std::vector<uint64_t> keys_;
  std::vector<Merge> vals_;
  size_t mask_ = 0;
};

class Bpe final : public Vocab {
 public:
  explicit Bpe(std::string_view pre) {
    family_ = Family::Bpe;
    PreSpec spec = pre_spec(pre);
    ignore_merges_ = spec.ignore_merges;
    add_bos_default_ = spec.add_bos;
    for (const char* rx : spec.regexes) {
      int err = 0;
      PCRE2_SIZE off = 0;
      Regex r;
      r.code = pcre2_compile((PCRE2_SPTR)rx, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY,
                             &err, &off, nullptr);
      if (!r.code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw Error("pre-tokenizer '" + std::string(pre) + "': bad regex at " + std::to_string(off) + ": " +
                    std::string((const char*)msg));
      }
      pcre2_jit_compile(r.code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
      regexes_.push_back(std::move(r));
    }
  }

  void init(const gguf::File& f) override {
    if (add_bos_default_ && !f.get_bool("tokenizer.ggml.add_bos_token")) add_bos_ = true;
    // Byte -> symbol id (the token whose text is that byte's printable char).
    const auto& b2c = byte_to_cp();
    for (int b = 0; b < 256; ++b) {
      std::string s;
      append_utf8(s, b2c[b]);
      byte_enc_[b] = s;
      byte_tok_[b] = sym_id(s);
    }
    const gguf::Value* mv = f.find("tokenizer.ggml.merges");
    if (!mv) throw Error(f.path() + ": gpt2 tokenizer without tokenizer.ggml.merges");
    if (!mv->is_array() || mv->array_type() != gguf::ValueType::STRING)
      throw Error(f.path() + ": tokenizer.ggml.merges is not an array of strings");
    const auto merges = mv->as_string_array();
    merges_.reserve(merges.size());
    // Resolved in batches so the hash-table lookups overlap.
    constexpr size_t kBatch = 256;
    std::vector<std::string> joined(kBatch);
    std::vector<std::string_view> qs(3 * kBatch);
    std::vector<Token> ids(3 * kBatch);
    std::vector<uint64_t> keys(kBatch);
    for (size_t base = 0; base < merges.size(); base += kBatch) {
      const size_t m = std::min(kBatch, merges.size() - base);
      for (size_t i = 0; i < m; ++i) {
        std::string_view mg = merges[base + i];
        size_t sp = mg.size() > 1 ? mg.find(' ', 1) : std::string_view::npos;
        if (sp == std::string_view::npos) {  // malformed entry: ignored, as the reference does
          qs[3 * i] = qs[3 * i + 1] = qs[3 * i + 2] = std::string_view();
          continue;
        }
        qs[3 * i] = mg.substr(0, sp);
        qs[3 * i + 1] = mg.substr(sp + 1);
        joined[i].assign(qs[3 * i]);
        joined[i].append(qs[3 * i + 1]);
        qs[3 * i + 2] = joined[i];
      }
      index_.find_batch(qs.data(), 3 * m, ids.data());
      for (size_t i = 0; i < m; ++i) {
        if (qs[3 * i].empty()) { keys[i] = ~uint64_t(0); continue; }
        for (int k = 0; k < 3; ++k)
          if (ids[3 * i + k] < 0) ids[3 * i + k] = sym_id(qs[3 * i + k]);
        keys[i] = (uint64_t(uint32_t(ids[3 * i])) << 32) | uint32_t(ids[3 * i + 1]);
        merges_.prefetch(keys[i]);
      }
      for (size_t i = 0; i < m; ++i)
        if (keys[i] != ~uint64_t(0)) merges_.insert(keys[i], Merge{int32_t(base + i), ids[3 * i + 2]});  // first (lowest rank) wins
    }
  }

  std::string normal_piece(std::string_view text) const override {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      const unsigned char c = (unsigned char)text[i];
      if (c < 0x80) {  // printable ASCII maps to itself
        out.push_back(char(c));
        ++i;
        continue;
      }
      int n = utf8_sequence_status(text.substr(i));
      if (n <= 0) {
        out.push_back(char(c));
        ++i;
        continue;
      }
      uint32_t cp = n == 2 ? ((c & 0x1Fu) << 6) | ((unsigned char)text[i + 1] & 0x3Fu) : 0xFFFFFFFFu;
      int b = n == 2 ? cp_to_byte(cp) : -1;
      if (b >= 0) out.push_back(char(b));
      else out.append(text.substr(i, size_t(n)));
      i += size_t(n);
    }
    return out;
  }

  void encode_text(std::string_view raw, bool, std::vector<Token>& out) const override {
    std::string owned;
    std::string_view text = raw;
    if (!is_valid_utf8(raw)) {
      owned = sanitize_utf8(raw);
      text = owned;
    }
    thread_local MatchEnv env;
    std::vector<Piece> pieces{{0, uint32_t(text.size())}}, next;
    pcre2_match_data* md = nullptr;
    for (const Regex& rx : regexes_) {
      if (!md) md = pcre2_match_data_create(4, nullptr);
      next.clear();
      for (const Piece& p : pieces) split(rx, text, p, md, env, next);
      pieces.swap(next);
    }
    if (md) pcre2_match_data_free(md);

    Work w;
    for (const Piece& p : pieces) encode_word(text.substr(p.start, p.len), w, out);
  }

 private:
  struct Sym { int prev, next; uint32_t start, len; Token id; };
  struct Bigram { int32_t rank; int left, right; Token lid, rid; Token result; };
  struct Cmp {
    bool operator()(const Bigram& a, const Bigram& b) const {
      return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
  };
  struct Work {
    std::vector<Sym> syms;
    std::vector<Bigram> heap;
  };

  // Id of a symbol string: the vocab id, or an id past the vocab for merge
  // parts that are not tokens themselves.
  Token sym_id(std::string_view s) {
    Token id = find(s);
    if (id >= 0) return id;
    auto it = extra_.find(s);
    if (it != extra_.end()) return it->second;
    Token nid = Token(text_.size() + extra_.size());
    extra_.emplace(std::string(s), nid);
    return nid;
  }

  static void split(const Regex& rx, std::string_view text, const Piece& p, pcre2_match_data* md,
                    MatchEnv& env, std::vector<Piece>& out) {
    const auto* subj = (PCRE2_SPTR)(text.data() + p.start);
    const size_t len = p.len;
    size_t last = 0, pos = 0;
    while (pos < len) {
      int rc = pcre2_match(rx.code, subj, len, pos, PCRE2_NO_UTF_CHECK, md, env.mctx);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        throw Error(std::string("pre-tokenizer regex failed: ") + (const char*)msg, 500);
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t m0 = ov[0], m1 = ov[1];
      if (m1 == m0) {  // empty match: step over one character
        if (m0 >= len) break;
        pos = m0 + std::max<size_t>(1, utf8_len(subj[m0]));
        continue;
      }
      if (m0 > last) out.push_back(Piece{uint32_t(p.start + last), uint32_t(m0 - last)});
      out.push_back(Piece{uint32_t(p.start + m0), uint32_t(m1 - m0)});
      last = pos = m1;
    }
    if (last < len) out.push_back(Piece{uint32_t(p.start + last), uint32_t(len - last)});
  }

  void add_bigram(Work& w, int l, int r) const {
    if (l < 0 || r < 0) return;
    const Token a = w.syms[l].id, b = w.syms[r].id;
    const Merge* m = merges_.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
    if (!m) return;
    w.heap.push_back(Bigram{m->rank, l, r, a, b, m->result});
    std::push_heap(w.heap.begin(), w.heap.end(), Cmp{});
  }

  void encode_word(std::string_view word, Work& w, std::vector<Token>& out) const {
    if (word.empty()) return;
    if (ignore_merges_) {
      std::string enc;
      for (unsigned char c : word) enc += byte_enc_[c];
      Token id = find(enc);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
    }
    const int n = int(word.size());
    if (n == 1) {
      emit(word, byte_tok_[(unsigned char)word[0]], out);
      return;
    }
    w.syms.clear();
    w.heap.clear();
    for (int i = 0; i < n; ++i)
      w.syms.push_back(Sym{i - 1, i + 1 < n ? i + 1 : -1, uint32_t(i), 1, byte_tok_[(unsigned char)word[i]]});
    for (int i = 1; i < n; ++i) add_bigram(w, i - 1, i);
    while (!w.heap.empty()) {
      std::pop_heap(w.heap.begin(), w.heap.end(), Cmp{});
      const Bigram b = w.heap.back();
      w.heap.pop_back();
      Sym& l = w.syms[b.left];
      Sym& r = w.syms[b.right];
      if (l.len == 0 || r.len == 0 || l.next != b.right || l.id != b.lid || r.id != b.rid) continue;
      l.len += r.len;
      l.id = b.result;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) w.syms[r.next].prev = b.left;
      add_bigram(w, l.prev, b.left);
      add_bigram(w, b.left, l.next);
    }
    for (int i = 0; i != -1; i = w.syms[i].next) {
      const Sym& s = w.syms[i];
      emit(word.substr(s.start, s.len), s.id, out);
    }
  }

  // A symbol that is not a vocab token falls back to single-byte tokens of
  // its byte-encoded text, as the reference does (usually none exist).
  void emit(std::string_view bytes, Token id, std::vector<Token>& out) const {
    if (id >= 0 && size_t(id) < text_.size()) {
      out.push_back(id);
      return;
    }
    for (unsigned char c : bytes)
      for (char e : byte_enc_[c]) {
        Token t = find(std::string_view(&e, 1));
        if (t >= 0) out.push_back(t);
      }
  }

  std::vector<Regex> regexes_;
  bool ignore_merges_ = false;
  bool add_bos_default_ = false;
  Token byte_tok_[256];
  std::string byte_enc_[256];
  TokenMap extra_;
  MergeTable merges_;
};

}  // namespace

std::unique_ptr<Vocab> make_bpe(std::string_view pre) { return std::make_unique<Bpe>(pre); }

}  // namespace lmhost::tok
