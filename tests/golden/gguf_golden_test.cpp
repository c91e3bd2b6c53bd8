// Every golden GGUF file (models and vocab-only tokenizer files written by
// llama.cpp's converter) opens and has the metadata its README describes.
#include <gtest/gtest.h>

#include <filesystem>

#include "gguf/gguf.h"
#include "util/error.h"

using namespace lmhost;
namespace fs = std::filesystem;

namespace {
fs::path golden() { return fs::path(LMHOST_SHARED_DIR) / "golden"; }
}  // namespace

TEST(GgufGolden, EveryFileOpens) {
  if (!fs::exists(golden())) GTEST_SKIP() << "golden data not found at " << golden();
  int n = 0;
  for (const char* sub : {"models", "tokenizer"}) {
    for (auto& e : fs::directory_iterator(golden() / sub)) {
      if (e.path().extension() != ".gguf") continue;
      SCOPED_TRACE(e.path().string());
      std::shared_ptr<gguf::File> f;
      ASSERT_NO_THROW(f = gguf::File::open(e.path().string()));
      EXPECT_FALSE(f->architecture().empty());
      EXPECT_NE(f->find("tokenizer.ggml.model"), nullptr);
      for (auto& t : f->tensors()) {
        EXPECT_GE(t.data, reinterpret_cast<const uint8_t*>(0) + 1);
        EXPECT_LE(f->data_offset() + t.offset + t.nbytes, f->file_size()) << t.name;
      }
      for (auto& kv : f->metadata()) EXPECT_FALSE(kv.to_display_string().empty()) << kv.key;
      ++n;
    }
  }
  EXPECT_GE(n, 13);
}

TEST(GgufGolden, LlamaSpmTinyF32) {
  const fs::path p = golden() / "models" / "llama-spm-tiny-f32.gguf";
  if (!fs::exists(p)) GTEST_SKIP() << "golden model not found at " << p;
  auto f = gguf::File::open(p.string());
  EXPECT_EQ(f->architecture(), "llama");
  EXPECT_EQ(*f->get_arch_int("embedding_length"), 64);
  EXPECT_EQ(*f->get_arch_int("block_count"), 2);
  EXPECT_EQ(*f->get_arch_int("attention.head_count"), 4);
  EXPECT_EQ(*f->get_arch_int("attention.head_count_kv"), 2);
  EXPECT_EQ(*f->get_arch_int("feed_forward_length"), 128);
  // token_embd, output_norm, output + 9 per layer.
  EXPECT_EQ(f->tensors().size(), 3u + 2u * 9u);
  const auto* emb = f->tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, DType::F32);
  EXPECT_EQ(emb->dims, (std::vector<int64_t>{64, 32000}));
  EXPECT_EQ(f->find("tokenizer.ggml.tokens")->array_size(), 32000u);
  EXPECT_EQ(*f->get_string("tokenizer.ggml.model"), "llama");
  for (auto& t : f->tensors()) EXPECT_EQ(t.type, DType::F32) << t.name;
}

TEST(GgufGolden, QuantizedTypes) {
  const fs::path p = golden() / "models" / "llama-spm-small-q4_k_m.gguf";
  if (!fs::exists(p)) GTEST_SKIP() << "golden model not found at " << p;
  auto f = gguf::File::open(p.string());
  bool q4k = false, q6k = false;
  for (auto& t : f->tensors()) {
    q4k |= t.type == DType::Q4_K;
    q6k |= t.type == DType::Q6_K;
  }
  EXPECT_TRUE(q4k);
  EXPECT_TRUE(q6k);
  auto q = gguf::File::open((golden() / "models" / "qwen2-tiny-q8_0.gguf").string());
  EXPECT_EQ(q->architecture(), "qwen2");
  EXPECT_NE(q->tensor("blk.0.attn_q.bias"), nullptr);
  EXPECT_EQ(q->tensor("blk.0.attn_q.weight")->type, DType::Q8_0);
}
