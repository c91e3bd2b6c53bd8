// Synthetic GGUF models (see synth.h).
#include "model/synth.h"
#include "model/synth_util.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "gguf/gguf.h"
#include "tensor/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

namespace lmhost::model {

namespace {

// ------------------------------------------------------------ training text
// Our own plain English; the tokenizers' merges are learned from it.
constexpr const char* kTrainingText = R"(The sun rose over the quiet town, and the people began their day. A baker opened the door of the shop and the smell of fresh bread filled the street. Children walked to school with their books, talking about the games they would play after class. The teacher wrote a question on the board: what is the best way to learn something new? One student said that you should read a lot. Another said that you should practice every day, even when it is hard. The teacher smiled and said that both answers were right, because learning takes time, patience and a little bit of courage.

In the afternoon the weather changed. Dark clouds came in from the sea and the wind started to blow. It rained for an hour, and then the sky was clear again. The streets were wet and bright, and the air was cool. An old man sat on a bench in the park and watched the birds. He remembered the years when he was young and worked on the ships that sailed across the ocean. He had seen many places and met many people, and he liked to tell their stories to anyone who would listen.

Computers are machines that follow instructions. A program is a list of those instructions, written in a language that the computer can understand. When you write a program, you describe the steps that solve a problem: read the input, compute the answer, and write the output. Good programs are simple and clear. They check their input, they handle errors with care, and they are tested before they are used. A model that predicts the next word in a sentence is also a program. It learns patterns from a large amount of text and uses numbers to decide which word should come next.

To make a good cup of tea, boil fresh water and pour it over the leaves. Wait for three or four minutes, then remove the leaves and add milk or honey if you like. Some people prefer coffee in the morning and tea in the evening. Others drink water all day and say that it is the healthiest choice. What do you think? There is no single right answer; it depends on what you enjoy and what makes you feel well.

The library was open until nine o'clock. Inside, the rooms were warm and quiet, and the shelves were full of books about history, science, music and art. A young woman was looking for a book about the stars. The librarian helped her find it and told her that the city would open a new observatory next month. "You can see the planets through the big telescope," she said. "It is one of the most beautiful things I have ever seen."

Hello! How are you today? I am fine, thank you. Can you help me with a question? Of course, I would be happy to help. Please tell me what you need, and I will do my best to give you a useful answer. Numbers like 1, 2, 3, 10, 42 and 2024 appear in text too, as do symbols such as (parentheses), [brackets], "quotes", commas, periods and question marks.
)";

// ------------------------------------------------------------ BPE trainer

// Learns up to max_merges merges over words (sequences of symbols) with
// frequencies; ties break on the lexicographically smallest pair, so the
// result is deterministic.
std::vector<std::pair<std::string, std::string>> train_bpe(std::vector<std::pair<std::vector<std::string>, int>> words,
                                                           size_t max_merges) {
  std::vector<std::pair<std::string, std::string>> merges;
  while (merges.size() < max_merges) {
    std::map<std::pair<std::string, std::string>, int> counts;
    for (auto& [syms, freq] : words)
      for (size_t i = 0; i + 1 < syms.size(); ++i) counts[{syms[i], syms[i + 1]}] += freq;
    const std::pair<std::string, std::string>* best = nullptr;
    int best_n = 0;
    for (auto& [pair, n] : counts)
      if (n > best_n) best = &pair, best_n = n;
    if (!best) break;
    const auto pair = *best;
    merges.push_back(pair);
    const std::string joined = pair.first + pair.second;
    for (auto& [syms, freq] : words) {
      std::vector<std::string> out;
      out.reserve(syms.size());
      for (size_t i = 0; i < syms.size(); ++i) {
        if (i + 1 < syms.size() && syms[i] == pair.first && syms[i + 1] == pair.second) {
          out.push_back(joined);
          ++i;
        } else {
          out.push_back(syms[i]);
        }
      }
      syms.swap(out);
    }
  }
  return merges;
}

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xc0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    s += static_cast<char>(0xe0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// GPT-2 byte-level alphabet: printable bytes stand for themselves, the others
// map to code points 256, 257, ... in byte order.
const std::vector<std::string>& byte_symbols() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      append_utf8(t[b], printable ? b : next++);
    }
    return t;
  }();
  return table;
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '\''; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// GPT-2-like pre-tokenization of the training text: " word", single digits,
// " punctuation", whitespace runs.
std::vector<std::string> pretokenize_bytelevel(const std::string& text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    if (text[j] == ' ' && j + 1 < text.size() && text[j + 1] != ' ' && text[j + 1] != '\n') ++j;
    if (is_alpha(text[j])) {
      while (j < text.size() && is_alpha(text[j])) ++j;
    } else if (is_digit(text[j])) {
      ++j;
      if (j - i > 1) j = i + 1;  // the space goes alone before a digit
    } else if (text[j] == ' ' || text[j] == '\n') {
      while (j < text.size() && text[j] == text[i]) ++j;
    } else {
      while (j < text.size() && !is_alpha(text[j]) && !is_digit(text[j]) && text[j] != ' ' && text[j] != '\n') ++j;
    }
    if (j == i) ++j;
    out.push_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;  // 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
  std::vector<float> scores;   // SPM only
  std::vector<std::string> merges;
  int64_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1;
  bool add_bos = false;
  std::string model, pre, chat_template;
};

constexpr int kNormal = 1, kUnknown = 2, kControl = 3, kUnused = 5, kByte = 6;

void add_token(Vocab& v, std::string text, int type, float score = 0.0f) {
  v.tokens.push_back(std::move(text));
  v.types.push_back(type);
  v.scores.push_back(score);
}

void pad_to(Vocab& v, int64_t n) {
  while (static_cast<int64_t>(v.tokens.size()) < n)
    add_token(v, "<|reserved_" + std::to_string(v.tokens.size()) + "|>", kUnused, -1e4f);
}

constexpr const char* kChatMLTemplate =
    R"({%- for message in messages -%}
{%- if loop.first and message['role'] != 'system' -%}
{{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' -}}
{%- endif -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%})";

constexpr const char* kLlama3Template =
    R"({{- bos_token -}}
{%- for message in messages -%}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + (message['content'] | trim) + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%})";

constexpr const char* kZephyrTemplate =
    R"({%- for message in messages -%}
{{- '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|assistant|>\n' -}}
{%- endif -%})";

Vocab build_bpe_vocab(const SynthSpec& spec) {
  Vocab v;
  v.model = "gpt2";
  const bool qwen = spec.tokenizer == SynthTokenizer::Qwen;
  v.pre = qwen ? "qwen2" : "llama-bpe";
  std::vector<std::string> specials;
  if (qwen) {
    specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  } else {
    specials = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
  }
  // Where the special tokens start: the real models' ids when the vocab is
  // the real size, right after the learned tokens otherwise.
  const int64_t real_base = qwen ? 151643 : 128000;
  const int64_t n_special = static_cast<int64_t>(specials.size());
  if (spec.vocab < 256 + n_special)
    throw Error("synth: vocab " + std::to_string(spec.vocab) + " is too small for a byte-level BPE vocab (need >= " +
                std::to_string(256 + n_special) + ")");
  const int64_t special_base = spec.vocab >= real_base + n_special ? real_base : -1;
  const int64_t regular_budget = (special_base >= 0 ? special_base : spec.vocab - n_special) - 256;

  // Training words in the byte-level alphabet. BPE is greedy, so the first k
  // merges of a full training run are the merges of a run limited to k: train
  // once per process and take a prefix.
  static const auto all_merges = [] {
    std::map<std::string, int> freq;
    for (auto& w : pretokenize_bytelevel(kTrainingText)) freq[w]++;
    std::vector<std::pair<std::vector<std::string>, int>> words;
    for (auto& [w, n] : freq) {
      std::vector<std::string> syms;
      for (unsigned char c : w) syms.push_back(byte_symbols()[c]);
      words.emplace_back(std::move(syms), n);
    }
    return train_bpe(std::move(words), SIZE_MAX);
  }();
  auto merges = all_merges;
  merges.resize(std::min(merges.size(), static_cast<size_t>(std::max<int64_t>(0, regular_budget))));

  for (int b = 0; b < 256; ++b) add_token(v, byte_symbols()[b], kNormal);
  std::unordered_set<std::string> seen(v.tokens.begin(), v.tokens.end());
  for (auto& [a, b] : merges) {
    v.merges.push_back(a + " " + b);
    if (seen.insert(a + b).second) add_token(v, a + b, kNormal);
  }
  if (special_base >= 0) pad_to(v, special_base);
  const int64_t first_special = static_cast<int64_t>(v.tokens.size());
  for (auto& s : specials) add_token(v, s, kControl);
  if (!qwen) {  // Llama 3 has 256 special ids; the rest are reserved controls
    for (int i = 3; static_cast<int64_t>(v.tokens.size()) < std::min<int64_t>(spec.vocab, first_special + 256); ++i)
      add_token(v, "<|reserved_special_token_" + std::to_string(i) + "|>", kControl);
  }
  pad_to(v, spec.vocab);
  if (qwen) {
    v.bos = first_special;      // <|endoftext|>
    v.eos = first_special + 2;  // <|im_end|>
    v.eot = first_special + 2;
    v.pad = first_special;
    v.add_bos = false;
    v.chat_template = kChatMLTemplate;
  } else {
    v.bos = first_special;      // <|begin_of_text|>
    v.eos = first_special + 9;  // <|eot_id|>
    v.eot = first_special + 9;
    v.pad = first_special + 4;  // <|finetune_right_pad_id|>
    v.add_bos = true;
    v.chat_template = kLlama3Template;
  }
  return v;
}

Vocab build_spm_vocab(const SynthSpec& spec) {
  Vocab v;
  v.model = "llama";
  v.pre = "default";
  const std::string space = "\xe2\x96\x81";  // U+2581, SentencePiece's space
  add_token(v, "<unk>", kUnknown);
  add_token(v, "<s>", kControl);
  add_token(v, "</s>", kControl);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    add_token(v, buf, kByte);
  }
  // Words are "▁word" (punctuation stays attached, as SentencePiece sees it).
  // Trained once per process; a smaller vocab takes a prefix of the merges.
  struct Trained {
    std::set<std::string> chars;
    std::vector<std::pair<std::string, std::string>> merges;
  };
  static const Trained trained = [&space] {
    Trained t;
    t.chars.insert(space);
    std::map<std::string, int> freq;
    const std::string text = kTrainingText;
    size_t i = 0;
    while (i < text.size()) {
      while (i < text.size() && (text[i] == ' ' || text[i] == '\n')) ++i;
      size_t j = i;
      while (j < text.size() && text[j] != ' ' && text[j] != '\n') ++j;
      if (j > i) freq[space + text.substr(i, j - i)]++;
      i = j;
    }
    std::vector<std::pair<std::vector<std::string>, int>> words;
    for (auto& [w, n] : freq) {
      std::vector<std::string> syms;
      for (size_t k = 0; k < w.size();) {  // UTF-8 characters
        const unsigned char c = static_cast<unsigned char>(w[k]);
        const size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        syms.push_back(w.substr(k, len));
        t.chars.insert(syms.back());
        k += len;
      }
      words.emplace_back(std::move(syms), n);
    }
    t.merges = train_bpe(std::move(words), SIZE_MAX);
    return t;
  }();
  const auto& chars = trained.chars;
  const int64_t budget = spec.vocab - static_cast<int64_t>(v.tokens.size()) - static_cast<int64_t>(chars.size());
  if (budget < 0)
    throw Error("synth: vocab " + std::to_string(spec.vocab) + " is too small for a SentencePiece vocab (need >= " +
                std::to_string(v.tokens.size() + chars.size()) + ")");
  auto merges = trained.merges;
  merges.resize(std::min(merges.size(), static_cast<size_t>(budget)));
  std::unordered_set<std::string> seen(v.tokens.begin(), v.tokens.end());
  float score = 0.0f;
  for (auto& [a, b] : merges)  // earlier merges score higher, as in a BPE-trained SentencePiece model
    if (seen.insert(a + b).second) add_token(v, a + b, kNormal, score--);
  for (auto& c : chars)
    if (seen.insert(c).second) add_token(v, c, kNormal, score--);
  pad_to(v, spec.vocab);
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  v.add_bos = true;
  v.chat_template = kZephyrTemplate;
  return v;
}

// ------------------------------------------------------------ random weights

using synth_util::approx_normal;
using synth_util::hash_name;
using synth_util::splitmix64;

struct TensorPlan {
  std::string name;
  std::vector<int64_t> dims;
  DType type;
  enum Kind { Matrix, Norm, Bias, RopeFreqs } kind;
};

std::string upper(std::string_view s) {
  std::string u(s);
  for (auto& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return u;
}

bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

int64_t layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::atoll(name.c_str() + 4);
}

DType k_fallback(DType t, int64_t row) {
  if (row % 256 == 0) return t;
  switch (t) {
    case DType::Q4_K: return DType::Q5_0;
    case DType::Q5_K: return DType::Q5_1;
    case DType::Q6_K: return DType::Q8_0;
    default: return t;
  }
}

std::vector<float> llama3_rope_factors(const SynthSpec& s) {
  const int64_t hd = s.head_dim();
  std::vector<float> f(static_cast<size_t>(hd / 2));
  const double low_wavelen = static_cast<double>(s.rope_orig_ctx) / s.rope_low_freq;
  const double high_wavelen = static_cast<double>(s.rope_orig_ctx) / s.rope_high_freq;
  for (int64_t i = 0; i < hd / 2; ++i) {
    const double freq = 1.0 / std::pow(static_cast<double>(s.rope_base), 2.0 * i / hd);
    const double wavelen = 2.0 * M_PI / freq;
    double factor;
    if (wavelen < high_wavelen) {
      factor = 1.0;
    } else if (wavelen > low_wavelen) {
      factor = s.rope_factor;
    } else {
      const double smooth = (s.rope_orig_ctx / wavelen - s.rope_low_freq) / (s.rope_high_freq - s.rope_low_freq);
      factor = 1.0 / ((1.0 - smooth) / s.rope_factor + smooth);
    }
    f[static_cast<size_t>(i)] = static_cast<float>(factor);
  }
  return f;
}

}  // namespace

// ------------------------------------------------------------ public API

void SynthSpec::validate() const {
  auto bad = [](const std::string& m) { throw Error("synth: " + m); };
  const bool encoder = arch == "bert" || arch == "nomic-bert";
  if (arch != "llama" && arch != "qwen2" && !encoder)
    bad("unsupported architecture '" + arch + "' (llama, qwen2, bert or nomic-bert)");
  if (encoder && kv_heads != heads) bad("kv-heads must equal heads for " + arch);
  if (encoder && (pooling < 1 || pooling > 3)) bad("pooling must be 1 (mean), 2 (cls) or 3 (last)");
  if (dim <= 0 || layers <= 0 || heads <= 0 || kv_heads <= 0 || ff <= 0 || vocab <= 0 || ctx <= 0)
    bad("dimensions must be positive");
  if (dim % heads != 0) bad("dim " + std::to_string(dim) + " is not a multiple of heads " + std::to_string(heads));
  if (heads % kv_heads != 0)
    bad("heads " + std::to_string(heads) + " is not a multiple of kv-heads " + std::to_string(kv_heads));
  if (head_dim() % 2 != 0) bad("head dimension " + std::to_string(head_dim()) + " must be even");
  if (dim % 32 != 0 || ff % 32 != 0) bad("dim and ff must be multiples of 32 (quantization block size)");
  if (!synth_file_type_id(type)) bad("unknown type '" + type + "'");
  if (dim > (1 << 20) || ff > (1 << 22) || layers > 1024 || vocab > (1 << 24) || heads > 4096)
    bad("dimensions are implausibly large");
}

std::vector<std::string> synth_shape_names() {
  return {"qwen2.5-0.5b", "llama-3.2-1b", "tinyllama-1.1b", "demo",
          "minilm-l6", "bge-small", "nomic-embed-text", "demo-embed"};
}

std::vector<std::string> synth_file_types() {
  return {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K"};
}

std::optional<int> synth_file_type_id(std::string_view type) {
  const std::string t = upper(type);
  static const std::map<std::string, int> ids = {
      {"F32", 0}, {"F16", 1}, {"Q4_0", 2}, {"Q4_1", 3}, {"Q8_0", 7}, {"Q5_0", 8},
      {"Q5_1", 9}, {"Q4_K_M", 15}, {"Q5_K_M", 17}, {"Q6_K", 18}, {"BF16", 32},
  };
  auto it = ids.find(t);
  if (it == ids.end()) return std::nullopt;
  return it->second;
}

std::optional<SynthSpec> synth_shape(std::string_view name) {
  SynthSpec s;
  if (name == "qwen2.5-0.5b") {
    s.name = "Qwen2.5-0.5B (synthetic)";
    s.arch = "qwen2";
    s.dim = 896, s.layers = 24, s.heads = 14, s.kv_heads = 2, s.ff = 4864, s.vocab = 151936, s.ctx = 32768;
    s.rms_eps = 1e-6f, s.rope_base = 1000000.0f, s.tied = true, s.qkv_bias = true;
    s.tokenizer = SynthTokenizer::Qwen;
  } else if (name == "llama-3.2-1b") {
    s.name = "Llama-3.2-1B (synthetic)";
    s.arch = "llama";
    s.dim = 2048, s.layers = 16, s.heads = 32, s.kv_heads = 8, s.ff = 8192, s.vocab = 128256, s.ctx = 131072;
    s.rms_eps = 1e-5f, s.rope_base = 500000.0f, s.tied = true;
    s.llama3_rope = true, s.rope_factor = 32.0f, s.rope_low_freq = 1.0f, s.rope_high_freq = 4.0f;
    s.rope_orig_ctx = 8192;
    s.tokenizer = SynthTokenizer::Llama3;
  } else if (name == "tinyllama-1.1b") {
    s.name = "TinyLlama-1.1B (synthetic)";
    s.arch = "llama";
    s.dim = 2048, s.layers = 22, s.heads = 32, s.kv_heads = 4, s.ff = 5632, s.vocab = 32000, s.ctx = 2048;
    s.rms_eps = 1e-5f, s.rope_base = 10000.0f, s.tied = false;
    s.tokenizer = SynthTokenizer::Spm;
  } else if (name == "demo") {
    s.name = "lmhost demo (synthetic)";
    s.arch = "llama";
    s.dim = 128, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.ff = 256, s.vocab = 2048, s.ctx = 2048;
    s.rms_eps = 1e-5f, s.rope_base = 10000.0f, s.tied = false;
    s.tokenizer = SynthTokenizer::Qwen;
  } else if (name == "minilm-l6" || name == "bge-small" || name == "demo-embed") {  // bert encoders
    s.arch = "bert";
    s.dim = 384, s.layers = name == "minilm-l6" ? 6 : 12, s.heads = 12, s.kv_heads = 12, s.ff = 1536;
    s.vocab = 30522, s.ctx = 512, s.pooling = name == "bge-small" ? 2 : 1;
    s.name = name == "minilm-l6" ? "all-MiniLM-L6-v2 (synthetic)" : "bge-small-en-v1.5 (synthetic)";
    if (name == "demo-embed") {
      s.name = "lmhost demo-embed (synthetic)";
      s.dim = 128, s.layers = 2, s.heads = 4, s.kv_heads = 4, s.ff = 256, s.vocab = 4096;
    }
  } else if (name == "nomic-embed-text") {
    s.name = "nomic-embed-text-v1.5 (synthetic)";
    s.arch = "nomic-bert";
    s.dim = 768, s.layers = 12, s.heads = 12, s.kv_heads = 12, s.ff = 3072, s.vocab = 30522, s.ctx = 2048;
    s.rope_base = 1000.0f, s.pooling = 1;
  } else {
    return std::nullopt;
  }
  return s;
}

DType synth_tensor_type(const SynthSpec& spec, const std::string& name, const std::vector<int64_t>& dims) {
  if (dims.size() < 2) return DType::F32;  // norms, biases, rope factors
  const std::string ft = upper(spec.type);
  const int64_t row = dims[0];
  if (ft == "F32") return DType::F32;
  if (ft == "F16") return DType::F16;
  if (ft == "BF16") return DType::BF16;
  const bool is_output = name == "output.weight" || (spec.tied && name == "token_embd.weight");
  if (is_output) return ft == "Q8_0" ? DType::Q8_0 : k_fallback(DType::Q6_K, row);
  if (ft == "Q8_0") return DType::Q8_0;
  if (ft == "Q4_0") return DType::Q4_0;
  if (ft == "Q4_1") return DType::Q4_1;
  if (ft == "Q5_0") return DType::Q5_0;
  if (ft == "Q5_1") return DType::Q5_1;
  if (ft == "Q6_K") return k_fallback(DType::Q6_K, row);
  const DType base = ft == "Q4_K_M" ? DType::Q4_K : DType::Q5_K;  // Q4_K_M / Q5_K_M
  const int64_t layer = layer_of(name);
  const bool v_or_down = name.find(".attn_v.weight") != std::string::npos || name.find(".ffn_down.weight") != std::string::npos;
  if (layer >= 0 && v_or_down && use_more_bits(layer, spec.layers)) return k_fallback(DType::Q6_K, row);
  return k_fallback(base, row);
}

void synth_util::fill_rows(DType type, int64_t row, uint8_t* dst, size_t nbytes, unsigned n_threads,
                           const std::function<void(int64_t r, float* buf)>& gen) {
  const size_t rb = row_bytes(type, row);
  const int64_t rows = static_cast<int64_t>(nbytes / rb);
  auto work = [&](int64_t r0, int64_t r1) {
    std::vector<float> buf(static_cast<size_t>(row));
    for (int64_t r = r0; r < r1; ++r) {
      gen(r, buf.data());
      uint8_t* out = dst + static_cast<size_t>(r) * rb;
      switch (type) {
        case DType::F32: std::memcpy(out, buf.data(), rb); break;
        case DType::F16:
          for (int64_t i = 0; i < row; ++i) {
            const uint16_t h = fp32_to_fp16(buf[i]);
            std::memcpy(out + 2 * i, &h, 2);
          }
          break;
        case DType::BF16:
          for (int64_t i = 0; i < row; ++i) {
            const uint16_t h = fp32_to_bf16(buf[i]);
            std::memcpy(out + 2 * i, &h, 2);
          }
          break;
        default: quantize_row(type, buf.data(), out, row); break;
      }
    }
  };
  if (n_threads <= 1 || rows / static_cast<int64_t>(n_threads) < 16) {
    work(0, rows);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(n_threads);
  for (unsigned k = 0; k < n_threads; ++k) {
    const int64_t r0 = rows * k / n_threads, r1 = rows * (k + 1) / n_threads;
    pool.emplace_back([&, k, r0, r1] {
      try {
        work(r0, r1);
      } catch (...) {
        errors[k] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

SynthResult synth_model(const SynthSpec& spec, const std::string& path, int threads) {
  const auto t0 = std::chrono::steady_clock::now();
  spec.validate();
  if (spec.arch == "bert" || spec.arch == "nomic-bert") return synth_encoder_model(spec, path, threads);
  const Vocab vocab = spec.tokenizer == SynthTokenizer::Spm ? build_spm_vocab(spec) : build_bpe_vocab(spec);
  if (static_cast<int64_t>(vocab.tokens.size()) != spec.vocab) throw Error("synth: internal error: vocab size mismatch");

  gguf::Writer w;
  const std::string& a = spec.arch;
  w.set_string("general.architecture", a);
  w.set_string("general.name", spec.name);
  w.set_string("general.description", "synthetic model written by lmhost synth: random weights, seed " +
                                          std::to_string(spec.seed));
  w.set_u32("general.file_type", static_cast<uint32_t>(*synth_file_type_id(spec.type)));
  w.set_u32("general.quantization_version", 2);
  w.set_u32(a + ".context_length", static_cast<uint32_t>(spec.ctx));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(spec.dim));
  w.set_u32(a + ".block_count", static_cast<uint32_t>(spec.layers));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(spec.ff));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(spec.heads));
  w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(spec.kv_heads));
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", spec.rms_eps);
  w.set_f32(a + ".rope.freq_base", spec.rope_base);
  w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(spec.head_dim()));
  if (a == "llama") w.set_u32(a + ".vocab_size", static_cast<uint32_t>(spec.vocab));

  w.set_string("tokenizer.ggml.model", vocab.model);
  w.set_string("tokenizer.ggml.pre", vocab.pre);
  w.set_string_array("tokenizer.ggml.tokens", vocab.tokens);
  if (vocab.model == "llama") w.set_f32_array("tokenizer.ggml.scores", vocab.scores);
  w.set_i32_array("tokenizer.ggml.token_type", vocab.types);
  if (!vocab.merges.empty()) w.set_string_array("tokenizer.ggml.merges", vocab.merges);
  w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(vocab.bos));
  w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(vocab.eos));
  if (vocab.eot >= 0) w.set_u32("tokenizer.ggml.eot_token_id", static_cast<uint32_t>(vocab.eot));
  if (vocab.unk >= 0) w.set_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(vocab.unk));
  if (vocab.pad >= 0) w.set_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(vocab.pad));
  w.set_bool("tokenizer.ggml.add_bos_token", vocab.add_bos);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
  w.set_string("tokenizer.chat_template", vocab.chat_template);

  // Tensor plan.
  const int64_t hd = spec.head_dim();
  std::vector<TensorPlan> plan;
  auto add = [&](const std::string& name, std::vector<int64_t> dims, TensorPlan::Kind kind) {
    plan.push_back({name, dims, synth_tensor_type(spec, name, dims), kind});
  };
  add("token_embd.weight", {spec.dim, spec.vocab}, TensorPlan::Matrix);
  if (spec.llama3_rope) add("rope_freqs.weight", {hd / 2}, TensorPlan::RopeFreqs);
  for (int64_t l = 0; l < spec.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {spec.dim}, TensorPlan::Norm);
    add(p + "attn_q.weight", {spec.dim, spec.heads * hd}, TensorPlan::Matrix);
    add(p + "attn_k.weight", {spec.dim, spec.kv_heads * hd}, TensorPlan::Matrix);
    add(p + "attn_v.weight", {spec.dim, spec.kv_heads * hd}, TensorPlan::Matrix);
    if (spec.qkv_bias) {
      add(p + "attn_q.bias", {spec.heads * hd}, TensorPlan::Bias);
      add(p + "attn_k.bias", {spec.kv_heads * hd}, TensorPlan::Bias);
      add(p + "attn_v.bias", {spec.kv_heads * hd}, TensorPlan::Bias);
    }
    add(p + "attn_output.weight", {spec.heads * hd, spec.dim}, TensorPlan::Matrix);
    add(p + "ffn_norm.weight", {spec.dim}, TensorPlan::Norm);
    add(p + "ffn_gate.weight", {spec.dim, spec.ff}, TensorPlan::Matrix);
    add(p + "ffn_up.weight", {spec.dim, spec.ff}, TensorPlan::Matrix);
    add(p + "ffn_down.weight", {spec.ff, spec.dim}, TensorPlan::Matrix);
  }
  add("output_norm.weight", {spec.dim}, TensorPlan::Norm);
  if (!spec.tied) add("output.weight", {spec.dim, spec.vocab}, TensorPlan::Matrix);

  unsigned n_threads = threads > 0 ? static_cast<unsigned>(threads) : std::max(1u, std::thread::hardware_concurrency());
  n_threads = std::min(n_threads, 64u);
  const std::vector<float> rope_factors = spec.llama3_rope ? llama3_rope_factors(spec) : std::vector<float>{};

  SynthResult res;
  for (const auto& t : plan) {
    int64_t n = 1;
    for (auto d : t.dims) n *= d;
    res.parameters += static_cast<uint64_t>(n);
    const uint64_t tseed = hash_name(t.name, spec.seed);
    w.add_tensor(t.name, t.type, t.dims, [t, tseed, n_threads, &rope_factors](uint8_t* dst, size_t nbytes) {
      synth_util::fill_rows(t.type, t.dims[0], dst, nbytes, n_threads, [&](int64_t r, float* buf) {
        uint64_t s = synth_util::row_seed(tseed, r);
        for (int64_t i = 0; i < t.dims[0]; ++i) {
          const float z = approx_normal(splitmix64(s));
          switch (t.kind) {
            case TensorPlan::Matrix: buf[i] = 0.02f * z; break;
            case TensorPlan::Norm: buf[i] = 1.0f + 0.05f * z; break;
            case TensorPlan::Bias: buf[i] = 0.02f * z; break;
            case TensorPlan::RopeFreqs: buf[i] = rope_factors[static_cast<size_t>(i)]; break;
          }
        }
      });
    });
  }
  res.tensors = plan.size();
  w.write(path);
  res.file_bytes = std::filesystem::file_size(path);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace lmhost::model
