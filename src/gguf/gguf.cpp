// GGUF reader: a bounds-checked cursor over the mapped bytes. Every length
// and count is compared with the bytes that remain before it is used, so a
// malformed or truncated file throws lmhost::Error and never reads outside
// the mapping or allocates more than the file could describe.
#include "gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "gguf/type_table.h"
#include "util/error.h"

namespace lmhost::gguf {

namespace {

constexpr int kMaxArrayDepth = 16;

size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
    default: return 0;  // string, array: variable
  }
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::FLOAT64); }

bool is_integer(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::UINT16: case ValueType::INT16:
    case ValueType::UINT32: case ValueType::INT32: case ValueType::UINT64: case ValueType::INT64:
      return true;
    default: return false;
  }
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Reads an integer/bool scalar at p. Throws via `fail` for u64 > INT64_MAX.
bool load_int(ValueType t, const uint8_t* p, int64_t& out) {
  switch (t) {
    case ValueType::UINT8: out = load<uint8_t>(p); return true;
    case ValueType::INT8: out = load<int8_t>(p); return true;
    case ValueType::BOOL: out = load<uint8_t>(p) != 0; return true;
    case ValueType::UINT16: out = load<uint16_t>(p); return true;
    case ValueType::INT16: out = load<int16_t>(p); return true;
    case ValueType::UINT32: out = load<uint32_t>(p); return true;
    case ValueType::INT32: out = load<int32_t>(p); return true;
    case ValueType::INT64: out = load<int64_t>(p); return true;
    case ValueType::UINT64: {
      const uint64_t u = load<uint64_t>(p);
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
      out = static_cast<int64_t>(u);
      return true;
    }
    default: return false;
  }
}

bool load_float(ValueType t, const uint8_t* p, double& out) {
  switch (t) {
    case ValueType::FLOAT32: out = load<float>(p); return true;
    case ValueType::FLOAT64: out = load<double>(p); return true;
    case ValueType::UINT64: out = static_cast<double>(load<uint64_t>(p)); return true;
    default: {
      int64_t i;
      if (!load_int(t, p, i)) return false;
      out = static_cast<double>(i);
      return true;
    }
  }
}

// Byte length of one element of type t starting at p within [p, end). Used
// to walk arrays of strings / arrays that were validated at parse time.
uint64_t element_bytes(ValueType t, const uint8_t* p) {
  const size_t s = scalar_size(t);
  if (s) return s;
  if (t == ValueType::STRING) return 8 + load<uint64_t>(p);
  // Nested array: type, count, payload.
  const auto et = static_cast<ValueType>(load<uint32_t>(p));
  const uint64_t n = load<uint64_t>(p + 4);
  uint64_t total = 12;
  const uint8_t* q = p + 12;
  const size_t es = scalar_size(et);
  if (es) return total + n * es;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t b = element_bytes(et, q);
    q += b;
    total += b;
  }
  return total;
}

std::string hex_offset(uint64_t off) { return std::to_string(off); }

}  // namespace

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8: return "u8";
    case ValueType::INT8: return "i8";
    case ValueType::UINT16: return "u16";
    case ValueType::INT16: return "i16";
    case ValueType::UINT32: return "u32";
    case ValueType::INT32: return "i32";
    case ValueType::FLOAT32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::UINT64: return "u64";
    case ValueType::INT64: return "i64";
    case ValueType::FLOAT64: return "f64";
  }
  return "unknown";
}

// ---------------------------------------------------------------- Value

bool Value::is_number() const { return scalar_size(type_) != 0; }

int64_t Value::as_int() const {
  int64_t v;
  if (type_ == ValueType::UINT64 && is_number()) {
    if (!load_int(type_, data_, v))
      throw Error("metadata '" + key + "': value " + std::to_string(load<uint64_t>(data_)) +
                  " does not fit in a signed 64-bit integer");
    return v;
  }
  if (!load_int(type_, data_, v))
    throw Error("metadata '" + key + "' is " + value_type_name(type_) + ", expected an integer");
  return v;
}

double Value::as_float() const {
  double v;
  if (!is_number() || !load_float(type_, data_, v))
    throw Error("metadata '" + key + "' is " + value_type_name(type_) + ", expected a number");
  return v;
}

bool Value::as_bool() const {
  if (type_ == ValueType::BOOL) return data_[0] != 0;
  if (is_integer(type_)) return as_int() != 0;
  throw Error("metadata '" + key + "' is " + value_type_name(type_) + ", expected a bool");
}

std::string_view Value::as_string() const {
  if (type_ != ValueType::STRING)
    throw Error("metadata '" + key + "' is " + value_type_name(type_) + ", expected a string");
  return {reinterpret_cast<const char*>(data_), static_cast<size_t>(size_)};
}

ValueType Value::array_type() const {
  if (type_ != ValueType::ARRAY) throw Error("metadata '" + key + "' is " + value_type_name(type_) + ", expected an array");
  return elem_type_;
}

uint64_t Value::array_size() const {
  if (type_ != ValueType::ARRAY) throw Error("metadata '" + key + "' is " + value_type_name(type_) + ", expected an array");
  return count_;
}

std::vector<Value> Value::elements() const {
  array_type();
  std::vector<Value> out;
  out.reserve(count_);
  const uint8_t* p = data_;
  for (uint64_t i = 0; i < count_; ++i) {
    Value v;
    v.key = key + "[" + std::to_string(i) + "]";
    v.type_ = elem_type_;
    const uint64_t b = element_bytes(elem_type_, p);
    if (elem_type_ == ValueType::STRING) {
      v.data_ = p + 8;
      v.size_ = b - 8;
    } else if (elem_type_ == ValueType::ARRAY) {
      v.elem_type_ = static_cast<ValueType>(load<uint32_t>(p));
      v.count_ = load<uint64_t>(p + 4);
      v.data_ = p + 12;
      v.size_ = b - 12;
    } else {
      v.data_ = p;
      v.size_ = b;
    }
    out.push_back(std::move(v));
    p += b;
  }
  return out;
}

std::vector<std::string_view> Value::as_string_array() const {
  if (array_type() != ValueType::STRING)
    throw Error("metadata '" + key + "' is an array of " + value_type_name(elem_type_) + ", expected strings");
  std::vector<std::string_view> out;
  out.reserve(count_);
  const uint8_t* p = data_;
  for (uint64_t i = 0; i < count_; ++i) {
    const uint64_t n = load<uint64_t>(p);
    out.emplace_back(reinterpret_cast<const char*>(p + 8), static_cast<size_t>(n));
    p += 8 + n;
  }
  return out;
}

std::vector<int64_t> Value::as_int_array() const {
  const ValueType et = array_type();
  if (!is_integer(et) && et != ValueType::BOOL)
    throw Error("metadata '" + key + "' is an array of " + value_type_name(et) + ", expected integers");
  const size_t es = scalar_size(et);
  std::vector<int64_t> out(count_);
  for (uint64_t i = 0; i < count_; ++i) {
    if (!load_int(et, data_ + i * es, out[i]))
      throw Error("metadata '" + key + "[" + std::to_string(i) + "]' does not fit in a signed 64-bit integer");
  }
  return out;
}

std::vector<float> Value::as_float_array() const {
  const ValueType et = array_type();
  const size_t es = scalar_size(et);
  if (!es) throw Error("metadata '" + key + "' is an array of " + value_type_name(et) + ", expected numbers");
  std::vector<float> out(count_);
  for (uint64_t i = 0; i < count_; ++i) {
    double d = 0;
    load_float(et, data_ + i * es, d);
    out[i] = static_cast<float>(d);
  }
  return out;
}

std::string Value::to_display_string(size_t max_items) const {
  std::ostringstream os;
  switch (type_) {
    case ValueType::STRING: {
      std::string_view s = as_string();
      os << '"';
      const size_t lim = 120;
      for (size_t i = 0; i < s.size() && i < lim; ++i) {
        const char c = s[i];
        if (c == '\n') os << "\\n";
        else if (c == '"') os << "\\\"";
        else if (static_cast<unsigned char>(c) < 0x20) os << '?';
        else os << c;
      }
      if (s.size() > lim) os << "...";
      os << '"';
      break;
    }
    case ValueType::BOOL: os << (data_[0] ? "true" : "false"); break;
    case ValueType::FLOAT32: case ValueType::FLOAT64: os << as_float(); break;
    case ValueType::UINT64: os << load<uint64_t>(data_); break;
    case ValueType::ARRAY: {
      os << '[';
      const auto els = elements();
      for (size_t i = 0; i < els.size() && i < max_items; ++i) {
        if (i) os << ", ";
        os << els[i].to_display_string(max_items);
      }
      if (els.size() > max_items) os << ", ... (" << els.size() << " " << value_type_name(elem_type_) << ")";
      os << ']';
      break;
    }
    default: os << as_int(); break;
  }
  return os.str();
}

// ---------------------------------------------------------------- TensorInfo

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

TensorView TensorInfo::view() const {
  TensorView v;
  v.name = name;
  v.type = type;
  v.n_dims = static_cast<int>(dims.size());
  for (size_t i = 0; i < dims.size() && i < 4; ++i) v.ne[i] = dims[i];
  v.data = data;
  v.nbytes = nbytes;
  return v;
}

// ---------------------------------------------------------------- parsing

namespace {

class Cursor {
 public:
  Cursor(const std::string& name, const uint8_t* base, size_t size) : name_(name), base_(base), size_(size) {}

  [[noreturn]] void fail(const std::string& what) const { throw Error(name_ + ": " + what); }
  [[noreturn]] void fail_at(const std::string& what, uint64_t at) const {
    throw Error(name_ + ": " + what + " (at byte offset " + hex_offset(at) + ")");
  }

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  const uint8_t* here() const { return base_ + pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > remaining())
      fail_at("truncated: " + what + " needs " + std::to_string(n) + " bytes but only " +
                  std::to_string(remaining()) + " remain in the file of " + std::to_string(size_) + " bytes",
              pos_);
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v = load<T>(base_ + pos_);
    pos_ += sizeof(T);
    return v;
  }
  void skip(uint64_t n, const std::string& what) {
    need(n, what);
    pos_ += n;
  }
  std::string_view read_string(const std::string& what) {
    const uint64_t at = pos_;
    const uint64_t n = read<uint64_t>(what + " length");
    if (n > remaining())
      fail_at(what + " has length " + std::to_string(n) + " but only " + std::to_string(remaining()) +
                  " bytes remain in the file",
              at);
    std::string_view s(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(n));
    pos_ += n;
    return s;
  }

 private:
  const std::string& name_;
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

// Validates the payload of a value of type t at the cursor and advances past it.
void skip_value(Cursor& c, ValueType t, const std::string& key, int depth) {
  const size_t s = scalar_size(t);
  if (s) {
    c.skip(s, "value of '" + key + "'");
    return;
  }
  if (t == ValueType::STRING) {
    c.read_string("string value of '" + key + "'");
    return;
  }
  // ARRAY
  if (depth >= kMaxArrayDepth) c.fail_at("metadata '" + key + "': arrays nested too deeply", c.pos());
  const uint64_t at = c.pos();
  const uint32_t et_raw = c.read<uint32_t>("array element type of '" + key + "'");
  if (!valid_type(et_raw))
    c.fail_at("metadata '" + key + "': unknown array element type " + std::to_string(et_raw), at);
  const auto et = static_cast<ValueType>(et_raw);
  const uint64_t n = c.read<uint64_t>("array length of '" + key + "'");
  const size_t es = scalar_size(et);
  const uint64_t min_elem = es ? es : (et == ValueType::STRING ? 8 : 12);
  if (n > c.remaining() / min_elem)
    c.fail_at("metadata '" + key + "': array of " + std::to_string(n) + " " + value_type_name(et) +
                  " elements cannot fit in the " + std::to_string(c.remaining()) + " bytes that remain",
              at);
  if (es) {
    c.skip(n * es, "array '" + key + "'");
    return;
  }
  for (uint64_t i = 0; i < n; ++i) skip_value(c, et, key + "[" + std::to_string(i) + "]", depth + 1);
}

bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

void File::parse() {
  Cursor c(path_, base_, size_);
  if (size_ < 4) c.fail("not a GGUF file: only " + std::to_string(size_) + " bytes (too small for the header)");
  if (std::memcmp(base_, "GGUF", 4) != 0) {
    std::string got;
    for (int i = 0; i < 4; ++i) {
      const char ch = static_cast<char>(base_[i]);
      got += (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    }
    c.fail("not a GGUF file: bad magic '" + got + "' (expected 'GGUF')");
  }
  c.skip(4, "magic");
  const uint32_t version = c.read<uint32_t>("version");
  if (version == 1) c.fail("GGUF version 1 is not supported (re-convert the model with a current llama.cpp)");
  if (version != 2 && version != 3) {
    const uint32_t swapped = __builtin_bswap32(version);
    if (swapped >= 1 && swapped <= 3)
      c.fail("big-endian GGUF file (version " + std::to_string(swapped) +
             " byte-swapped): only little-endian files are supported");
    c.fail("unsupported GGUF version " + std::to_string(version) + " (supported: 2, 3)");
  }
  version_ = version;
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Cheapest possible entries: kv = key length + type + 1 byte; tensor info
  // = name length + n_dims + type + offset.
  if (n_kv > c.remaining() / 13)
    c.fail_at("metadata count " + std::to_string(n_kv) + " is impossible: the file has only " +
                  std::to_string(c.remaining()) + " bytes left",
              16);
  if (n_tensors > c.remaining() / 24)
    c.fail_at("tensor count " + std::to_string(n_tensors) + " is impossible: the file has only " +
                  std::to_string(c.remaining()) + " bytes left",
              8);

  kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t at = c.pos();
    const std::string_view k = c.read_string("key of metadata entry " + std::to_string(i));
    std::string key(k);
    const uint64_t type_at = c.pos();
    const uint32_t t = c.read<uint32_t>("type of metadata '" + key + "'");
    if (!valid_type(t)) c.fail_at("metadata '" + key + "': unknown value type " + std::to_string(t), type_at);
    if (kv_index_.count(key)) c.fail_at("duplicate metadata key '" + key + "'", at);
    Value v;
    v.key = key;
    v.type_ = static_cast<ValueType>(t);
    const uint64_t start = c.pos();
    skip_value(c, v.type_, key, 0);
    const uint8_t* p = base_ + start;
    if (v.type_ == ValueType::STRING) {
      v.data_ = p + 8;
      v.size_ = c.pos() - start - 8;
    } else if (v.type_ == ValueType::ARRAY) {
      v.elem_type_ = static_cast<ValueType>(load<uint32_t>(p));
      v.count_ = load<uint64_t>(p + 4);
      v.data_ = p + 12;
      v.size_ = c.pos() - start - 12;
    } else {
      v.data_ = p;
      v.size_ = c.pos() - start;
    }
    kv_.push_back(std::move(v));
    kv_index_.emplace(kv_.back().key, kv_.size() - 1);  // rebuilt below once kv_ stops moving
  }
  kv_index_.clear();
  for (size_t i = 0; i < kv_.size(); ++i) kv_index_.emplace(kv_[i].key, i);

  if (const Value* a = find("general.alignment")) {
    if (!is_integer(a->type()))
      c.fail("general.alignment is " + std::string(value_type_name(a->type())) + ", expected an integer");
    int64_t al = 0;
    if (!load_int(a->type(), a->data_, al) || al <= 0 || !is_pow2(static_cast<uint64_t>(al)))
      c.fail("general.alignment must be a nonzero power of two, got " + a->to_display_string());
    alignment_ = static_cast<uint64_t>(al);
  }

  tensors_.reserve(n_tensors);
  std::unordered_map<std::string, size_t> seen;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const uint64_t at = c.pos();
    TensorInfo ti;
    ti.name = std::string(c.read_string("name of tensor " + std::to_string(i)));
    const std::string tn = "tensor '" + ti.name + "'";
    if (seen.count(ti.name)) c.fail_at("duplicate " + tn, at);
    const uint64_t dims_at = c.pos();
    const uint32_t n_dims = c.read<uint32_t>("dimension count of " + tn);
    if (n_dims == 0 || n_dims > 4)
      c.fail_at(tn + " has " + std::to_string(n_dims) + " dimensions (supported: 1 to 4)", dims_at);
    uint64_t n_el = 1;
    bool zero = false;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("dimension " + std::to_string(d) + " of " + tn);
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        c.fail_at(tn + ": dimension " + std::to_string(d) + " is " + std::to_string(ne) + " (too large)", dims_at);
      if (ne == 0) zero = true;
      if (!zero && ne != 0 && n_el > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ne)
        c.fail_at(tn + ": element count overflows (dims product exceeds 2^63)", dims_at);
      if (!zero) n_el *= ne;
      ti.dims.push_back(static_cast<int64_t>(ne));
    }
    const uint64_t type_at = c.pos();
    const uint32_t type_id = c.read<uint32_t>("type of " + tn);
    const auto& facts = detail::type_facts(type_id);
    if (facts.block_size == 0)
      c.fail_at(tn + " has unknown tensor type id " + std::to_string(type_id), type_at);
    ti.type = static_cast<DType>(type_id);
    if (ti.dims[0] % facts.block_size != 0)
      c.fail_at(tn + ": row length " + std::to_string(ti.dims[0]) + " is not a multiple of the " + facts.name +
                    " block size " + std::to_string(facts.block_size),
                dims_at);
    if (zero) n_el = 0;
    const uint64_t blocks = n_el / static_cast<uint64_t>(facts.block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / facts.type_size)
      c.fail_at(tn + ": byte size overflows", dims_at);
    const uint64_t nbytes = blocks * facts.type_size;
    if (nbytes > size_)
      c.fail_at(tn + " needs " + std::to_string(nbytes) + " bytes of data but the whole file has " +
                    std::to_string(size_),
                dims_at);
    ti.nbytes = static_cast<size_t>(nbytes);
    const uint64_t off_at = c.pos();
    ti.offset = c.read<uint64_t>("data offset of " + tn);
    if (ti.offset % alignment_ != 0)
      c.fail_at(tn + ": data offset " + std::to_string(ti.offset) + " is not a multiple of the alignment " +
                    std::to_string(alignment_),
                off_at);
    seen.emplace(ti.name, tensors_.size());
    tensors_.push_back(std::move(ti));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t end_of_infos = c.pos();
  const uint64_t pad = (alignment_ - end_of_infos % alignment_) % alignment_;
  data_offset_ = end_of_infos + pad;
  if (!tensors_.empty() && data_offset_ > size_)
    c.fail("truncated: the tensor data section would start at byte " + std::to_string(data_offset_) +
           " but the file has " + std::to_string(size_) + " bytes");
  for (auto& ti : tensors_) {
    const uint64_t room = size_ - data_offset_;
    if (ti.offset > room || ti.nbytes > room - ti.offset)
      c.fail("truncated: tensor '" + ti.name + "' data [" + std::to_string(data_offset_ + ti.offset) + ", " +
             std::to_string(data_offset_ + ti.offset + ti.nbytes) + ") ends beyond the file of " +
             std::to_string(size_) + " bytes");
    ti.data = base_ + data_offset_ + ti.offset;
  }
  for (size_t i = 0; i < tensors_.size(); ++i) tensor_index_.emplace(tensors_[i].name, i);
}

std::shared_ptr<File> File::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno), 404);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  std::shared_ptr<File> f(new File());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ == 0) {
    ::close(fd);
    throw Error(path + ": not a GGUF file: the file is empty");
  }
  void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw Error(path + ": cannot map the file: " + std::strerror(e), 500);
  f->base_ = static_cast<const uint8_t*>(p);
  f->mapped_ = true;
  f->parse();
  return f;
}

std::shared_ptr<File> File::from_bytes(const void* data, size_t size, std::string name) {
  std::shared_ptr<File> f(new File());
  f->path_ = std::move(name);
  f->owned_.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size);
  f->base_ = f->owned_.data();
  f->size_ = size;
  f->parse();
  return f;
}

File::~File() {
  if (mapped_ && base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

void File::release(const void* p, size_t n) const {
  if (!mapped_ || n == 0) return;
  const auto* b = static_cast<const uint8_t*>(p);
  if (b < base_ || b + n > base_ + size_) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(b) + page - 1) / page * page;
  const uintptr_t hi = reinterpret_cast<uintptr_t>(b + n) / page * page;
  // A private read-only file mapping: dropped pages come back from the file if touched.
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

const Value* File::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second];
}

std::optional<int64_t> File::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  try {
    return v->as_int();
  } catch (const Error& e) {
    throw Error(path_ + ": " + e.what());
  }
}

std::optional<double> File::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  try {
    return v->as_float();
  } catch (const Error& e) {
    throw Error(path_ + ": " + e.what());
  }
}

std::optional<bool> File::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  try {
    return v->as_bool();
  } catch (const Error& e) {
    throw Error(path_ + ": " + e.what());
  }
}

std::optional<std::string_view> File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  try {
    return v->as_string();
  } catch (const Error& e) {
    throw Error(path_ + ": " + e.what());
  }
}

std::string File::architecture() const {
  auto a = get_string("general.architecture");
  if (!a) throw Error(path_ + ": missing metadata 'general.architecture'");
  return std::string(*a);
}

std::optional<int64_t> File::get_arch_int(std::string_view suffix) const {
  return get_int(architecture() + "." + std::string(suffix));
}

std::optional<double> File::get_arch_float(std::string_view suffix) const {
  return get_float(architecture() + "." + std::string(suffix));
}

const TensorInfo* File::tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace lmhost::gguf
