// GGUF writer: header, metadata and tensor table, then each tensor's data
// produced by its fill callback into one reusable buffer, so memory stays at
// the size of the largest tensor however big the file is.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "gguf/gguf.h"
#include "gguf/type_table.h"
#include "util/error.h"

namespace lmhost::gguf {

namespace {

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

template <typename T>
std::vector<uint8_t> scalar(T v) {
  std::vector<uint8_t> out;
  put(out, v);
  return out;
}

uint64_t tensor_bytes(const std::string& name, DType type, const std::vector<int64_t>& dims) {
  const auto& f = detail::type_facts(static_cast<uint32_t>(type));
  if (f.block_size == 0) throw Error("gguf writer: tensor '" + name + "' has an unknown type");
  if (dims.empty() || dims.size() > 4) throw Error("gguf writer: tensor '" + name + "' needs 1 to 4 dimensions");
  uint64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) throw Error("gguf writer: tensor '" + name + "' has a negative dimension");
    n *= static_cast<uint64_t>(d);
  }
  if (dims[0] % f.block_size != 0)
    throw Error("gguf writer: tensor '" + name + "' row length " + std::to_string(dims[0]) +
                " is not a multiple of the " + f.name + " block size " + std::to_string(f.block_size));
  return n / static_cast<uint64_t>(f.block_size) * f.type_size;
}

}  // namespace

void Writer::set_u8(const std::string& key, uint8_t v) { set_raw(key, ValueType::UINT8, scalar(v)); }
void Writer::set_i32(const std::string& key, int32_t v) { set_raw(key, ValueType::INT32, scalar(v)); }
void Writer::set_u32(const std::string& key, uint32_t v) { set_raw(key, ValueType::UINT32, scalar(v)); }
void Writer::set_u64(const std::string& key, uint64_t v) { set_raw(key, ValueType::UINT64, scalar(v)); }
void Writer::set_f32(const std::string& key, float v) { set_raw(key, ValueType::FLOAT32, scalar(v)); }
void Writer::set_bool(const std::string& key, bool v) { set_raw(key, ValueType::BOOL, scalar<uint8_t>(v ? 1 : 0)); }

void Writer::set_string(const std::string& key, const std::string& v) {
  std::vector<uint8_t> p;
  put_string(p, v);
  set_raw(key, ValueType::STRING, std::move(p));
}

void Writer::set_string_array(const std::string& key, const std::vector<std::string>& v) {
  std::vector<uint8_t> p;
  size_t total = 12;
  for (auto& s : v) total += 8 + s.size();
  p.reserve(total);
  put<uint32_t>(p, static_cast<uint32_t>(ValueType::STRING));
  put<uint64_t>(p, v.size());
  for (auto& s : v) put_string(p, s);
  set_raw(key, ValueType::ARRAY, std::move(p));
}

void Writer::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  std::vector<uint8_t> p;
  put<uint32_t>(p, static_cast<uint32_t>(ValueType::INT32));
  put<uint64_t>(p, v.size());
  for (int32_t x : v) put(p, x);
  set_raw(key, ValueType::ARRAY, std::move(p));
}

void Writer::set_f32_array(const std::string& key, const std::vector<float>& v) {
  std::vector<uint8_t> p;
  put<uint32_t>(p, static_cast<uint32_t>(ValueType::FLOAT32));
  put<uint64_t>(p, v.size());
  for (float x : v) put(p, x);
  set_raw(key, ValueType::ARRAY, std::move(p));
}

void Writer::set_raw(const std::string& key, ValueType type, std::vector<uint8_t> payload) {
  for (auto& kv : kv_) {
    if (kv.key == key) {  // setting a key again replaces it (keeps its position)
      kv.type = type;
      kv.payload = std::move(payload);
      return;
    }
  }
  kv_.push_back({key, type, std::move(payload)});
}

void Writer::add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, Fill fill) {
  tensor_bytes(name, type, dims);  // validates
  tensors_.push_back({name, type, std::move(dims), std::move(fill)});
}

void Writer::add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, std::vector<uint8_t> bytes) {
  const uint64_t n = tensor_bytes(name, type, dims);
  if (bytes.size() != n)
    throw Error("gguf writer: tensor '" + name + "' needs " + std::to_string(n) + " bytes, got " +
                std::to_string(bytes.size()));
  auto data = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  add_tensor(name, type, std::move(dims), [data](uint8_t* dst, size_t nb) { std::memcpy(dst, data->data(), nb); });
}

namespace {

uint64_t writer_alignment(const std::vector<uint8_t>* payload, ValueType type) {
  if (!payload) return 32;
  uint64_t a = 0;
  if (type == ValueType::UINT32 && payload->size() == 4) {
    uint32_t v;
    std::memcpy(&v, payload->data(), 4);
    a = v;
  } else if (type == ValueType::UINT64 && payload->size() == 8) {
    std::memcpy(&a, payload->data(), 8);
  }
  if (a == 0 || (a & (a - 1)) != 0) return 32;  // a deliberately bad value in a test: data still written at 32
  return a;
}

// Emits the file through `sink(bytes, n)`.
template <typename Sink>
void emit(const Writer& w, uint32_t version, const auto& kvs, const auto& tensors, Sink&& sink) {
  (void)w;
  const std::vector<uint8_t>* align_payload = nullptr;
  ValueType align_type = ValueType::UINT32;
  for (auto& kv : kvs)
    if (kv.key == "general.alignment") align_payload = &kv.payload, align_type = kv.type;
  const uint64_t alignment = writer_alignment(align_payload, align_type);

  std::vector<uint8_t> head;
  head.insert(head.end(), {'G', 'G', 'U', 'F'});
  put<uint32_t>(head, version);
  put<uint64_t>(head, tensors.size());
  put<uint64_t>(head, kvs.size());
  for (auto& kv : kvs) {
    put_string(head, kv.key);
    put<uint32_t>(head, static_cast<uint32_t>(kv.type));
    head.insert(head.end(), kv.payload.begin(), kv.payload.end());
  }
  std::vector<uint64_t> sizes;
  uint64_t off = 0;
  uint64_t max_bytes = 0;
  for (auto& t : tensors) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, off);
    const uint64_t n = tensor_bytes(t.name, t.type, t.dims);
    sizes.push_back(n);
    max_bytes = std::max(max_bytes, n);
    off += (n + alignment - 1) / alignment * alignment;
  }
  if (!tensors.empty()) head.resize((head.size() + alignment - 1) / alignment * alignment, 0);
  sink(head.data(), head.size());

  std::vector<uint8_t> buf;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t n = sizes[i];
    const uint64_t padded = (n + alignment - 1) / alignment * alignment;
    buf.assign(padded, 0);
    if (n && tensors[i].fill) tensors[i].fill(buf.data(), n);
    sink(buf.data(), padded);
  }
}

}  // namespace

void Writer::write(const std::string& path) const {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(path + ": cannot create: " + std::strerror(errno));
  try {
    emit(*this, version_, kv_, tensors_, [&](const uint8_t* p, size_t n) {
      if (n && std::fwrite(p, 1, n, f) != n) throw Error(path + ": write failed: " + std::strerror(errno));
    });
  } catch (...) {
    std::fclose(f);
    std::remove(path.c_str());
    throw;
  }
  if (std::fclose(f) != 0) {
    std::remove(path.c_str());
    throw Error(path + ": write failed: " + std::strerror(errno));
  }
}

std::vector<uint8_t> Writer::to_bytes() const {
  std::vector<uint8_t> out;
  emit(*this, version_, kv_, tensors_, [&](const uint8_t* p, size_t n) { out.insert(out.end(), p, p + n); });
  return out;
}

}  // namespace lmhost::gguf
