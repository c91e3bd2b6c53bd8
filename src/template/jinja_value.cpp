// Python value semantics for the Jinja subset: str()/repr(), equality and
// ordering, truthiness, json.dumps as jinja2's tojson filter does it.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "template/jinja.h"

namespace lmhost::jinja {

namespace {
constexpr int kMaxDepth = 200;  // nesting bound for repr/equality/json (self-referencing lists)

void check_depth(int depth) {
  if (depth > kMaxDepth) fail("value nested too deeply (recursive list or dict?)");
}
}  // namespace

void fail(const std::string& msg, int line) {
  if (line > 0) throw TemplateError(msg + " (template line " + std::to_string(line) + ")", 400, line);
  throw TemplateError(msg, 400, line);
}

Value Value::list(List items, bool is_tuple) {
  Value v;
  v.t = T::List;
  v.tuple = is_tuple;
  v.l = std::make_shared<ListObj>();
  v.l->items = std::move(items);
  return v;
}

Value Value::dict() {
  Value v;
  v.t = T::Dict;
  v.d = std::make_shared<DictObj>();
  return v;
}

Value Value::func(std::string name, std::function<Value(Interp&, CallArgs&)> f) {
  Value v;
  v.t = T::Func;
  v.fn = std::make_shared<FuncObj>();
  v.fn->name = std::move(name);
  v.fn->f = std::move(f);
  return v;
}

const Value* DictObj::find(const Value& key) const {
  for (auto& kv : items)
    if (equals(kv.first, key)) return &kv.second;
  return nullptr;
}

const Value* DictObj::find(const std::string& key) const {
  for (auto& kv : items)
    if (kv.first.t == Value::T::Str && kv.first.s == key) return &kv.second;
  return nullptr;
}

void DictObj::set(const Value& key, Value v) {
  for (auto& kv : items)
    if (equals(kv.first, key)) {
      kv.second = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

// ---- UTF-8 ----------------------------------------------------------------
std::vector<std::uint32_t> utf8_decode(const std::string& s) {
  std::vector<std::uint32_t> out;
  out.reserve(s.size());
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    std::uint32_t cp;
    int len;
    if (c < 0x80) { cp = c; len = 1; }
    else if ((c >> 5) == 6) { cp = c & 0x1f; len = 2; }
    else if ((c >> 4) == 14) { cp = c & 0x0f; len = 3; }
    else if ((c >> 3) == 30) { cp = c & 0x07; len = 4; }
    else { out.push_back(0xFFFD); ++i; continue; }
    if (i + len > n) { out.push_back(0xFFFD); ++i; continue; }
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 2) { ok = false; break; }
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (!ok) { out.push_back(0xFFFD); ++i; continue; }
    out.push_back(cp);
    i += len;
  }
  return out;
}

void utf8_append(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) out += static_cast<char>(cp);
  else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

std::string utf8_encode(const std::vector<std::uint32_t>& cps, size_t from, size_t to) {
  std::string out;
  for (size_t k = from; k < to && k < cps.size(); ++k) utf8_append(out, cps[k]);
  return out;
}

std::size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

// ---- str / repr -------------------------------------------------------------
std::string format_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's repr layout: fixed notation
  // for exponents in [-4, 16), scientific otherwise.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t epos = sci.find('e');
  std::string mant = sci.substr(0, epos);
  int exp = std::stoi(sci.substr(epos + 1));
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    int point = exp + 1;  // digits before the decimal point
    if (point <= 0) {
      out += "0." + std::string(static_cast<size_t>(-point), '0') + digits;
    } else if (static_cast<size_t>(point) >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(point) - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(point)) + "." + digits.substr(static_cast<size_t>(point));
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  }
  return out;
}

namespace {

bool py_printable(std::uint32_t cp) {
  if (cp < 0x20 || cp == 0x7f) return false;
  if (cp >= 0x80 && cp <= 0xa0) return false;
  if (cp == 0xad) return false;
  if ((cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
      (cp >= 0x205f && cp <= 0x206f) || cp == 0x3000 || cp == 0xfeff)
    return false;
  if (cp >= 0xd800 && cp <= 0xdfff) return false;
  if (cp >= 0xe000 && cp <= 0xf8ff) return false;  // private use
  return true;
}

std::string repr_str(const std::string& s) {
  bool has_sq = s.find('\'') != std::string::npos;
  bool has_dq = s.find('"') != std::string::npos;
  char q = (has_sq && !has_dq) ? '"' : '\'';
  std::string out(1, q);
  for (std::uint32_t cp : utf8_decode(s)) {
    if (cp == static_cast<std::uint32_t>(q) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') out += "\\n";
    else if (cp == '\r') out += "\\r";
    else if (cp == '\t') out += "\\t";
    else if (!py_printable(cp)) {
      char b[16];
      if (cp < 0x100) std::snprintf(b, sizeof b, "\\x%02x", cp);
      else if (cp < 0x10000) std::snprintf(b, sizeof b, "\\u%04x", cp);
      else std::snprintf(b, sizeof b, "\\U%08x", cp);
      out += b;
    } else utf8_append(out, cp);
  }
  out += q;
  return out;
}

void repr_into(std::string& out, const Value& v, int depth);

void str_into(std::string& out, const Value& v, int depth) {
  switch (v.t) {
    case Value::T::Undefined: return;
    case Value::T::Str: out += v.s; return;
    default: repr_into(out, v, depth);
  }
}

void repr_into(std::string& out, const Value& v, int depth) {
  check_depth(depth);
  switch (v.t) {
    case Value::T::Undefined: return;
    case Value::T::None: out += "None"; return;
    case Value::T::Bool: out += v.b ? "True" : "False"; return;
    case Value::T::Int: out += std::to_string(v.i); return;
    case Value::T::Float: out += format_float(v.f); return;
    case Value::T::Str: out += repr_str(v.s); return;
    case Value::T::List: {
      if (v.gen) {  // Python prints "<generator object NAME at 0xADDRESS>"
        out += "<generator object>";
        return;
      }
      out += v.tuple ? '(' : '[';
      bool first = true;
      for (auto& x : v.l->items) {
        if (!first) out += ", ";
        first = false;
        repr_into(out, x, depth + 1);
      }
      if (v.tuple && v.l->items.size() == 1) out += ',';
      out += v.tuple ? ')' : ']';
      return;
    }
    case Value::T::Dict: {
      if (v.ns) out += "<Namespace ";
      out += '{';
      bool first = true;
      for (auto& kv : v.d->items) {
        if (!first) out += ", ";
        first = false;
        repr_into(out, kv.first, depth + 1);
        out += ": ";
        repr_into(out, kv.second, depth + 1);
      }
      out += '}';
      if (v.ns) out += '>';
      return;
    }
    case Value::T::Func: out += "<function " + v.fn->name + ">"; return;
  }
}

}  // namespace

std::string to_str(const Value& v) {
  if (v.t == Value::T::Str) return v.s;
  std::string out;
  str_into(out, v, 0);
  return out;
}

std::string repr(const Value& v) {
  std::string out;
  repr_into(out, v, 0);
  return out;
}

std::string type_name(const Value& v) {
  switch (v.t) {
    case Value::T::Undefined: return "Undefined";
    case Value::T::None: return "NoneType";
    case Value::T::Bool: return "bool";
    case Value::T::Int: return "int";
    case Value::T::Float: return "float";
    case Value::T::Str: return "str";
    case Value::T::List: return v.gen ? "generator" : v.tuple ? "tuple" : "list";
    case Value::T::Dict: return v.ns ? "Namespace" : "dict";
    case Value::T::Func: return "function";
  }
  return "object";
}

bool truthy(const Value& v) {
  switch (v.t) {
    case Value::T::Undefined: case Value::T::None: return false;
    case Value::T::Bool: return v.b;
    case Value::T::Int: return v.i != 0;
    case Value::T::Float: return v.f != 0;
    case Value::T::Str: return !v.s.empty();
    case Value::T::List: return v.gen || !v.l->items.empty();
    case Value::T::Dict: return v.ns || !v.d->items.empty();
    case Value::T::Func: return true;
  }
  return false;
}

namespace {
double num(const Value& v) {
  return v.t == Value::T::Float ? v.f : v.t == Value::T::Int ? static_cast<double>(v.i) : (v.b ? 1.0 : 0.0);
}
std::int64_t inum(const Value& v) { return v.t == Value::T::Int ? v.i : (v.b ? 1 : 0); }

bool equals_d(const Value& a, const Value& b, int depth) {
  check_depth(depth);
  if (a.is_num() && b.is_num()) {
    if (a.t != Value::T::Float && b.t != Value::T::Float) return inum(a) == inum(b);
    return num(a) == num(b);
  }
  if (a.t != b.t) return false;
  switch (a.t) {
    case Value::T::Undefined: case Value::T::None: return true;
    case Value::T::Str: return a.s == b.s;
    case Value::T::List: {
      if (a.l == b.l && a.gen == b.gen) return true;
      if (a.tuple != b.tuple || a.gen || b.gen) return false;
      if (a.l->items.size() != b.l->items.size()) return false;
      for (size_t k = 0; k < a.l->items.size(); ++k)
        if (!equals_d(a.l->items[k], b.l->items[k], depth + 1)) return false;
      return true;
    }
    case Value::T::Dict: {
      if (a.d == b.d) return true;
      if (a.ns || b.ns) return false;
      if (a.d->items.size() != b.d->items.size()) return false;
      for (auto& kv : a.d->items) {
        const Value* o = b.d->find(kv.first);
        if (!o || !equals_d(kv.second, *o, depth + 1)) return false;
      }
      return true;
    }
    case Value::T::Func: return a.fn == b.fn;
    default: return false;
  }
}

int compare_d(const Value& a, const Value& b, int depth) {
  check_depth(depth);
  if (a.is_num() && b.is_num()) {
    if (a.t != Value::T::Float && b.t != Value::T::Float) {
      auto x = inum(a), y = inum(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    double x = num(a), y = num(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.t == Value::T::Str && b.t == Value::T::Str) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  if (a.t == Value::T::List && b.t == Value::T::List && a.tuple == b.tuple) {
    size_t n = std::min(a.l->items.size(), b.l->items.size());
    for (size_t k = 0; k < n; ++k) {
      if (equals_d(a.l->items[k], b.l->items[k], depth + 1)) continue;
      return compare_d(a.l->items[k], b.l->items[k], depth + 1);
    }
    return a.l->items.size() < b.l->items.size() ? -1 : a.l->items.size() > b.l->items.size() ? 1 : 0;
  }
  fail("'<' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}
}  // namespace

bool equals(const Value& a, const Value& b) { return equals_d(a, b, 0); }
int compare(const Value& a, const Value& b) { return compare_d(a, b, 0); }

// ---- json.dumps(sort_keys=True, ensure_ascii=True) + htmlsafe escapes ---------
namespace {
void json_str(std::string& out, const std::string& s) {
  out += '"';
  for (std::uint32_t cp : utf8_decode(s)) {
    char b[16];
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      // htmlsafe_json_dumps replaces these after dumping
      case '<': out += "\\u003c"; break;
      case '>': out += "\\u003e"; break;
      case '&': out += "\\u0026"; break;
      case '\'': out += "\\u0027"; break;
      default:
        if (cp < 0x20 || cp >= 0x7f) {
          if (cp >= 0x10000) {
            std::uint32_t c = cp - 0x10000;
            std::snprintf(b, sizeof b, "\\u%04x\\u%04x", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3ff));
          } else {
            std::snprintf(b, sizeof b, "\\u%04x", cp);
          }
          out += b;
        } else {
          out += static_cast<char>(cp);
        }
    }
  }
  out += '"';
}

void json_into(std::string& out, const Value& v, int indent, int level) {
  check_depth(level);
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(lvl), ' ');
  };
  switch (v.t) {
    case Value::T::Undefined: fail("Object of type Undefined is not JSON serializable");
    case Value::T::List:
      if (v.gen) fail("Object of type generator is not JSON serializable");
      break;
    default: break;
  }
  switch (v.t) {
    case Value::T::Undefined: return;
    case Value::T::None: out += "null"; return;
    case Value::T::Bool: out += v.b ? "true" : "false"; return;
    case Value::T::Int: out += std::to_string(v.i); return;
    case Value::T::Float:
      if (std::isnan(v.f)) out += "NaN";
      else if (std::isinf(v.f)) out += v.f > 0 ? "Infinity" : "-Infinity";
      else out += format_float(v.f);
      return;
    case Value::T::Str: json_str(out, v.s); return;
    case Value::T::List: {
      if (v.l->items.empty()) { out += "[]"; return; }
      out += '[';
      bool first = true;
      for (auto& x : v.l->items) {
        if (!first) out += indent >= 0 ? "," : ", ";
        first = false;
        if (indent >= 0) newline(level + 1);
        json_into(out, x, indent, level + 1);
      }
      if (indent >= 0) newline(level);
      out += ']';
      return;
    }
    case Value::T::Dict: {
      if (v.ns) fail("Object of type Namespace is not JSON serializable");
      if (v.d->items.empty()) { out += "{}"; return; }
      std::vector<const std::pair<Value, Value>*> items;
      for (auto& kv : v.d->items) items.push_back(&kv);
      std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) {
        return compare(a->first, b->first) < 0;
      });
      out += '{';
      bool first = true;
      for (auto* kv : items) {
        if (!first) out += indent >= 0 ? "," : ", ";
        first = false;
        if (indent >= 0) newline(level + 1);
        const Value& k = kv->first;
        if (k.t == Value::T::Str) json_str(out, k.s);
        else if (k.t == Value::T::Int || k.t == Value::T::Float) json_str(out, to_str(k));
        else if (k.t == Value::T::Bool) out += k.b ? "\"true\"" : "\"false\"";
        else if (k.t == Value::T::None) out += "\"null\"";
        else fail("keys must be str, int, float, bool or None, not " + type_name(k));
        out += ": ";
        json_into(out, kv->second, indent, level + 1);
      }
      if (indent >= 0) newline(level);
      out += '}';
      return;
    }
    case Value::T::Func: fail("Object of type function is not JSON serializable");
  }
}
}  // namespace

std::string to_json(const Value& v, int indent) {
  std::string out;
  json_into(out, v, indent, 0);
  return out;
}

}  // namespace lmhost::jinja
