// Synthetic GGUF models: shape-exact llama/qwen2 files with seeded random
// weights and a small but real, self-consistent tokenizer of our own making
// (byte-level BPE or SentencePiece-style, learned from a built-in English
// text), so they load, tokenize, detokenize and run like real models. Used by
// `lmhost synth`, benchmarks and the server's demo model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/types.h"

namespace lmhost::model {

enum class SynthTokenizer {
  Spm,     // SentencePiece "llama" vocab: <unk> <s> </s>, <0xNN> bytes, scored pieces; Zephyr chat template
  Qwen,    // byte-level BPE "gpt2" vocab, pre "qwen2", ChatML specials and template
  Llama3,  // byte-level BPE "gpt2" vocab, pre "llama-bpe", Llama 3 specials and template
};

struct SynthSpec {
  std::string name = "synthetic";  // general.name
  std::string arch = "llama";      // "llama" or "qwen2"
  int64_t dim = 128, layers = 2, heads = 4, kv_heads = 2, ff = 256, vocab = 2048, ctx = 2048;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  bool tied = false;      // no output.weight: the embedding is the output matrix
  bool qkv_bias = false;  // q/k/v biases (qwen2)
  // Llama 3 rope scaling, written as llama.cpp's converter does: a
  // rope_freqs.weight tensor of per-frequency divisors.
  bool llama3_rope = false;
  float rope_factor = 32.0f, rope_low_freq = 1.0f, rope_high_freq = 4.0f;
  int64_t rope_orig_ctx = 8192;
  SynthTokenizer tokenizer = SynthTokenizer::Spm;
  // Encoder (embedding) models, arch "bert" or "nomic-bert" (always a WordPiece vocab):
  int pooling = 1;          // {arch}.pooling_type: 1 mean, 2 cls, 3 last
  float norm_eps = 1e-12f;  // {arch}.attention.layer_norm_epsilon
  std::string type = "F16";  // file type: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_M Q5_K_M Q6_K
  uint64_t seed = 42;

  int64_t head_dim() const { return dim / heads; }
  void validate() const;  // throws lmhost::Error with what is wrong
};

// Known shapes: qwen2.5-0.5b, llama-3.2-1b, tinyllama-1.1b, demo; embedding
// models minilm-l6, bge-small, nomic-embed-text, demo-embed.
std::optional<SynthSpec> synth_shape(std::string_view name);
std::vector<std::string> synth_shape_names();
std::vector<std::string> synth_file_types();

// llama.cpp's general.file_type id for a file type name (nullopt if unknown).
std::optional<int> synth_file_type_id(std::string_view type);

// The tensor type for one tensor of a file of the given type, following
// llama.cpp's quantization mix: 1-D tensors F32; the output matrix (or the
// tied embedding) Q6_K in quantized files (Q8_0 in Q8_0 files); attn_v and
// ffn_down Q6_K in the "more bits" layers of Q4_K_M/Q5_K_M; K-quants whose
// rows are not a multiple of 256 fall back (Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0).
DType synth_tensor_type(const SynthSpec& spec, const std::string& tensor_name, const std::vector<int64_t>& dims);

struct SynthResult {
  uint64_t file_bytes = 0;
  uint64_t parameters = 0;
  size_t tensors = 0;
  double seconds = 0;
};

// Writes the model to `path` (streaming, tensor by tensor). threads = 0: all
// hardware threads. Throws lmhost::Error on invalid specs or I/O errors.
SynthResult synth_model(const SynthSpec& spec, const std::string& path, int threads = 0);
// The bert / nomic-bert writer behind synth_model (model/synth_bert.cpp).
SynthResult synth_encoder_model(const SynthSpec& spec, const std::string& path, int threads = 0);

}  // namespace lmhost::model
