// Tokenizers on tiny vocabularies built in memory (no golden data needed).
#include <gtest/gtest.h>

#include <cstdio>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using lmhost::StreamDecoder;
using lmhost::Token;
using lmhost::TokenAttr;
using lmhost::Tokenizer;
using lmhost::gguf::File;
using lmhost::gguf::Writer;

namespace {

struct Built {
  std::shared_ptr<File> file;
  std::unique_ptr<Tokenizer> tok;
};

Built build(const Writer& w) {
  auto bytes = w.to_bytes();
  Built b;
  b.file = File::from_bytes(bytes.data(), bytes.size(), "test.gguf");
  b.tok = Tokenizer::from_gguf(*b.file);
  return b;
}

// GPT-2 byte-level character of a byte.
std::string bchar(unsigned char b) {
  uint32_t n = 256, cp = 0;
  for (int x = 0; x < 256; ++x) {
    bool printable = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
    uint32_t c = printable ? uint32_t(x) : n++;
    if (x == b) cp = c;
  }
  std::string s;
  if (cp < 0x80) s.push_back(char(cp));
  else {
    s.push_back(char(0xC0 | (cp >> 6)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  }
  return s;
}

// Byte-level BPE vocab: the 256 byte chars (ids 0..255), then `extra`
// tokens, then `specials` (type given).
struct BpeSpec {
  std::vector<std::string> extra;
  std::vector<std::string> merges;
  std::vector<std::pair<std::string, int>> specials;
  std::string pre = "gpt-2";
};

Built build_bpe(const BpeSpec& s) {
  std::vector<std::string> toks;
  std::vector<int32_t> types;
  for (int b = 0; b < 256; ++b) {
    toks.push_back(bchar((unsigned char)b));
    types.push_back(1);
  }
  for (auto& t : s.extra) {
    toks.push_back(t);
    types.push_back(1);
  }
  for (auto& [t, ty] : s.specials) {
    toks.push_back(t);
    types.push_back(ty);
  }
  Writer w;
  w.set_string("general.architecture", "gpt2");
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", s.pre);
  w.set_string_array("tokenizer.ggml.tokens", toks);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_string_array("tokenizer.ggml.merges", s.merges);
  return build(w);
}

Token id_of(const Tokenizer& t, std::string_view text) {
  for (Token i = 0; i < t.n_vocab(); ++i)
    if (t.token_text(i) == text) return i;
  ADD_FAILURE() << "no token " << text;
  return -1;
}

// SentencePiece vocab: <unk> <s> </s>, 256 byte tokens, then pieces with scores.
Built build_spm(const std::vector<std::pair<std::string, float>>& pieces, bool with_bytes = true,
                std::vector<std::pair<std::string, int>> specials = {}) {
  std::vector<std::string> toks = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  if (with_bytes)
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      toks.push_back(buf);
      scores.push_back(0);
      types.push_back(6);
    }
  for (auto& [p, sc] : pieces) {
    toks.push_back(p);
    scores.push_back(sc);
    types.push_back(1);
  }
  for (auto& [t, ty] : specials) {
    toks.push_back(t);
    scores.push_back(0);
    types.push_back(ty);
  }
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", toks);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  return build(w);
}

const std::string kSp = "\xE2\x96\x81";  // ▁

}  // namespace

TEST(TokenizerBpe, LowestRankMergeAppliesFirst) {
  // "abc": rank 0 is "b c", so the result is a+bc -> "abc" via "a bc";
  // "ab" never forms although "a b" is a merge (rank 1).
  BpeSpec s;
  s.extra = {"ab", "bc", "abc"};
  s.merges = {"b c", "a b", "a bc"};
  auto b = build_bpe(s);
  EXPECT_EQ(b.tok->encode("abc", false, false), (std::vector<Token>{id_of(*b.tok, "abc")}));
  // With "ab c" missing and "a b" first, "abc" ends as ab + c.
  BpeSpec s2;
  s2.extra = {"ab", "bc", "abc"};
  s2.merges = {"a b", "b c", "a bc"};
  auto b2 = build_bpe(s2);
  EXPECT_EQ(b2.tok->encode("abc", false, false), (std::vector<Token>{id_of(*b2.tok, "ab"), Token('c')}));  // byte tokens have id = byte here
}

TEST(TokenizerBpe, EqualRankTiesGoLeftmostAndWordsSplitBySpaces) {
  BpeSpec s;
  s.extra = {"aa", bchar(' ') + "a"};
  s.merges = {"a a", bchar(' ') + " a"};
  auto b = build_bpe(s);
  const Token aa = id_of(*b.tok, "aa"), a = Token('a'), sp = Token(' ');
  EXPECT_EQ(b.tok->encode("aaa", false, false), (std::vector<Token>{aa, a}));
  // " aaa" is one pre-token word; "a a" (rank 0) beats "Ġ a" (rank 1)
  // although the latter is further left, and then "Ġ" has no partner.
  EXPECT_EQ(b.tok->encode("aa aaa", false, false), (std::vector<Token>{aa, sp, aa, a}));
  EXPECT_EQ(b.tok->encode(" a", false, false), (std::vector<Token>{id_of(*b.tok, bchar(' ') + "a")}));
}

TEST(TokenizerBpe, DecodeRoundTripsArbitraryBytesAndUnicode) {
  BpeSpec s;
  auto b = build_bpe(s);
  for (std::string text : {std::string("Hello, world!\n\tx"), std::string("Ünïcödé — “q” 🙂 中文"),
                           std::string("\x01\x02 \x7f")}) {
    auto ids = b.tok->encode(text, false, false);
    EXPECT_EQ(b.tok->decode(ids), text);
  }
  // Ill-formed UTF-8 is tokenized as U+FFFD rather than crashing.
  auto ids = b.tok->encode(std::string("a\xFF" "b"), false, false);
  EXPECT_EQ(b.tok->decode(ids), "a\xEF\xBF\xBD" "b");
}

TEST(TokenizerBpe, SpecialTokensAreCutOutOnlyWhenParsingSpecials) {
  BpeSpec s;
  s.pre = "qwen2";
  s.specials = {{"<|im_end|>", 3}, {"<|im_start|>", 3}, {"<tool>", 4}};
  auto b = build_bpe(s);
  const Token end = id_of(*b.tok, "<|im_end|>"), start = id_of(*b.tok, "<|im_start|>"), tool = id_of(*b.tok, "<tool>");
  auto ids = b.tok->encode("<|im_start|>hi<|im_end|>", false, true);
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids.front(), start);
  EXPECT_EQ(ids.back(), end);
  // parse_special=false: control text stays text; user-defined tokens are still cut out.
  auto plain = b.tok->encode("<|im_end|><tool>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), end), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), tool), 1);
  EXPECT_EQ(b.tok->decode(plain), "<|im_end|><tool>");
  // Control tokens render as nothing unless asked; <|im_end|> ends generation.
  EXPECT_EQ(b.tok->token_to_piece(end), "");
  EXPECT_EQ(b.tok->token_to_piece(end, true), "<|im_end|>");
  EXPECT_TRUE(b.tok->is_eog(end));
  EXPECT_FALSE(b.tok->is_eog(start));
  EXPECT_EQ(b.tok->token_attr(end), TokenAttr::Control);
}

TEST(TokenizerBpe, UnknownPreTokenizerIsAClearError) {
  BpeSpec s;
  s.pre = "no-such-pre";
  try {
    build_bpe(s);
    FAIL() << "expected an error";
  } catch (const lmhost::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-pre"), std::string::npos);
  }
}

TEST(TokenizerSpm, ScoresDecideMergesAndSpacePrefixIsAdded) {
  auto b = build_spm({{kSp, -1}, {"a", -2}, {"b", -2}, {"c", -2}, {kSp + "a", -3}, {"bc", -1.5f}, {"ab", -0.5f},
                      {kSp + "ab", -4}});
  const auto& t = *b.tok;
  // "▁abc": "ab" (-0.5) beats "bc" (-1.5) and "▁a" (-3); then "▁ab" (-4).
  EXPECT_EQ(t.encode("abc", false, false), (std::vector<Token>{id_of(t, kSp + "ab"), id_of(t, "c")}));
  EXPECT_EQ(t.encode("abc", true, false).front(), 1);  // BOS
  EXPECT_EQ(t.decode(t.encode("abc", true, false)), "abc");
}

TEST(TokenizerSpm, UnknownCharactersFallBackToBytes) {
  auto b = build_spm({{kSp, -1}, {"a", -2}});
  const auto& t = *b.tok;
  auto ids = t.encode("a€", false, false);  // € = E2 82 AC
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(ids[0], id_of(t, kSp));
  EXPECT_EQ(ids[1], id_of(t, "a"));
  EXPECT_EQ(ids[2], id_of(t, "<0xE2>"));
  EXPECT_EQ(ids[3], id_of(t, "<0x82>"));
  EXPECT_EQ(ids[4], id_of(t, "<0xAC>"));
  EXPECT_EQ(t.token_to_piece(ids[2]), "\xE2");
  EXPECT_EQ(t.decode(ids), "a€");
}

TEST(TokenizerSpm, SpecialTokenSplitsTextAndNextTextGetsSpacePrefix) {
  auto b = build_spm({{kSp, -1}, {"a", -2}, {kSp + "a", -1}}, true, {{"<|end|>", 3}});
  const auto& t = *b.tok;
  const Token end = id_of(t, "<|end|>"), sa = id_of(t, kSp + "a");
  EXPECT_EQ(t.encode("a<|end|>a", false, true), (std::vector<Token>{sa, end, sa}));
}

TEST(TokenizerStream, MultiByteCharacterSplitAcrossTokensIsHeldBack) {
  auto b = build_spm({{kSp, -1}, {"a", -2}});
  const auto& t = *b.tok;
  StreamDecoder d(t);
  std::string out;
  EXPECT_EQ(d.push(id_of(t, "a")), "a");
  EXPECT_EQ(d.push(id_of(t, "<0xE2>")), "");
  EXPECT_EQ(d.push(id_of(t, "<0x82>")), "");
  EXPECT_EQ(d.push(id_of(t, "<0xAC>")), "€");
  // A byte that can never be valid becomes U+FFFD at once.
  EXPECT_EQ(d.push(id_of(t, "<0xFF>")), "\xEF\xBF\xBD");
  // A lead byte followed by a non-continuation: U+FFFD then the char.
  EXPECT_EQ(d.push(id_of(t, "<0xE2>")), "");
  EXPECT_EQ(d.push(id_of(t, "a")), "\xEF\xBF\xBD" "a");
  // An incomplete sequence at the end is flushed as U+FFFD.
  EXPECT_EQ(d.push(id_of(t, "<0xF0>")), "");
  EXPECT_EQ(d.push(id_of(t, "<0x9F>")), "");
  EXPECT_EQ(d.flush(), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(TokenizerStream, NeverEmitsInvalidUtf8AndMatchesDecode) {
  BpeSpec s;
  auto b = build_bpe(s);
  const auto& t = *b.tok;
  const std::string text = "Ünïcödé — “quotes” 🙂 中文字符 end";
  auto ids = t.encode(text, false, false);  // single-byte tokens: every multi-byte char is split
  ASSERT_GT(ids.size(), 30u);
  StreamDecoder d(t);
  std::string all;
  for (Token id : ids) {
    std::string piece = d.push(id);
    // Each emitted chunk is complete UTF-8 on its own.
    for (size_t i = 0; i < piece.size();) {
      unsigned char c = (unsigned char)piece[i];
      size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      ASSERT_LE(i + n, piece.size()) << "broken UTF-8 emitted";
      for (size_t k = 1; k < n; ++k) ASSERT_EQ((unsigned char)piece[i + k] & 0xC0, 0x80);
      i += n;
    }
    all += piece;
  }
  all += d.flush();
  EXPECT_EQ(all, text);
}

TEST(TokenizerWpm, WordPieceWithUnknownsPunctuationAndClsSep) {
  std::vector<std::string> toks = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", kSp + "hello", kSp + "world", kSp + "un",
                                   "known", kSp + ",", kSp + "!", kSp + "cafe"};
  std::vector<int32_t> types = {3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1};
  Writer w;
  w.set_string("general.architecture", "bert");
  w.set_string("tokenizer.ggml.model", "bert");
  w.set_string_array("tokenizer.ggml.tokens", toks);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.unknown_token_id", 1);
  w.set_u32("tokenizer.ggml.cls_token_id", 2);
  w.set_u32("tokenizer.ggml.seperator_token_id", 3);
  w.set_u32("tokenizer.ggml.padding_token_id", 0);
  auto b = build(w);
  const auto& t = *b.tok;
  EXPECT_EQ(t.encode("Hello, WORLD!", false, false), (std::vector<Token>{4, 8, 5, 9}));
  EXPECT_EQ(t.encode("unknown", false, false), (std::vector<Token>{6, 7}));
  // A word that cannot be covered is one [UNK]; accents of precomposed letters are dropped.
  EXPECT_EQ(t.encode("hello xyz Café", false, false), (std::vector<Token>{4, 1, 10}));
  EXPECT_EQ(t.encode("hello", true, false), (std::vector<Token>{2, 4, 3}));
  EXPECT_EQ(t.encode("", true, false), (std::vector<Token>{2, 3}));
  EXPECT_EQ(t.bos(), 2);
  EXPECT_EQ(t.eos(), 3);
  EXPECT_EQ(t.decode(t.encode("hello world", false, false)), "hello world");
}

TEST(TokenizerLoad, MissingOrUnsupportedTokenizerIsAClearError) {
  Writer w;
  w.set_string("general.architecture", "llama");
  auto bytes = w.to_bytes();
  auto f = File::from_bytes(bytes.data(), bytes.size(), "x.gguf");
  EXPECT_THROW(Tokenizer::from_gguf(*f), lmhost::Error);

  Writer w2;
  w2.set_string("tokenizer.ggml.model", "rwkv");
  w2.set_string_array("tokenizer.ggml.tokens", {"a"});
  auto bytes2 = w2.to_bytes();
  auto f2 = File::from_bytes(bytes2.data(), bytes2.size(), "y.gguf");
  try {
    Tokenizer::from_gguf(*f2);
    FAIL();
  } catch (const lmhost::Error& e) {
    EXPECT_NE(std::string(e.what()).find("rwkv"), std::string::npos);
  }

  Writer w3;  // scores of the wrong length
  w3.set_string("tokenizer.ggml.model", "llama");
  w3.set_string_array("tokenizer.ggml.tokens", {"a", "b"});
  w3.set_f32_array("tokenizer.ggml.scores", {0.0f});
  auto bytes3 = w3.to_bytes();
  auto f3 = File::from_bytes(bytes3.data(), bytes3.size(), "z.gguf");
  EXPECT_THROW(Tokenizer::from_gguf(*f3), lmhost::Error);
}

TEST(TokenizerLoad, OutOfRangeIdsAreHandled) {
  auto b = build_spm({{kSp, -1}});
  EXPECT_THROW(b.tok->token_text(999999), lmhost::Error);
  EXPECT_EQ(b.tok->token_to_piece(-5), "");
  EXPECT_FALSE(b.tok->is_eog(-1));
}

TEST(TokenizerRobustness, RandomBytesNeverCrashAndIdsAreInRange) {
  BpeSpec s;
  s.pre = "llama-bpe";
  s.specials = {{"<|end|>", 3}, {"<u>", 4}};
  s.extra = {"ab", bchar(' ') + "a"};
  s.merges = {"a b", bchar(' ') + " a"};
  auto bpe = build_bpe(s);
  auto spm = build_spm({{kSp, -1}, {"a", -2}, {kSp + "a", -1}}, true, {{"<|end|>", 3}});
  Writer w;
  w.set_string("tokenizer.ggml.model", "bert");
  w.set_string_array("tokenizer.ggml.tokens", {"[PAD]", "[UNK]", "[CLS]", "[SEP]", kSp + "a", "b"});
  w.set_u32("tokenizer.ggml.unknown_token_id", 1);
  auto wpm = build(w);
  const char* pieces[] = {"a", "b", " ", "\n", "<|end|>", "<u>", "\xE2\x82", "\xAC", "\xFF", "\xF0\x9F\x99\x82",
                          "'s", "1234", "\t\t", "\xC0\xAF", "\xED\xA0\x80", "\0"};
  uint64_t rng = 12345;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text;
    const int n = int(rng % 12);
    for (int k = 0; k < n; ++k) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      const size_t pi = (rng >> 33) % (sizeof pieces / sizeof pieces[0]);
      text += pi == 15 ? std::string(1, '\0') : std::string(pieces[pi]);
    }
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    for (const Tokenizer* t : {bpe.tok.get(), spm.tok.get(), wpm.tok.get()}) {
      for (bool add : {false, true})
        for (bool ps : {false, true}) {
          auto ids = t->encode(text, add, ps);
          for (Token id : ids) ASSERT_TRUE(id >= 0 && id < t->n_vocab()) << t->model_name();
          StreamDecoder d(*t, ps);
          std::string streamed;
          for (Token id : ids) streamed += d.push(id);
          streamed += d.flush();
          (void)t->decode(ids);
        }
    }
    // Byte-level BPE keeps every valid UTF-8 input exactly.
    auto ids = bpe.tok->encode(text, false, true);
    std::string dec = bpe.tok->decode(ids, true);
    bool valid = true;
    for (size_t i = 0; i < text.size() && valid;) {
      unsigned char c = (unsigned char)text[i];
      if (c < 0x80) { ++i; continue; }
      valid = false;  // (the pieces above only form valid UTF-8 in the 4-byte emoji)
      if (text.compare(i, 4, "\xF0\x9F\x99\x82") == 0) { valid = true; i += 4; }
    }
    if (valid) {
      EXPECT_EQ(dec, text);
    }
  }
}

// Every pre-tokenizer we name must compile and round-trip text in every
// script its rules single out (a regex that fails to compile would only show
// when a user loads such a model).
TEST(TokenizerBpe, EveryNamedPreTokenizerCompilesAndRoundTrips) {
  const std::string text = "Hello wörld 12345 ὕ ώ ΐ Ω K ﬀ 中文 한국어 カタカナ 'll don't\n\n  tabs\t!!";
  for (const char* pre :
       {"default", "gpt-2", "gpt2", "llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe",
        "deepseek-llm", "deepseek-v3", "deepseek-coder", "falcon", "starcoder", "refact", "command-r", "smollm",
        "codeshell", "exaone", "minerva-7b", "mpt", "olmo", "jais", "phi-2", "jina-es", "jina-de", "gigachat",
        "jina-v1-en", "qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan", "poro-chat", "bloom",
        "gpt3-finnish", "viking", "tekken", "gpt-4o", "gpt-neox", "roberta-bpe"}) {
    SCOPED_TRACE(pre);
    BpeSpec s;
    s.pre = pre;
    Built b;
    ASSERT_NO_THROW(b = build_bpe(s));
    auto ids = b.tok->encode(text, false, false);
    EXPECT_EQ(b.tok->decode(ids), text);
  }
}
