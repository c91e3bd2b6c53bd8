// GGUF v2/v3 reader over mmap. Every count, offset and size is checked
// against the file before use: a truncated or malformed file throws
// lmhost::Error naming what is wrong; nothing reads out of bounds.
// Strings and arrays are views into the mapping: the File must outlive them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tensor/tensor.h"

namespace lmhost::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* value_type_name(ValueType t);

class Value {
 public:
  ValueType type() const { return type_; }
  bool is_array() const { return type_ == ValueType::ARRAY; }
  bool is_string() const { return type_ == ValueType::STRING; }
  bool is_number() const;  // any integer, float or bool scalar

  // Scalars. Throw lmhost::Error on a type mismatch (naming the key).
  int64_t as_int() const;      // any integer or bool type (u64 > INT64_MAX throws)
  double as_float() const;     // any numeric type
  bool as_bool() const;
  std::string_view as_string() const;

  // Arrays.
  ValueType array_type() const;  // element type
  uint64_t array_size() const;
  std::vector<std::string_view> as_string_array() const;
  std::vector<int64_t> as_int_array() const;    // integer elements
  std::vector<float> as_float_array() const;    // numeric elements
  // Every element as a Value of its own (any element type, incl. nested arrays).
  std::vector<Value> elements() const;
  // A short human-readable rendering (arrays abbreviated), for `lmhost show`.
  std::string to_display_string(size_t max_items = 8) const;

  // Internal representation, filled by the reader.
  std::string key;
  ValueType type_ = ValueType::UINT8;
  ValueType elem_type_ = ValueType::UINT8;  // arrays only
  uint64_t count_ = 0;                      // arrays only
  const uint8_t* data_ = nullptr;           // scalar bytes / string bytes / first array element
  uint64_t size_ = 0;                       // bytes of string / of whole array payload
};

struct TensorInfo {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> dims;  // ne: dims[0] innermost
  uint64_t offset = 0;        // relative to the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t n_elements() const;
  TensorView view() const;
};

class File {
 public:
  // Maps and validates the file. Throws lmhost::Error (e.g. "model.gguf:
  // truncated: tensor 'blk.0.attn_q.weight' data ends at 12345 but the file
  // has 12000 bytes").
  static std::shared_ptr<File> open(const std::string& path);
  // Parses an in-memory image (fuzzing, tests). The bytes are copied.
  static std::shared_ptr<File> from_bytes(const void* data, size_t size, std::string name = "<memory>");
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }

  const std::vector<Value>& metadata() const { return kv_; }  // in file order
  const Value* find(std::string_view key) const;
  // Typed lookups: nullopt when absent, lmhost::Error when present with the wrong type.
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string_view> get_string(std::string_view key) const;
  // "general.architecture" (throws if absent) and arch-prefixed keys: get_arch_int("block_count").
  std::string architecture() const;
  std::optional<int64_t> get_arch_int(std::string_view suffix) const;
  std::optional<double> get_arch_float(std::string_view suffix) const;

  // Drops the whole pages of [p, p + n) (inside the file) from this
  // process's resident memory, for tensors the caller keeps in another form;
  // they are read back from the file if touched again. No effect on
  // in-memory images (from_bytes).
  void release(const void* p, size_t n) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* tensor(std::string_view name) const;  // nullptr if absent

 private:
  File() = default;
  void parse();
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::vector<uint8_t> owned_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<Value> kv_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> kv_index_;      // views into kv_[i].key
  std::unordered_map<std::string_view, size_t> tensor_index_;  // views into tensors_[i].name
};

// Writer for `lmhost synth` and tests: metadata in insertion order, tensors
// aligned to general.alignment (32 unless set). Tensor data are produced by a
// callback at write time, so a multi-GiB file never sits in memory whole.
class Writer {
 public:
  void set_u8(const std::string& key, uint8_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u32(const std::string& key, uint32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  // Raw escape hatch for tests (malformed files, unusual types): appends
  // key + type + already-encoded payload bytes.
  void set_raw(const std::string& key, ValueType type, std::vector<uint8_t> payload);

  using Fill = std::function<void(uint8_t* dst, size_t nbytes)>;
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, Fill fill);
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, std::vector<uint8_t> bytes);

  void write(const std::string& path) const;  // throws lmhost::Error on I/O errors
  std::vector<uint8_t> to_bytes() const;     // whole file image (tests)

  void set_version(uint32_t v) { version_ = v; }  // 3 by default; 2 for compatibility tests

 private:
  struct KV { std::string key; ValueType type; std::vector<uint8_t> payload; };
  struct T { std::string name; DType type; std::vector<int64_t> dims; Fill fill; };
  std::vector<KV> kv_;
  std::vector<T> tensors_;
  uint32_t version_ = 3;
};

}  // namespace lmhost::gguf
