// GGUF reader/writer: round trips of every value type and malformed files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "gguf/gguf.h"
#include "util/error.h"

using namespace lmhost;
using namespace lmhost::gguf;

namespace {

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}
void put_str(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

std::vector<uint8_t> f32_bytes(size_t n, float start = 0) {
  std::vector<uint8_t> b(n * 4);
  for (size_t i = 0; i < n; ++i) {
    float v = start + static_cast<float>(i);
    std::memcpy(&b[i * 4], &v, 4);
  }
  return b;
}

// A small valid file with metadata of several kinds and two tensors whose
// sizes are multiples of 32, so every strict prefix of it is invalid.
Writer small_writer(uint32_t version = 3) {
  Writer w;
  w.set_version(version);
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "tiny");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_bool("general.flag", true);
  w.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", ""});
  w.set_i32_array("tokenizer.ggml.token_type", {2, 3, 3, 1, 1});
  w.set_f32_array("tokenizer.ggml.scores", {0.f, -1.f, -2.5f});
  w.add_tensor("token_embd.weight", DType::F32, {8, 4}, f32_bytes(32));
  w.add_tensor("output_norm.weight", DType::F32, {8}, f32_bytes(8, 100));
  return w;
}

std::shared_ptr<File> parse(const std::vector<uint8_t>& b) { return File::from_bytes(b.data(), b.size(), "test.gguf"); }

std::string parse_error(const std::vector<uint8_t>& b) {
  try {
    parse(b);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Hand-built header: magic, version, counts.
std::vector<uint8_t> header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  std::vector<uint8_t> b = {'G', 'G', 'U', 'F'};
  put<uint32_t>(b, version);
  put<uint64_t>(b, n_tensors);
  put<uint64_t>(b, n_kv);
  return b;
}

// A file with one tensor whose info fields are given explicitly.
std::vector<uint8_t> one_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset,
                                size_t data_bytes) {
  auto b = header(3, 1, 0);
  put_str(b, name);
  put<uint32_t>(b, static_cast<uint32_t>(dims.size()));
  for (auto d : dims) put<uint64_t>(b, d);
  put<uint32_t>(b, type);
  put<uint64_t>(b, offset);
  b.resize((b.size() + 31) / 32 * 32, 0);
  b.resize(b.size() + data_bytes, 0);
  return b;
}

}  // namespace

TEST(GgufRoundTrip, ScalarsStringsArraysV2AndV3) {
  for (uint32_t version : {2u, 3u}) {
    Writer w = small_writer(version);
    w.set_u8("t.u8", 250);
    w.set_raw("t.i8", ValueType::INT8, {0x80});
    w.set_raw("t.u16", ValueType::UINT16, {0x34, 0x12});
    w.set_raw("t.i16", ValueType::INT16, {0xff, 0xff});
    w.set_i32("t.i32", -123456);
    w.set_u64("t.u64", 1ull << 40);
    w.set_u64("t.u64big", ~0ull);
    std::vector<uint8_t> i64;
    put<int64_t>(i64, -(1ll << 50));
    w.set_raw("t.i64", ValueType::INT64, i64);
    std::vector<uint8_t> f64;
    put<double>(f64, 3.25);
    w.set_raw("t.f64", ValueType::FLOAT64, f64);
    w.set_bool("t.false", false);
    w.set_string("t.empty", "");
    w.set_string("t.utf8", "h\xc3\xa9llo\nworld");
    w.set_string_array("t.empty_strs", {});
    w.set_i32_array("t.empty_ints", {});
    // Nested: array of 3 arrays of u16 (second one empty), and array of arrays of strings.
    std::vector<uint8_t> nested;
    put<uint32_t>(nested, static_cast<uint32_t>(ValueType::ARRAY));
    put<uint64_t>(nested, 3);
    for (int k : {2, 0, 3}) {
      put<uint32_t>(nested, static_cast<uint32_t>(ValueType::UINT16));
      put<uint64_t>(nested, static_cast<uint64_t>(k));
      for (int j = 0; j < k; ++j) put<uint16_t>(nested, static_cast<uint16_t>(10 * k + j));
    }
    w.set_raw("t.nested", ValueType::ARRAY, nested);
    std::vector<uint8_t> nested_s;
    put<uint32_t>(nested_s, static_cast<uint32_t>(ValueType::ARRAY));
    put<uint64_t>(nested_s, 2);
    put<uint32_t>(nested_s, static_cast<uint32_t>(ValueType::STRING));
    put<uint64_t>(nested_s, 2);
    put_str(nested_s, "ab");
    put_str(nested_s, "");
    put<uint32_t>(nested_s, static_cast<uint32_t>(ValueType::STRING));
    put<uint64_t>(nested_s, 1);
    put_str(nested_s, "xyz");
    w.set_raw("t.nested_s", ValueType::ARRAY, nested_s);
    std::vector<uint8_t> bools;
    put<uint32_t>(bools, static_cast<uint32_t>(ValueType::BOOL));
    put<uint64_t>(bools, 3);
    bools.insert(bools.end(), {1, 0, 1});
    w.set_raw("t.bools", ValueType::ARRAY, bools);

    auto bytes = w.to_bytes();
    auto f = parse(bytes);
    EXPECT_EQ(f->version(), version);
    EXPECT_EQ(f->architecture(), "llama");
    EXPECT_EQ(*f->get_string("general.name"), "tiny");
    EXPECT_EQ(*f->get_arch_int("block_count"), 2);
    EXPECT_EQ(*f->get_arch_float("rope.freq_base"), 10000.0);
    EXPECT_TRUE(*f->get_bool("general.flag"));
    EXPECT_EQ(*f->get_int("t.u8"), 250);
    EXPECT_EQ(*f->get_int("t.i8"), -128);
    EXPECT_EQ(*f->get_int("t.u16"), 0x1234);
    EXPECT_EQ(*f->get_int("t.i16"), -1);
    EXPECT_EQ(*f->get_int("t.i32"), -123456);
    EXPECT_EQ(*f->get_int("t.u64"), 1ll << 40);
    EXPECT_THROW(f->get_int("t.u64big"), Error);
    EXPECT_EQ(*f->get_float("t.u64big"), 18446744073709551615.0);
    EXPECT_EQ(*f->get_int("t.i64"), -(1ll << 50));
    EXPECT_EQ(*f->get_float("t.f64"), 3.25);
    EXPECT_FALSE(*f->get_bool("t.false"));
    EXPECT_EQ(*f->get_string("t.empty"), "");
    EXPECT_EQ(*f->get_string("t.utf8"), "h\xc3\xa9llo\nworld");
    EXPECT_FALSE(f->get_int("absent").has_value());
    EXPECT_THROW(f->get_int("general.name"), Error);
    EXPECT_THROW(f->get_string("t.i32"), Error);

    auto toks = f->find("tokenizer.ggml.tokens")->as_string_array();
    ASSERT_EQ(toks.size(), 5u);
    EXPECT_EQ(toks[2], "</s>");
    EXPECT_EQ(toks[4], "");
    EXPECT_EQ(f->find("tokenizer.ggml.token_type")->as_int_array(), (std::vector<int64_t>{2, 3, 3, 1, 1}));
    EXPECT_EQ(f->find("tokenizer.ggml.scores")->as_float_array(), (std::vector<float>{0.f, -1.f, -2.5f}));
    EXPECT_THROW(f->find("tokenizer.ggml.tokens")->as_int_array(), Error);
    EXPECT_EQ(f->find("t.empty_strs")->array_size(), 0u);
    EXPECT_EQ(f->find("t.empty_strs")->array_type(), ValueType::STRING);
    EXPECT_TRUE(f->find("t.empty_ints")->as_int_array().empty());
    EXPECT_EQ(f->find("t.bools")->as_int_array(), (std::vector<int64_t>{1, 0, 1}));

    const Value* n = f->find("t.nested");
    ASSERT_NE(n, nullptr);
    EXPECT_EQ(n->array_type(), ValueType::ARRAY);
    auto outer = n->elements();
    ASSERT_EQ(outer.size(), 3u);
    EXPECT_EQ(outer[0].as_int_array(), (std::vector<int64_t>{20, 21}));
    EXPECT_TRUE(outer[1].as_int_array().empty());
    EXPECT_EQ(outer[2].as_int_array(), (std::vector<int64_t>{30, 31, 32}));
    auto ns = f->find("t.nested_s")->elements();
    ASSERT_EQ(ns.size(), 2u);
    EXPECT_EQ(ns[0].as_string_array(), (std::vector<std::string_view>{"ab", ""}));
    EXPECT_EQ(ns[1].as_string_array(), (std::vector<std::string_view>{"xyz"}));
    EXPECT_NE(n->to_display_string().find("[20, 21]"), std::string::npos);

    // Metadata stays in file order.
    EXPECT_EQ(f->metadata().front().key, "general.architecture");
    EXPECT_EQ(f->metadata().back().key, "t.bools");

    ASSERT_EQ(f->tensors().size(), 2u);
    const TensorInfo* t = f->tensor("token_embd.weight");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dims, (std::vector<int64_t>{8, 4}));
    EXPECT_EQ(t->n_elements(), 32);
    EXPECT_EQ(t->nbytes, 128u);
    EXPECT_EQ(t->offset % f->alignment(), 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) - reinterpret_cast<uintptr_t>(bytes.data()) -
                  (reinterpret_cast<uintptr_t>(f->tensors()[0].data) - reinterpret_cast<uintptr_t>(bytes.data())),
              t->offset);
    float v;
    std::memcpy(&v, t->data + 4 * 31, 4);
    EXPECT_EQ(v, 31.0f);
    const TensorInfo* o = f->tensor("output_norm.weight");
    std::memcpy(&v, o->data, 4);
    EXPECT_EQ(v, 100.0f);
    EXPECT_EQ(o->view().n_dims, 1);
    EXPECT_EQ(t->view().ne[1], 4);
    EXPECT_EQ(f->tensor("nope"), nullptr);
  }
}

TEST(GgufRoundTrip, QuantTypesAlignmentAndFileIo) {
  Writer w;
  w.set_string("general.architecture", "x");
  w.set_u32("general.alignment", 64);
  std::vector<uint8_t> q(2 * 34, 7);  // two Q8_0 blocks
  w.add_tensor("a", DType::Q8_0, {64}, q);
  w.add_tensor("b", DType::Q4_K, {256, 2}, [](uint8_t* dst, size_t n) { std::memset(dst, 0x5a, n); });
  w.add_tensor("c", DType::F16, {3}, std::vector<uint8_t>(6, 1));
  const std::string path = (std::filesystem::temp_directory_path() / "lmhost_gguf_rt.gguf").string();
  w.write(path);
  auto f = File::open(path);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  EXPECT_EQ(f->tensor("a")->nbytes, 68u);
  EXPECT_EQ(f->tensor("b")->nbytes, 288u);
  EXPECT_EQ(f->tensor("b")->type, DType::Q4_K);
  EXPECT_EQ(f->tensor("b")->data[287], 0x5a);
  for (auto& t : f->tensors()) EXPECT_EQ(t.offset % 64, 0u) << t.name;
  EXPECT_EQ(f->file_size(), std::filesystem::file_size(path));
  std::filesystem::remove(path);
  // Writer validation.
  EXPECT_THROW(w.add_tensor("bad", DType::Q4_0, {31}, std::vector<uint8_t>(18)), Error);
  EXPECT_THROW(w.add_tensor("bad", DType::F32, {2}, std::vector<uint8_t>(7)), Error);
}

TEST(GgufOpen, MissingEmptyAndDirectory) {
  EXPECT_THROW(File::open("/nonexistent/x.gguf"), Error);
  const std::string path = (std::filesystem::temp_directory_path() / "lmhost_gguf_empty.gguf").string();
  { FILE* f = std::fopen(path.c_str(), "wb"); std::fclose(f); }
  try {
    File::open(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
  EXPECT_THROW(File::open(std::filesystem::temp_directory_path().string()), Error);
}

TEST(GgufMalformed, TruncationAtEveryByteThrows) {
  for (uint32_t version : {2u, 3u}) {
    auto bytes = small_writer(version).to_bytes();
    ASSERT_NO_THROW(parse(bytes));
    for (size_t n = 0; n < bytes.size(); ++n) {
      std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
      EXPECT_THROW(parse(cut), Error) << "prefix of " << n << " of " << bytes.size() << " bytes";
    }
  }
}

TEST(GgufMalformed, BadMagicVersionEndianness) {
  auto bytes = small_writer().to_bytes();
  auto b = bytes;
  b[0] = 'X';
  EXPECT_NE(parse_error(b).find("magic"), std::string::npos);
  b = bytes;
  b[4] = 1;
  EXPECT_NE(parse_error(b).find("version 1"), std::string::npos);
  b = bytes;
  b[4] = 4;
  EXPECT_NE(parse_error(b).find("unsupported GGUF version 4"), std::string::npos);
  b = bytes;
  b[4] = 0, b[7] = 3;  // version 3 written big-endian
  EXPECT_NE(parse_error(b).find("big-endian"), std::string::npos) << parse_error(b);
  EXPECT_NE(parse_error(b).find("test.gguf"), std::string::npos);
}

TEST(GgufMalformed, AbsurdCountsAndLengths) {
  auto b = header(3, 0, 1ull << 60);
  b.resize(b.size() + 64, 0);
  EXPECT_NE(parse_error(b).find("metadata count"), std::string::npos) << parse_error(b);
  b = header(3, 1ull << 60, 0);
  b.resize(b.size() + 64, 0);
  EXPECT_NE(parse_error(b).find("tensor count"), std::string::npos);
  // Key length beyond the file.
  b = header(3, 0, 1);
  put<uint64_t>(b, 1ull << 62);
  b.resize(b.size() + 16, 'k');
  EXPECT_NE(parse_error(b).find("length"), std::string::npos) << parse_error(b);
  // String value length beyond the file.
  b = header(3, 0, 1);
  put_str(b, "k");
  put<uint32_t>(b, 8);
  put<uint64_t>(b, 1000);
  b.resize(b.size() + 10, 'x');
  std::string e = parse_error(b);
  EXPECT_NE(e.find("'k'"), std::string::npos) << e;
  EXPECT_NE(e.find("offset"), std::string::npos) << e;
  // Array of 2^60 u32 elements.
  b = header(3, 0, 1);
  put_str(b, "arr");
  put<uint32_t>(b, 9);
  put<uint32_t>(b, 4);
  put<uint64_t>(b, 1ull << 60);
  b.resize(b.size() + 16, 0);
  e = parse_error(b);
  EXPECT_NE(e.find("'arr'"), std::string::npos) << e;
  // Array of 2^62 strings / of nested arrays.
  for (uint32_t et : {8u, 9u}) {
    b = header(3, 0, 1);
    put_str(b, "arr");
    put<uint32_t>(b, 9);
    put<uint32_t>(b, et);
    put<uint64_t>(b, 1ull << 62);
    b.resize(b.size() + 16, 0);
    EXPECT_THROW(parse(b), Error);
  }
  // Unknown value type and unknown array element type.
  b = header(3, 0, 1);
  put_str(b, "k");
  put<uint32_t>(b, 13);
  b.resize(b.size() + 8, 0);
  EXPECT_NE(parse_error(b).find("unknown value type 13"), std::string::npos);
  b = header(3, 0, 1);
  put_str(b, "k");
  put<uint32_t>(b, 9);
  put<uint32_t>(b, 77);
  put<uint64_t>(b, 0);
  EXPECT_NE(parse_error(b).find("unknown array element type 77"), std::string::npos);
  // Deeply nested arrays are rejected, not a stack overflow.
  b = header(3, 0, 1);
  put_str(b, "deep");
  put<uint32_t>(b, 9);
  for (int i = 0; i < 100000; ++i) {
    put<uint32_t>(b, 9);
    put<uint64_t>(b, 1);
  }
  EXPECT_NE(parse_error(b).find("nested"), std::string::npos);
}

TEST(GgufMalformed, TensorTableErrors) {
  // Valid baseline.
  EXPECT_NO_THROW(parse(one_tensor("w", {8, 2}, 0, 0, 64)));
  // Data beyond EOF.
  std::string e = parse_error(one_tensor("w", {8, 2}, 0, 0, 63));
  EXPECT_NE(e.find("'w'"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  e = parse_error(one_tensor("w", {8, 2}, 0, 1ull << 40, 64));
  EXPECT_NE(e.find("'w'"), std::string::npos) << e;
  // Misaligned offset.
  e = parse_error(one_tensor("w", {8, 2}, 0, 4, 128));
  EXPECT_NE(e.find("not a multiple of the alignment"), std::string::npos) << e;
  // Dims overflow.
  e = parse_error(one_tensor("w", {1ull << 32, 1ull << 32}, 0, 0, 64));
  EXPECT_NE(e.find("overflow"), std::string::npos) << e;
  e = parse_error(one_tensor("w", {1ull << 63, 1}, 0, 0, 64));
  EXPECT_NE(e.find("'w'"), std::string::npos) << e;
  e = parse_error(one_tensor("w", {1ull << 40, 1ull << 20}, 0, 0, 64));
  EXPECT_NE(e.find("'w'"), std::string::npos) << e;
  // Unknown type id names the tensor and the id.
  e = parse_error(one_tensor("blk.0.attn_q.weight", {8, 2}, 4, 0, 64));
  EXPECT_NE(e.find("'blk.0.attn_q.weight'"), std::string::npos) << e;
  EXPECT_NE(e.find("type id 4"), std::string::npos) << e;
  e = parse_error(one_tensor("w", {8, 2}, 1000, 0, 64));
  EXPECT_NE(e.find("type id 1000"), std::string::npos) << e;
  // Too many dims / zero dims; row not a multiple of the block size.
  EXPECT_THROW(parse(one_tensor("w", {1, 1, 1, 1, 1}, 0, 0, 64)), Error);
  EXPECT_THROW(parse(one_tensor("w", {}, 0, 0, 64)), Error);
  e = parse_error(one_tensor("w", {33, 1}, 2, 0, 64));
  EXPECT_NE(e.find("block size"), std::string::npos) << e;
  // Duplicate tensor.
  Writer w;
  w.add_tensor("dup", DType::F32, {8}, f32_bytes(8));
  w.add_tensor("dup", DType::F32, {8}, f32_bytes(8));
  e = parse_error(w.to_bytes());
  EXPECT_NE(e.find("duplicate tensor 'dup'"), std::string::npos) << e;
}

TEST(GgufMalformed, DuplicateKeyAndBadAlignment) {
  auto b = header(3, 0, 2);
  for (int i = 0; i < 2; ++i) {
    put_str(b, "general.name");
    put<uint32_t>(b, 4);
    put<uint32_t>(b, 1);
  }
  EXPECT_NE(parse_error(b).find("duplicate metadata key 'general.name'"), std::string::npos) << parse_error(b);
  for (uint32_t a : {0u, 3u, 48u}) {
    Writer w;
    w.set_u32("general.alignment", a);
    EXPECT_NE(parse_error(w.to_bytes()).find("power of two"), std::string::npos) << a;
  }
  Writer w;
  w.set_string("general.alignment", "32");
  EXPECT_NE(parse_error(w.to_bytes()).find("general.alignment"), std::string::npos);
}

// Seeded random byte flips, insertions, deletions and truncations of a valid
// file: each mutant parses or throws lmhost::Error, and when it parses every
// tensor lies inside the image.
TEST(GgufFuzz, MutationsParseOrThrowError) {
  const auto base = small_writer().to_bytes();
  std::mt19937_64 rng(12345);
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    auto b = base;
    const int n_mut = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < n_mut && !b.empty(); ++m) {
      const size_t pos = rng() % b.size();
      switch (rng() % 6) {
        case 0: b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
        case 1: b[pos] = static_cast<uint8_t>(rng()); break;
        case 2: b.insert(b.begin() + pos, static_cast<uint8_t>(rng())); break;
        case 3: b.erase(b.begin() + pos); break;
        case 4: b.resize(pos); break;
        case 5: {  // plant a large little-endian count
          const uint64_t big = rng() % 2 ? ~0ull >> (rng() % 64) : rng() % 4096;
          for (int k = 0; k < 8 && pos + k < b.size(); ++k) b[pos + k] = static_cast<uint8_t>(big >> (8 * k));
          break;
        }
      }
    }
    try {
      auto f = parse(b);
      ++parsed;
      for (auto& t : f->tensors()) {
        ASSERT_LE(t.offset + t.nbytes + f->data_offset(), b.size());
      }
      for (auto& kv : f->metadata()) (void)kv.to_display_string();
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}
