// Tree-walking interpreter of the Jinja subset: scoping as jinja2 does it
// (for-loop iterations and macro calls get their own scope, `set` inside
// them does not leak, namespace() objects are shared), the sandbox's range
// limit, the filters, tests, globals and Python methods templates use.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <unordered_map>

#include "template/jinja.h"

namespace lmhost::jinja {

namespace {

using T = Value::T;
constexpr std::int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

// ---- text helpers ------------------------------------------------------------
bool py_space(std::uint32_t c) {
  return (c >= 9 && c <= 13) || (c >= 28 && c <= 32) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

std::uint32_t cp_lower(std::uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c >= 0x100 && c <= 0x137) return c | 1;
  if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;
  if (c >= 0x14A && c <= 0x177) return c | 1;
  if (c == 0x178) return 0xFF;
  if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c + 1 : c;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}
std::uint32_t cp_upper(std::uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0x80) return c;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x137) return c & ~1u;
  if (c >= 0x139 && c <= 0x148) return (c & 1) ? c : c - 1;
  if (c >= 0x14A && c <= 0x177) return c & ~1u;
  if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c : c - 1;
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}
bool cp_is_lower(std::uint32_t c) { return cp_upper(c) != c; }
bool cp_is_upper(std::uint32_t c) { return cp_lower(c) != c; }
bool cp_is_alpha(std::uint32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0x80 && cp_lower(c) != cp_upper(c)) ||
         (c >= 0xAA && !py_space(c) && c > 0x2FF && c != 0x3000);
}

std::string map_cps(const std::string& s, std::uint32_t (*f)(std::uint32_t)) {
  std::string out;
  out.reserve(s.size());
  for (auto c : utf8_decode(s)) utf8_append(out, f(c));
  return out;
}
std::string lower(const std::string& s) { return map_cps(s, cp_lower); }
std::string upper(const std::string& s) { return map_cps(s, cp_upper); }

std::string capitalize(const std::string& s) {
  auto cps = utf8_decode(s);
  std::string out;
  for (size_t k = 0; k < cps.size(); ++k) utf8_append(out, k == 0 ? cp_upper(cps[k]) : cp_lower(cps[k]));
  return out;
}

// Python str.title(): a letter after a non-letter is upper-cased, others lowered.
std::string py_title(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  for (auto c : utf8_decode(s)) {
    bool cased = cp_is_lower(c) || cp_is_upper(c);
    utf8_append(out, cased ? (prev_cased ? cp_lower(c) : cp_upper(c)) : c);
    prev_cased = cased;
  }
  return out;
}

// jinja2's do_title: words start after whitespace or one of - ( { [ <.
std::string jinja_title(const std::string& s) {
  std::string out;
  bool start = true;
  for (auto c : utf8_decode(s)) {
    bool sep = py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) {
      utf8_append(out, c);
      start = true;
    } else {
      utf8_append(out, start ? cp_upper(c) : cp_lower(c));
      start = false;
    }
  }
  return out;
}

std::string strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto cps = utf8_decode(s);
  std::vector<std::uint32_t> set;
  bool use_set = chars && chars->t == T::Str;
  if (chars && !use_set && chars->t != T::None && chars->t != T::Undefined)
    fail("strip arg must be None or str");
  if (use_set) set = utf8_decode(chars->s);
  auto in = [&](std::uint32_t c) {
    return use_set ? std::find(set.begin(), set.end(), c) != set.end() : py_space(c);
  };
  size_t b = 0, e = cps.size();
  if (left) while (b < e && in(cps[b])) ++b;
  if (right) while (e > b && in(cps[e - 1])) --e;
  return utf8_encode(cps, b, e);
}

List split(const std::string& s, const Value* sep, std::int64_t maxsplit, bool from_right) {
  List out;
  if (!sep || sep->t == T::None || sep->t == T::Undefined) {
    auto cps = utf8_decode(s);
    std::vector<std::pair<size_t, size_t>> words;
    if (!from_right) {
      size_t k = 0;
      while (k < cps.size()) {
        while (k < cps.size() && py_space(cps[k])) ++k;
        if (k >= cps.size()) break;
        if (maxsplit >= 0 && static_cast<std::int64_t>(words.size()) == maxsplit) {
          size_t e = cps.size();
          while (e > k && py_space(cps[e - 1])) --e;
          words.emplace_back(k, e);
          break;
        }
        size_t b = k;
        while (k < cps.size() && !py_space(cps[k])) ++k;
        words.emplace_back(b, k);
      }
    } else {
      size_t k = cps.size();
      while (k > 0) {
        while (k > 0 && py_space(cps[k - 1])) --k;
        if (k == 0) break;
        if (maxsplit >= 0 && static_cast<std::int64_t>(words.size()) == maxsplit) {
          size_t b = 0;
          while (b < k && py_space(cps[b])) ++b;
          words.emplace_back(b, k);
          break;
        }
        size_t e = k;
        while (k > 0 && !py_space(cps[k - 1])) --k;
        words.emplace_back(k, e);
      }
      std::reverse(words.begin(), words.end());
    }
    for (auto& w : words) out.push_back(Value::str(utf8_encode(cps, w.first, w.second)));
    return out;
  }
  if (sep->t != T::Str) fail("must be str or None, not " + type_name(*sep));
  const std::string& d = sep->s;
  if (d.empty()) fail("empty separator");
  std::vector<std::string> parts;
  if (!from_right) {
    size_t pos = 0;
    while (true) {
      size_t f = s.find(d, pos);
      if (f == std::string::npos || (maxsplit >= 0 && static_cast<std::int64_t>(parts.size()) == maxsplit)) {
        parts.push_back(s.substr(pos));
        break;
      }
      parts.push_back(s.substr(pos, f - pos));
      pos = f + d.size();
    }
  } else {
    size_t end = s.size();
    while (true) {
      size_t f = end >= d.size() ? s.rfind(d, end - d.size()) : std::string::npos;
      if (f == std::string::npos || (maxsplit >= 0 && static_cast<std::int64_t>(parts.size()) == maxsplit)) {
        parts.push_back(s.substr(0, end));
        break;
      }
      parts.push_back(s.substr(f + d.size(), end - f - d.size()));
      end = f;
    }
    std::reverse(parts.begin(), parts.end());
  }
  for (auto& p : parts) out.push_back(Value::str(std::move(p)));
  return out;
}

std::string replace(const std::string& s, const std::string& from, const std::string& to, std::int64_t count) {
  std::string out;
  if (from.empty()) {
    auto cps = utf8_decode(s);
    std::int64_t n = 0;
    for (size_t k = 0; k <= cps.size(); ++k) {
      if (count < 0 || n < count) { out += to; ++n; }
      if (k < cps.size()) utf8_append(out, cps[k]);
    }
    return out;
  }
  size_t pos = 0;
  std::int64_t n = 0;
  while (true) {
    size_t f = s.find(from, pos);
    if (f == std::string::npos || (count >= 0 && n >= count)) break;
    out.append(s, pos, f - pos);
    out += to;
    pos = f + from.size();
    ++n;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// The common subset of html.unescape: named entities of HTML 4's basics and
// numeric references.
std::string html_unescape(const std::string& s) {
  static const std::pair<const char*, const char*> named[] = {
      {"amp", "&"}, {"lt", "<"}, {"gt", ">"}, {"quot", "\""}, {"apos", "'"}, {"nbsp", "\xc2\xa0"}};
  std::string out;
  for (size_t k = 0; k < s.size(); ++k) {
    if (s[k] != '&') { out += s[k]; continue; }
    size_t semi = s.find(';', k);
    if (semi != std::string::npos && semi - k <= 10) {
      std::string ent = s.substr(k + 1, semi - k - 1);
      if (ent.size() > 1 && ent[0] == '#') {
        bool hex = ent[1] == 'x' || ent[1] == 'X';
        std::string digits = ent.substr(hex ? 2 : 1);
        bool ok = !digits.empty();
        for (char c : digits) ok &= hex ? std::isxdigit(static_cast<unsigned char>(c)) != 0 : std::isdigit(static_cast<unsigned char>(c)) != 0;
        if (ok) {
          unsigned long cp = std::stoul(digits, nullptr, hex ? 16 : 10);
          if (cp > 0 && cp <= 0x10FFFF) {
            utf8_append(out, static_cast<std::uint32_t>(cp));
            k = semi;
            continue;
          }
        }
      }
      bool done = false;
      for (auto& [n, r] : named)
        if (ent == n) { out += r; k = semi; done = true; break; }
      if (done) continue;
    }
    out += '&';
  }
  return out;
}

// ---- numbers -----------------------------------------------------------------
std::int64_t as_int(const Value& v) { return v.t == T::Int ? v.i : v.t == T::Bool ? (v.b ? 1 : 0) : 0; }
double as_float(const Value& v) {
  return v.t == T::Float ? v.f : v.t == T::Int ? static_cast<double>(v.i) : v.t == T::Bool ? (v.b ? 1.0 : 0.0) : 0.0;
}
bool is_intlike(const Value& v) { return v.t == T::Int || v.t == T::Bool; }

Value checked(bool overflow, std::int64_t r) {
  if (overflow) fail("integer overflow");
  return Value::integer(r);
}

// Does `v` reach the container `target` (a ListObj or DictObj)? Storing such
// a value into the container would make a reference cycle (leaked by
// shared_ptr, printed forever by repr), so those stores are refused.
bool reaches(const Value& v, const void* target, int depth = 0) {
  if (depth > 200) return true;
  if (v.t == T::List) {
    if (v.l.get() == target) return true;
    for (auto& x : v.l->items)
      if ((x.t == T::List || x.t == T::Dict) && reaches(x, target, depth + 1)) return true;
  } else if (v.t == T::Dict) {
    if (v.d.get() == target) return true;
    for (auto& kv : v.d->items)
      if ((kv.second.t == T::List || kv.second.t == T::Dict) && reaches(kv.second, target, depth + 1)) return true;
  }
  return false;
}

void no_cycle(const Value& v, const void* target, int line) {
  if (reaches(v, target)) fail("cannot store a list or dict inside itself", line);
}

// ---- scopes ------------------------------------------------------------------
struct Scope {
  std::unordered_map<std::string, Value> vars;
  Scope* parent = nullptr;
};

enum class Flow { Normal, Break, Continue };

}  // namespace

struct Interp {
  const Program& prog;
  const ChatTemplate::Options& opt;
  std::unordered_map<std::string, Value> globals;
  Scope root;
  std::uint64_t steps = 0;
  std::size_t produced = 0;
  int call_depth = 0;

  Interp(const Program& p, const ChatTemplate::Options& o) : prog(p), opt(o) {}

  void tick(int line) {
    if (++steps > opt.max_steps)
      fail("template exceeded the step limit (" + std::to_string(opt.max_steps) + ")", line);
  }
  void emit(std::string& out, const std::string& s, int line) {
    produced += s.size();
    if (produced > opt.max_output_bytes || out.size() + s.size() > opt.max_output_bytes)
      fail("template output exceeded " + std::to_string(opt.max_output_bytes) + " bytes", line);
    out += s;
  }
  void check_size(std::size_t n, int line) {
    if (n > opt.max_output_bytes) fail("value too large (" + std::to_string(n) + " bytes)", line);
  }

  Value lookup(const std::string& name, Scope* sc) const {
    for (Scope* s = sc; s; s = s->parent) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return it->second;
    }
    auto it = globals.find(name);
    if (it != globals.end()) return it->second;
    return Value::undefined("'" + name + "' is undefined");
  }

  // ---- statements ----
  Flow exec(const Body& body, Scope* sc, std::string& out) {
    for (auto& st : body) {
      Flow f = exec_one(*st, sc, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec_one(const Stmt& st, Scope* sc, std::string& out) {
    tick(st.line);
    switch (st.k) {
      case Stmt::K::Text: emit(out, st.text, st.line); return Flow::Normal;
      case Stmt::K::Output: {
        Value v = eval(*st.expr, sc);
        if (v.t == T::Str) emit(out, v.s, st.line);
        else emit(out, to_str(v), st.line);
        return Flow::Normal;
      }
      case Stmt::K::If:
        for (auto& br : st.branches) {
          if (!br.first || truthy(eval(*br.first, sc))) return exec(br.second, sc, out);
        }
        return Flow::Normal;
      case Stmt::K::For: return exec_for(st, sc, out);
      case Stmt::K::Set: {
        Value v = eval(*st.expr, sc);
        assign(st.targets, std::move(v), sc, st.line);
        return Flow::Normal;
      }
      case Stmt::K::SetAttr: {
        Value ns = lookup(st.text, sc);
        if (!(ns.t == T::Dict && ns.ns)) fail("can't assign attribute '" + st.attr + "' on non-namespace object '" + st.text + "'", st.line);
        Value v = eval(*st.expr, sc);
        no_cycle(v, ns.d.get(), st.line);
        ns.d->set(Value::str(st.attr), std::move(v));
        return Flow::Normal;
      }
      case Stmt::K::SetBlock: {
        std::string buf;
        exec(st.body, sc, buf);
        Value v = Value::str(std::move(buf));
        if (st.expr) v = apply_chain(*st.expr, std::move(v), sc);
        sc->vars[st.text] = std::move(v);
        return Flow::Normal;
      }
      case Stmt::K::FilterBlock: {
        std::string buf;
        exec(st.body, sc, buf);
        Value v = apply_chain(*st.expr, Value::str(std::move(buf)), sc);
        emit(out, to_str(v), st.line);
        return Flow::Normal;
      }
      case Stmt::K::Macro: sc->vars[st.text] = make_macro(st); return Flow::Normal;
      case Stmt::K::CallBlock: return exec_call_block(st, sc, out);
      case Stmt::K::Break: return Flow::Break;
      case Stmt::K::Continue: return Flow::Continue;
    }
    return Flow::Normal;
  }

  void assign(const std::vector<std::string>& targets, Value v, Scope* sc, int line) {
    if (targets.size() == 1) {
      sc->vars[targets[0]] = std::move(v);
      return;
    }
    List items = unpack(v, targets.size(), line);
    for (size_t k = 0; k < targets.size(); ++k) sc->vars[targets[k]] = std::move(items[k]);
  }

  List unpack(const Value& v, size_t n, int line) {
    List items = iterate(v, line);
    if (items.size() > n) fail("too many values to unpack (expected " + std::to_string(n) + ")", line);
    if (items.size() < n)
      fail("not enough values to unpack (expected " + std::to_string(n) + ", got " + std::to_string(items.size()) + ")", line);
    return items;
  }

  Flow exec_for(const Stmt& st, Scope* sc, std::string& out) {
    List src = iterate(eval(*st.expr, sc), st.line);
    List items;
    if (st.cond) {
      for (auto& it : src) {
        tick(st.line);
        Scope s;
        s.parent = sc;
        assign(st.targets, it, &s, st.line);
        if (truthy(eval(*st.cond, &s))) items.push_back(it);
      }
    } else {
      items = std::move(src);
    }
    if (items.empty()) {
      exec(st.else_body, sc, out);
      return Flow::Normal;
    }
    const std::int64_t n = static_cast<std::int64_t>(items.size());
    auto last_changed = std::make_shared<std::optional<Value>>();  // loop.changed(*args) state
    for (std::int64_t k = 0; k < n; ++k) {
      tick(st.line);
      Scope s;
      s.parent = sc;
      assign(st.targets, items[static_cast<size_t>(k)], &s, st.line);
      Value loop = Value::dict();
      loop.ns = true;
      auto& d = *loop.d;
      d.items.reserve(12);
      d.items.emplace_back(Value::str("index0"), Value::integer(k));
      d.items.emplace_back(Value::str("index"), Value::integer(k + 1));
      d.items.emplace_back(Value::str("revindex0"), Value::integer(n - k - 1));
      d.items.emplace_back(Value::str("revindex"), Value::integer(n - k));
      d.items.emplace_back(Value::str("first"), Value::boolean(k == 0));
      d.items.emplace_back(Value::str("last"), Value::boolean(k == n - 1));
      d.items.emplace_back(Value::str("length"), Value::integer(n));
      d.items.emplace_back(Value::str("depth"), Value::integer(1));
      d.items.emplace_back(Value::str("depth0"), Value::integer(0));
      if (k > 0) d.items.emplace_back(Value::str("previtem"), items[static_cast<size_t>(k - 1)]);
      if (k + 1 < n) d.items.emplace_back(Value::str("nextitem"), items[static_cast<size_t>(k + 1)]);
      d.items.emplace_back(Value::str("cycle"), Value::func("cycle", [k](Interp&, CallArgs& a) -> Value {
        if (a.pos.empty()) fail("no items for cycling given");
        return a.pos[static_cast<size_t>(k) % a.pos.size()];
      }));
      d.items.emplace_back(Value::str("changed"), Value::func("changed", [last_changed](Interp&, CallArgs& a) -> Value {
        Value now = Value::list(a.pos, true);
        if (*last_changed && equals(**last_changed, now)) return Value::boolean(false);
        *last_changed = std::move(now);
        return Value::boolean(true);
      }));
      s.vars["loop"] = std::move(loop);
      Flow f = exec(st.body, &s, out);
      if (f == Flow::Break) break;
    }
    return Flow::Normal;
  }

  Value make_macro(const Stmt& st) {
    const Stmt* m = &st;
    return Value::func(st.text, [m](Interp& in, CallArgs& a) -> Value {
      if (a.pos.size() > m->params.size())
        fail("macro '" + m->text + "' takes not more than " + std::to_string(m->params.size()) + " argument(s)", m->line);
      if (++in.call_depth > in.opt.max_call_depth) {
        --in.call_depth;
        fail("maximum macro recursion depth (" + std::to_string(in.opt.max_call_depth) + ") exceeded", m->line);
      }
      struct Guard { int& d; ~Guard() { --d; } } guard{in.call_depth};
      Scope s;
      s.parent = &in.root;
      in.bind_params(*m, "macro '" + m->text + "'", a, s, true);
      std::string buf;
      in.exec(m->body, &s, buf);
      return Value::str(std::move(buf));
    });
  }

  // Binds call arguments to the parameters of a macro or call-block caller
  // (st.params) in scope s. A macro also takes the `caller` of a call block.
  void bind_params(const Stmt& st, const std::string& what, CallArgs& a, Scope& s, bool takes_caller) {
    if (a.pos.size() > st.params.size())
      fail(what + " takes not more than " + std::to_string(st.params.size()) + " argument(s)", st.line);
    for (auto& kv : a.kw) {
      bool known = takes_caller && kv.first == "caller";
      for (auto& p : st.params) known |= p.first == kv.first;
      if (!known) fail(what + " takes no keyword argument '" + kv.first + "'", st.line);
      if (kv.first == "caller") s.vars["caller"] = kv.second;
    }
    for (size_t k = 0; k < st.params.size(); ++k) {
      const auto& p = st.params[k];
      const Value* given = nullptr;
      if (k < a.pos.size()) given = &a.pos[k];
      for (auto& kv : a.kw)
        if (kv.first == p.first) {
          if (given) fail(what + " got multiple values for argument '" + p.first + "'", st.line);
          given = &kv.second;
        }
      if (given) s.vars[p.first] = *given;
      else if (p.second) s.vars[p.first] = eval(*p.second, &s);
      else s.vars[p.first] = Value::undefined("parameter '" + p.first + "' was not provided");
    }
  }

  // {% call(params) f(args) %}body{% endcall %}: calls f with an extra
  // keyword argument `caller`, a macro rendering body in the call site's scope.
  Flow exec_call_block(const Stmt& st, Scope* sc, std::string& out) {
    auto alive = std::make_shared<bool>(true);
    const Stmt* stp = &st;
    Value caller = Value::func("caller", [stp, sc, alive](Interp& in, CallArgs& a) -> Value {
      if (!*alive) fail("caller() used after its call block ended", stp->line);
      if (++in.call_depth > in.opt.max_call_depth) {
        --in.call_depth;
        fail("maximum macro recursion depth (" + std::to_string(in.opt.max_call_depth) + ") exceeded", stp->line);
      }
      struct Guard { int& d; ~Guard() { --d; } } guard{in.call_depth};
      Scope s;
      s.parent = sc;
      in.bind_params(*stp, "macro 'caller'", a, s, false);
      std::string buf;
      in.exec(stp->body, &s, buf);
      return Value::str(std::move(buf));
    });
    struct Expire { std::shared_ptr<bool> a; ~Expire() { *a = false; } } expire{alive};
    const Expr& call = *st.expr;
    Value fn = eval(*call.args[0], sc);
    CallArgs a = eval_args(call, 1, sc);
    for (auto& kv : a.kw)
      if (kv.first == "caller") fail("got multiple values for keyword argument 'caller'", st.line);
    a.kw.emplace_back("caller", std::move(caller));
    if (fn.t == T::Undefined) fail(fn.s.empty() ? "undefined value is not callable" : fn.s, st.line);
    if (fn.t != T::Func) fail("'" + type_name(fn) + "' object is not callable", st.line);
    tick(st.line);
    Value v = fn.fn->f(*this, a);
    emit(out, v.t == T::Str ? v.s : to_str(v), st.line);
    return Flow::Normal;
  }

  static Value generator(List items) {
    Value v = Value::list(std::move(items));
    v.gen = true;
    return v;
  }

  // ---- iteration / access ----
  List iterate(const Value& v, int line) {
    switch (v.t) {
      case T::List:
        if (v.gen) {  // a Python iterator is consumed by iterating it
          List items = std::move(v.l->items);
          v.l->items.clear();
          return items;
        }
        return v.l->items;
      case T::Dict: {
        if (v.ns) break;
        List out;
        for (auto& kv : v.d->items) out.push_back(kv.first);
        return out;
      }
      case T::Str: {
        List out;
        for (auto c : utf8_decode(v.s)) {
          std::string s;
          utf8_append(s, c);
          out.push_back(Value::str(std::move(s)));
        }
        return out;
      }
      case T::Undefined: return {};
      default: break;
    }
    fail("'" + type_name(v) + "' object is not iterable", line);
  }

  static bool is_dict_method(const std::string& n) {
    return n == "items" || n == "keys" || n == "values" || n == "get" || n == "copy" || n == "pop" ||
           n == "update" || n == "setdefault";
  }
  static bool is_str_method(const std::string& n) {
    static const char* names[] = {"strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith",
                                  "upper", "lower", "title", "capitalize", "replace", "find", "rfind", "count",
                                  "index", "join", "isdigit", "isalpha", "isalnum", "isspace", "islower",
                                  "isupper", "splitlines", "swapcase", "casefold", "zfill", "center", "ljust",
                                  "rjust", "removeprefix", "removesuffix", "partition", "format"};
    for (auto* x : names)
      if (n == x) return true;
    return false;
  }
  static bool is_list_method(const std::string& n) {
    return n == "append" || n == "pop" || n == "extend" || n == "insert" || n == "index" || n == "count" ||
           n == "reverse" || n == "remove" || n == "copy";
  }

  Value get_attr(const Value& obj, const std::string& name, int line) {
    switch (obj.t) {
      case T::Undefined: fail(obj.s.empty() ? "undefined value has no attribute '" + name + "'" : obj.s, line);
      case T::Dict:
        if (!obj.ns && is_dict_method(name)) return bind_method(obj, name, line);
        if (const Value* v = obj.d->find(name)) return *v;
        break;
      case T::Str:
        if (is_str_method(name)) return bind_method(obj, name, line);
        break;
      case T::List:
        if (!obj.gen && is_list_method(name)) return bind_method(obj, name, line);
        break;
      default: break;
    }
    return Value::undefined("'" + type_name(obj) + " object' has no attribute '" + name + "'");
  }

  Value get_item(const Value& obj, const Value& key, int line) {
    switch (obj.t) {
      case T::Undefined: fail(obj.s.empty() ? "undefined value is not subscriptable" : obj.s, line);
      case T::Dict:
        if (obj.ns) break;
        if (const Value* v = obj.d->find(key)) return *v;
        break;
      case T::List:
        if (obj.gen) return Value::undefined("'generator object' has no attribute '" + to_str(key) + "'");
        if (is_intlike(key)) {
          std::int64_t n = static_cast<std::int64_t>(obj.l->items.size()), k = as_int(key);
          if (k < 0) k += n;
          if (k >= 0 && k < n) return obj.l->items[static_cast<size_t>(k)];
          return Value::undefined("list index out of range");
        }
        break;
      case T::Str:
        if (is_intlike(key)) {
          auto cps = utf8_decode(obj.s);
          std::int64_t n = static_cast<std::int64_t>(cps.size()), k = as_int(key);
          if (k < 0) k += n;
          if (k >= 0 && k < n) {
            Value r = Value::str(utf8_encode(cps, static_cast<size_t>(k), static_cast<size_t>(k + 1)));
            r.safe = obj.safe;
            return r;
          }
          return Value::undefined("string index out of range");
        }
        break;
      default: break;
    }
    if (key.t == T::Str) return get_attr(obj, key.s, line);
    return Value::undefined("'" + type_name(obj) + " object' has no attribute " + repr(key));
  }

  Value slice(const Value& obj, const Value& a, const Value& b, const Value& c, int line) {
    if (obj.t == T::Undefined) fail(obj.s.empty() ? "undefined value is not subscriptable" : obj.s, line);
    if (obj.t == T::List && obj.gen) return Value::undefined("'generator' object is not subscriptable");
    auto idx = [&](const Value& v) -> std::optional<std::int64_t> {
      if (v.t == T::None || v.t == T::Undefined) return std::nullopt;
      if (!is_intlike(v)) fail("slice indices must be integers or None", line);
      return as_int(v);
    };
    std::optional<std::int64_t> start = idx(a), stop = idx(b), step_o = idx(c);
    std::int64_t step = step_o.value_or(1);
    if (step == 0) fail("slice step cannot be zero", line);
    auto select = [&](std::int64_t n, auto&& take) {
      auto norm = [&](std::optional<std::int64_t> x, std::int64_t dflt) -> std::int64_t {
        if (!x) return dflt;
        std::int64_t v = *x;
        if (v < 0) v += n;
        if (step > 0) return std::clamp<std::int64_t>(v, 0, n);
        return std::clamp<std::int64_t>(v, -1, n - 1);
      };
      std::int64_t s = norm(start, step > 0 ? 0 : n - 1);
      std::int64_t e = norm(stop, step > 0 ? n : -1);
      if (step > 0)
        for (std::int64_t k = s; k < e; k += step) take(static_cast<size_t>(k));
      else
        for (std::int64_t k = s; k > e; k += step) take(static_cast<size_t>(k));
    };
    if (obj.t == T::List) {
      List out;
      select(static_cast<std::int64_t>(obj.l->items.size()), [&](size_t k) { out.push_back(obj.l->items[k]); });
      return Value::list(std::move(out), obj.tuple);
    }
    if (obj.t == T::Str) {
      auto cps = utf8_decode(obj.s);
      std::string out;
      select(static_cast<std::int64_t>(cps.size()), [&](size_t k) { utf8_append(out, cps[k]); });
      Value r = Value::str(std::move(out));
      r.safe = obj.safe;
      return r;
    }
    // jinja2 compiles slices to a plain Python subscript: no Undefined fallback
    fail("'" + type_name(obj) + "' object is not subscriptable", line);
  }

  // ---- methods of str / dict / list ----
  static const Value* arg(CallArgs& a, size_t pos, const char* name) {
    if (pos < a.pos.size()) return &a.pos[pos];
    for (auto& kv : a.kw)
      if (kv.first == name) return &kv.second;
    return nullptr;
  }
  static std::int64_t int_arg(CallArgs& a, size_t pos, const char* name, std::int64_t dflt) {
    const Value* v = arg(a, pos, name);
    if (!v || v->t == T::None) return dflt;
    if (!is_intlike(*v)) fail(std::string("argument '") + name + "' must be an integer");
    return as_int(*v);
  }
  static const std::string& str_arg(CallArgs& a, size_t pos, const char* name) {
    const Value* v = arg(a, pos, name);
    if (!v) fail(std::string("missing argument '") + name + "'");
    if (v->t != T::Str) fail(std::string("argument '") + name + "' must be str, not " + type_name(*v));
    return v->s;
  }

  Value bind_method(const Value& self, const std::string& name, int line) {
    return Value::func(name, [self, name, line](Interp& in, CallArgs& a) -> Value {
      return in.call_method(self, name, a, line);
    });
  }

  Value call_method(const Value& self, const std::string& m, CallArgs& a, int line) {
    if (self.t == T::Str) {
      if (!self.safe) return str_method(self.s, m, a, line);
      // Markup methods: string arguments are escaped, string results stay Markup
      CallArgs esc = a;
      if (m == "replace" || m == "join")
        for (auto& x : esc.pos)
          if (x.t == T::Str && !x.safe) x = Value::markup(html_escape(x.s));
      if (m == "join" && !esc.pos.empty()) {
        List items = iterate(esc.pos[0], line);
        for (auto& x : items)
          if (x.t == T::Str && !x.safe) x = Value::markup(html_escape(x.s));
        esc.pos[0] = Value::list(std::move(items));
      }
      Value r = str_method(self.s, m, esc, line);
      if (r.t == T::Str) r.safe = true;
      if (r.t == T::List)
        for (auto& x : r.l->items) x.safe = x.t == T::Str;
      return r;
    }
    if (self.t == T::Dict) {
      auto& d = *self.d;
      if (m == "items") {
        List out;
        for (auto& kv : d.items) out.push_back(Value::list({kv.first, kv.second}, true));
        return Value::list(std::move(out));
      }
      if (m == "keys" || m == "values") {
        List out;
        for (auto& kv : d.items) out.push_back(m == "keys" ? kv.first : kv.second);
        return Value::list(std::move(out));
      }
      if (m == "get") {
        const Value* k = arg(a, 0, "key");
        if (!k) fail("get expected at least 1 argument, got 0", line);
        if (const Value* v = d.find(*k)) return *v;
        const Value* dflt = arg(a, 1, "default");
        return dflt ? *dflt : Value::none();
      }
      if (m == "copy") {
        Value c = Value::dict();
        c.d->items = d.items;
        return c;
      }
      if (m == "pop") {
        const Value* k = arg(a, 0, "key");
        if (!k) fail("pop expected at least 1 argument, got 0", line);
        for (size_t i = 0; i < d.items.size(); ++i)
          if (equals(d.items[i].first, *k)) {
            Value v = d.items[i].second;
            d.items.erase(d.items.begin() + static_cast<std::ptrdiff_t>(i));
            return v;
          }
        if (const Value* dflt = arg(a, 1, "default")) return *dflt;
        fail("KeyError: " + repr(*k), line);
      }
      if (m == "setdefault") {
        const Value* k = arg(a, 0, "key");
        if (!k) fail("setdefault expected at least 1 argument, got 0", line);
        if (const Value* v = d.find(*k)) return *v;
        const Value* dflt = arg(a, 1, "default");
        Value v = dflt ? *dflt : Value::none();
        no_cycle(v, self.d.get(), line);
        d.set(*k, v);
        return v;
      }
      if (m == "update") {
        if (const Value* o = arg(a, 0, "other")) {
          if (o->t != T::Dict) fail("update expects a dict", line);
          auto copy = o->d->items;
          for (auto& kv : copy) {
            no_cycle(kv.second, self.d.get(), line);
            d.set(kv.first, kv.second);
          }
        }
        for (auto& kv : a.kw) {
          no_cycle(kv.second, self.d.get(), line);
          d.set(Value::str(kv.first), kv.second);
        }
        return Value::none();
      }
    }
    if (self.t == T::List) {
      auto& v = self.l->items;
      if (m == "append") {
        if (a.pos.size() != 1) fail("append() takes exactly one argument", line);
        if (self.tuple) fail("'tuple' object has no attribute 'append'", line);
        no_cycle(a.pos[0], self.l.get(), line);
        v.push_back(a.pos[0]);
        return Value::none();
      }
      if (m == "extend") {
        if (a.pos.size() != 1) fail("extend() takes exactly one argument", line);
        List more = iterate(a.pos[0], line);
        for (auto& x : more) no_cycle(x, self.l.get(), line);
        v.insert(v.end(), more.begin(), more.end());
        return Value::none();
      }
      if (m == "insert") {
        if (a.pos.size() != 2) fail("insert expected 2 arguments", line);
        std::int64_t n = static_cast<std::int64_t>(v.size()), k = as_int(a.pos[0]);
        if (k < 0) k = std::max<std::int64_t>(0, k + n);
        k = std::min(k, n);
        no_cycle(a.pos[1], self.l.get(), line);
        v.insert(v.begin() + k, a.pos[1]);
        return Value::none();
      }
      if (m == "pop") {
        if (v.empty()) fail("pop from empty list", line);
        std::int64_t n = static_cast<std::int64_t>(v.size()), k = int_arg(a, 0, "index", -1);
        if (k < 0) k += n;
        if (k < 0 || k >= n) fail("pop index out of range", line);
        Value r = v[static_cast<size_t>(k)];
        v.erase(v.begin() + k);
        return r;
      }
      if (m == "index" || m == "count" || m == "remove") {
        if (a.pos.empty()) fail(m + "() takes at least one argument", line);
        std::int64_t cnt = 0;
        for (size_t k = 0; k < v.size(); ++k)
          if (equals(v[k], a.pos[0])) {
            if (m == "index") return Value::integer(static_cast<std::int64_t>(k));
            if (m == "remove") {
              v.erase(v.begin() + static_cast<std::ptrdiff_t>(k));
              return Value::none();
            }
            ++cnt;
          }
        if (m == "count") return Value::integer(cnt);
        fail(repr(a.pos[0]) + " is not in list", line);
      }
      if (m == "reverse") {
        std::reverse(v.begin(), v.end());
        return Value::none();
      }
      if (m == "copy") return Value::list(v);
    }
    fail("'" + type_name(self) + "' object has no attribute '" + m + "'", line);
  }

  Value str_method(const std::string& s, const std::string& m, CallArgs& a, int line) {
    if (m == "strip" || m == "lstrip" || m == "rstrip")
      return Value::str(strip(s, arg(a, 0, "chars"), m != "rstrip", m != "lstrip"));
    if (m == "split" || m == "rsplit") {
      List parts = split(s, arg(a, 0, "sep"), int_arg(a, 1, "maxsplit", -1), m == "rsplit");
      return Value::list(std::move(parts));
    }
    if (m == "startswith" || m == "endswith") {
      const Value* p = arg(a, 0, "prefix");
      if (!p) fail(m + " takes at least 1 argument", line);
      List cands = p->t == T::List && p->tuple ? p->l->items : List{*p};
      for (auto& c : cands) {
        if (c.t != T::Str) fail(m + " first arg must be str or a tuple of str, not " + type_name(c), line);
        if (m == "startswith" ? s.compare(0, c.s.size(), c.s) == 0 && s.size() >= c.s.size()
                              : s.size() >= c.s.size() && s.compare(s.size() - c.s.size(), c.s.size(), c.s) == 0)
          return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (m == "upper") return Value::str(upper(s));
    if (m == "lower" || m == "casefold") return Value::str(lower(s));
    if (m == "title") return Value::str(py_title(s));
    if (m == "capitalize") return Value::str(capitalize(s));
    if (m == "swapcase") {
      std::string out;
      for (auto c : utf8_decode(s)) utf8_append(out, cp_is_upper(c) ? cp_lower(c) : cp_upper(c));
      return Value::str(out);
    }
    if (m == "replace") {
      std::string r = replace(s, str_arg(a, 0, "old"), str_arg(a, 1, "new"), int_arg(a, 2, "count", -1));
      check_size(r.size(), line);
      return Value::str(std::move(r));
    }
    if (m == "find" || m == "rfind" || m == "index" || m == "count") {
      const std::string& sub = str_arg(a, 0, "sub");
      if (m == "count") {
        if (sub.empty()) return Value::integer(static_cast<std::int64_t>(utf8_length(s) + 1));
        std::int64_t n = 0;
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
        return Value::integer(n);
      }
      size_t p = m == "rfind" ? s.rfind(sub) : s.find(sub);
      if (p == std::string::npos) {
        if (m == "index") fail("substring not found", line);
        return Value::integer(-1);
      }
      return Value::integer(static_cast<std::int64_t>(utf8_length(s.substr(0, p))));
    }
    if (m == "join") {
      const Value* it = arg(a, 0, "iterable");
      if (!it) fail("join() takes exactly one argument", line);
      std::string out;
      bool first = true;
      for (auto& x : iterate(*it, line)) {
        if (x.t != T::Str) fail("sequence item: expected str instance, " + type_name(x) + " found", line);
        if (!first) out += s;
        first = false;
        out += x.s;
        check_size(out.size(), line);
      }
      return Value::str(std::move(out));
    }
    if (m == "isdigit" || m == "isalpha" || m == "isalnum" || m == "isspace") {
      auto cps = utf8_decode(s);
      if (cps.empty()) return Value::boolean(false);
      for (auto c : cps) {
        bool dig = c >= '0' && c <= '9';
        bool ok = m == "isdigit" ? dig : m == "isalpha" ? cp_is_alpha(c) : m == "isalnum" ? (dig || cp_is_alpha(c)) : py_space(c);
        if (!ok) return Value::boolean(false);
      }
      return Value::boolean(true);
    }
    if (m == "islower" || m == "isupper") {
      bool any = false;
      for (auto c : utf8_decode(s)) {
        if (m == "islower" ? cp_is_upper(c) : cp_is_lower(c)) return Value::boolean(false);
        any |= cp_is_lower(c) || cp_is_upper(c);
      }
      return Value::boolean(any);
    }
    if (m == "splitlines") {
      List out;
      std::string cur;
      for (size_t k = 0; k < s.size(); ++k) {
        if (s[k] == '\n' || s[k] == '\r') {
          if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
          out.push_back(Value::str(cur));
          cur.clear();
        } else {
          cur += s[k];
        }
      }
      if (!cur.empty()) out.push_back(Value::str(cur));
      return Value::list(std::move(out));
    }
    if (m == "removeprefix" || m == "removesuffix") {
      const std::string& p = str_arg(a, 0, "prefix");
      if (m == "removeprefix" && s.compare(0, p.size(), p) == 0 && s.size() >= p.size()) return Value::str(s.substr(p.size()));
      if (m == "removesuffix" && s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0)
        return Value::str(s.substr(0, s.size() - p.size()));
      return Value::str(s);
    }
    if (m == "partition") {
      const std::string& sep = str_arg(a, 0, "sep");
      size_t p = sep.empty() ? std::string::npos : s.find(sep);
      if (sep.empty()) fail("empty separator", line);
      if (p == std::string::npos) return Value::list({Value::str(s), Value::str(""), Value::str("")}, true);
      return Value::list({Value::str(s.substr(0, p)), Value::str(sep), Value::str(s.substr(p + sep.size()))}, true);
    }
    if (m == "zfill" || m == "center" || m == "ljust" || m == "rjust") {
      std::int64_t w = int_arg(a, 0, "width", 0);
      check_size(static_cast<size_t>(std::max<std::int64_t>(w, 0)), line);
      std::int64_t len = static_cast<std::int64_t>(utf8_length(s));
      if (w <= len) return Value::str(s);
      std::string fill = " ";
      if (m != "zfill") {
        if (const Value* f = arg(a, 1, "fillchar")) {
          if (f->t != T::Str || utf8_length(f->s) != 1) fail("The fill character must be exactly one character long", line);
          fill = f->s;
        }
      }
      auto rep = [&](std::int64_t k, const std::string& c) {
        std::string r;
        for (std::int64_t i = 0; i < k; ++i) r += c;
        return r;
      };
      std::int64_t pad = w - len;
      if (m == "zfill") {
        if (!s.empty() && (s[0] == '-' || s[0] == '+')) return Value::str(s.substr(0, 1) + rep(pad, "0") + s.substr(1));
        return Value::str(rep(pad, "0") + s);
      }
      if (m == "ljust") return Value::str(s + rep(pad, fill));
      if (m == "rjust") return Value::str(rep(pad, fill) + s);
      std::int64_t left = pad / 2 + (pad & w & 1);
      return Value::str(rep(left, fill) + s + rep(pad - left, fill));
    }
    if (m == "format") {  // "{}", "{0}", "{name}", "{{", "}}" without format specs
      std::string out;
      size_t auto_idx = 0;
      for (size_t k = 0; k < s.size(); ++k) {
        char c = s[k];
        if (c == '}') {
          if (k + 1 < s.size() && s[k + 1] == '}') ++k;
          else fail("Single '}' encountered in format string", line);
          out += '}';
          continue;
        }
        if (c != '{') { out += c; continue; }
        if (k + 1 < s.size() && s[k + 1] == '{') { out += '{'; ++k; continue; }
        size_t e = s.find('}', k);
        if (e == std::string::npos) fail("Single '{' encountered in format string", line);
        std::string field = s.substr(k + 1, e - k - 1);
        if (field.find_first_of(":!.[") != std::string::npos) fail("format specs are not supported in str.format", line);
        const Value* v = nullptr;
        if (field.empty()) {
          if (auto_idx >= a.pos.size()) fail("Replacement index " + std::to_string(auto_idx) + " out of range", line);
          v = &a.pos[auto_idx++];
        } else if (std::all_of(field.begin(), field.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
          size_t idx = field.size() < 9 ? std::stoul(field) : SIZE_MAX;
          if (idx >= a.pos.size()) fail("Replacement index " + field + " out of range", line);
          v = &a.pos[idx];
        } else {
          for (auto& kv : a.kw)
            if (kv.first == field) v = &kv.second;
          if (!v) fail("KeyError: '" + field + "'", line);
        }
        out += to_str(*v);
        check_size(out.size(), line);
        k = e;
      }
      return Value::str(std::move(out));
    }
    fail("'str' object has no attribute '" + m + "'", line);
  }

  // ---- expressions ----
  Value eval(const Expr& e, Scope* sc) {
    switch (e.k) {
      case Expr::K::Const: return e.value;
      case Expr::K::Name: return lookup(e.name, sc);
      case Expr::K::Attr: return get_attr(eval(*e.args[0], sc), e.name, e.line);
      case Expr::K::Item: {
        Value obj = eval(*e.args[0], sc);
        return get_item(obj, eval(*e.args[1], sc), e.line);
      }
      case Expr::K::Slice: {
        Value obj = eval(*e.args[0], sc);
        Value parts[3];
        for (int k = 0; k < 3; ++k)
          if (e.args[static_cast<size_t>(k + 1)]) parts[k] = eval(*e.args[static_cast<size_t>(k + 1)], sc);
        return slice(obj, parts[0], parts[1], parts[2], e.line);
      }
      case Expr::K::Call: {
        Value fn = eval(*e.args[0], sc);
        CallArgs a = eval_args(e, 1, sc);
        if (fn.t == T::Undefined) fail(fn.s.empty() ? "undefined value is not callable" : fn.s, e.line);
        if (fn.t != T::Func) fail("'" + type_name(fn) + "' object is not callable", e.line);
        tick(e.line);
        return fn.fn->f(*this, a);
      }
      case Expr::K::Filter: {
        Value v = eval(*e.args[0], sc);
        CallArgs a = eval_args(e, 1, sc);
        return apply_filter(e.name, std::move(v), a, e.line);
      }
      case Expr::K::Test: {
        Value v = eval(*e.args[0], sc);
        CallArgs a = eval_args(e, 1, sc);
        bool r = run_test(e.name, v, a, e.line);
        return Value::boolean(e.negated ? !r : r);
      }
      case Expr::K::Neg: case Expr::K::Pos: {
        Value v = eval(*e.args[0], sc);
        if (v.t == T::Undefined) fail(v.s, e.line);
        if (!v.is_num()) fail("bad operand type for unary " + std::string(e.k == Expr::K::Neg ? "-" : "+") + ": '" + type_name(v) + "'", e.line);
        if (e.k == Expr::K::Pos) return v.t == T::Bool ? Value::integer(as_int(v)) : v;
        if (v.t == T::Float) return Value::number(-v.f);
        if (as_int(v) == INT64_MIN) fail("integer overflow", e.line);
        return Value::integer(-as_int(v));
      }
      case Expr::K::Not: return Value::boolean(!truthy(eval(*e.args[0], sc)));
      case Expr::K::And: {
        Value a = eval(*e.args[0], sc);
        if (!truthy(a)) return a;
        return eval(*e.args[1], sc);
      }
      case Expr::K::Or: {
        Value a = eval(*e.args[0], sc);
        if (truthy(a)) return a;
        return eval(*e.args[1], sc);
      }
      case Expr::K::Binary: {
        Value a = eval(*e.args[0], sc);
        Value b = eval(*e.args[1], sc);
        return binop(e.name, a, b, e.line);
      }
      case Expr::K::Compare: {
        Value left = eval(*e.args[0], sc);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = eval(*e.args[k + 1], sc);
          if (!cmp(e.ops[k], left, right, e.line)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::K::Cond: {
        if (truthy(eval(*e.args[0], sc))) return eval(*e.args[1], sc);
        if (e.args[2]) return eval(*e.args[2], sc);
        return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
      }
      case Expr::K::ListLit: case Expr::K::TupleLit: {
        List items;
        for (auto& x : e.args) items.push_back(eval(*x, sc));
        return Value::list(std::move(items), e.k == Expr::K::TupleLit);
      }
      case Expr::K::DictLit: {
        Value d = Value::dict();
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          Value key = eval(*e.args[k], sc);
          if (key.t == T::List && !key.tuple) fail("unhashable type: 'list'", e.line);
          if (key.t == T::Dict) fail("unhashable type: 'dict'", e.line);
          d.d->set(key, eval(*e.args[k + 1], sc));
        }
        return d;
      }
      case Expr::K::Concat: {
        std::string out;
        for (auto& x : e.args) {
          out += to_str(eval(*x, sc));
          check_size(out.size(), e.line);
        }
        return Value::str(std::move(out));
      }
    }
    return Value::undefined();
  }

  CallArgs eval_args(const Expr& e, size_t first, Scope* sc) {
    CallArgs a;
    size_t nkw = e.kwnames.size();
    size_t npos = e.args.size() - first - nkw;
    for (size_t k = 0; k < npos; ++k) a.pos.push_back(eval(*e.args[first + k], sc));
    if (e.star_args) {
      Value seq = eval(*e.star_args, sc);
      if (!(seq.t == T::List || seq.t == T::Str || seq.is_dict()))
        fail("argument after * must be an iterable, not " + type_name(seq), e.line);
      for (auto& v : iterate(seq, e.line)) a.pos.push_back(std::move(v));
    }
    for (size_t k = 0; k < nkw; ++k) a.kw.emplace_back(e.kwnames[k], eval(*e.args[first + npos + k], sc));
    if (e.star_kwargs) {
      Value m = eval(*e.star_kwargs, sc);
      if (!m.is_dict()) fail("argument after ** must be a mapping, not " + type_name(m), e.line);
      for (auto& kv : m.d->items) {
        if (kv.first.t != T::Str) fail("keywords must be strings", e.line);
        for (auto& have : a.kw)
          if (have.first == kv.first.s) fail("got multiple values for keyword argument '" + kv.first.s + "'", e.line);
        a.kw.emplace_back(kv.first.s, kv.second);
      }
    }
    return a;
  }

  Value apply_chain(const Expr& chain, Value v, Scope* sc) {
    if (chain.k != Expr::K::Filter) return v;
    Value inner = apply_chain(*chain.args[0], std::move(v), sc);
    CallArgs a = eval_args(chain, 1, sc);
    return apply_filter(chain.name, std::move(inner), a, chain.line);
  }

  Value binop(const std::string& op, const Value& a, const Value& b, int line) {
    if (a.t == T::Undefined) fail(a.s.empty() ? "undefined value in arithmetic" : a.s, line);
    if (b.t == T::Undefined) fail(b.s.empty() ? "undefined value in arithmetic" : b.s, line);
    const char o = op[0];
    bool ints = is_intlike(a) && is_intlike(b);
    bool nums = a.is_num() && b.is_num();
    std::int64_t r = 0;
    if (op == "+") {
      if (ints) { bool ov = __builtin_add_overflow(as_int(a), as_int(b), &r); return checked(ov, r); }
      if (nums) return Value::number(as_float(a) + as_float(b));
      if (a.t == T::Str && b.t == T::Str) {
        check_size(a.s.size() + b.s.size(), line);
        // Markup + str escapes the plain side (markupsafe semantics)
        if (a.safe || b.safe)
          return Value::markup((a.safe ? a.s : html_escape(a.s)) + (b.safe ? b.s : html_escape(b.s)));
        return Value::str(a.s + b.s);
      }
      if (a.t == T::List && b.t == T::List && a.tuple == b.tuple && !a.gen && !b.gen) {
        List items = a.l->items;
        items.insert(items.end(), b.l->items.begin(), b.l->items.end());
        return Value::list(std::move(items), a.tuple);
      }
      if (a.t == T::Str) fail("can only concatenate str (not \"" + type_name(b) + "\") to str", line);
      if (a.t == T::List) fail("can only concatenate list (not \"" + type_name(b) + "\") to list", line);
    } else if (op == "-") {
      if (ints) { bool ov = __builtin_sub_overflow(as_int(a), as_int(b), &r); return checked(ov, r); }
      if (nums) return Value::number(as_float(a) - as_float(b));
    } else if (op == "*") {
      if (ints) { bool ov = __builtin_mul_overflow(as_int(a), as_int(b), &r); return checked(ov, r); }
      if (nums) return Value::number(as_float(a) * as_float(b));
      const Value* seq = (a.t == T::Str || a.t == T::List) ? &a : (b.t == T::Str || b.t == T::List) ? &b : nullptr;
      const Value* cnt = seq == &a ? &b : &a;
      if (seq && is_intlike(*cnt)) {
        std::int64_t n = std::max<std::int64_t>(0, as_int(*cnt));
        size_t unit = seq->t == T::Str ? seq->s.size() : seq->l->items.size() * 16;
        if (unit && static_cast<std::uint64_t>(n) > opt.max_output_bytes / unit) fail("repetition result too large", line);
        if (seq->t == T::Str) {
          std::string out;
          out.reserve(seq->s.size() * static_cast<size_t>(n));
          for (std::int64_t k = 0; k < n; ++k) out += seq->s;
          Value r = Value::str(std::move(out));
          r.safe = seq->safe;
          return r;
        }
        List out;
        for (std::int64_t k = 0; k < n; ++k) out.insert(out.end(), seq->l->items.begin(), seq->l->items.end());
        return Value::list(std::move(out), seq->tuple);
      }
    } else if (op == "/") {
      if (nums) {
        if (as_float(b) == 0) fail("division by zero", line);
        return Value::number(as_float(a) / as_float(b));
      }
    } else if (op == "//" || op == "%") {
      if (ints) {
        std::int64_t x = as_int(a), y = as_int(b);
        if (y == 0) fail(op == "%" ? "integer modulo by zero" : "integer division or modulo by zero", line);
        if (x == INT64_MIN && y == -1) fail("integer overflow", line);
        std::int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) { --q; m += y; }
        return Value::integer(op == "%" ? m : q);
      }
      if (nums) {
        double x = as_float(a), y = as_float(b);
        if (y == 0) fail("float division by zero", line);
        double m = std::fmod(x, y);
        if (m != 0 && ((m < 0) != (y < 0))) m += y;
        if (op == "%") return Value::number(m);
        return Value::number(std::floor(x / y));
      }
      if (op == "%" && a.t == T::Str) return Value::str(percent_format(a.s, b, line));
    } else if (op == "**") {
      if (ints && as_int(b) >= 0) {
        std::int64_t base = as_int(a), ex = as_int(b), res = 1;
        while (ex > 0) {
          if (ex & 1) { if (__builtin_mul_overflow(res, base, &res)) fail("integer overflow", line); }
          ex >>= 1;
          if (ex > 0 && __builtin_mul_overflow(base, base, &base)) fail("integer overflow", line);
        }
        return Value::integer(res);
      }
      if (nums) return Value::number(std::pow(as_float(a), as_float(b)));
    }
    (void)o;
    fail("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'", line);
  }

  // Python "fmt % args" for %s %r %d %i %f %%.
  // Python's printf-style "fmt % args": %(key)s with a dict, flags "-+ 0#",
  // width and precision (digits or *), conversions s r a d i u f F e E g G x X o c %.
  std::string percent_format(const std::string& fmt, const Value& args, int line) {
    const bool by_key = args.is_dict();
    List items = args.t == T::List && args.tuple ? args.l->items : List{args};
    size_t next = 0;
    std::string out;
    auto take = [&]() -> const Value& {
      if (next >= items.size()) fail("not enough arguments for format string", line);
      return items[next++];
    };
    for (size_t k = 0; k < fmt.size(); ++k) {
      if (fmt[k] != '%') { out += fmt[k]; continue; }
      if (++k >= fmt.size()) fail("incomplete format", line);
      const Value* keyed = nullptr;
      if (fmt[k] == '(') {
        size_t close = fmt.find(')', k);
        if (close == std::string::npos) fail("incomplete format key", line);
        if (!by_key) fail("format requires a mapping", line);
        const Value* v = args.d->find(fmt.substr(k + 1, close - k - 1));
        if (!v) fail("KeyError: '" + fmt.substr(k + 1, close - k - 1) + "'", line);
        keyed = v;
        k = close + 1;
      }
      std::string flags;
      while (k < fmt.size() && std::strchr("-+ 0#", fmt[k])) flags += fmt[k++];
      auto number = [&](int& dst) {
        if (k < fmt.size() && fmt[k] == '*') {
          const Value& w = take();
          if (!is_intlike(w)) fail("* wants int", line);
          dst = static_cast<int>(std::clamp<std::int64_t>(as_int(w), -4096, 4096));
          ++k;
          return;
        }
        while (k < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[k]))) {
          dst = std::min(dst * 10 + (fmt[k] - '0'), 4096);
          ++k;
        }
      };
      int width = 0, prec = -1;
      number(width);
      if (width < 0) { flags += '-'; width = -width; }
      if (k < fmt.size() && fmt[k] == '.') {
        ++k;
        prec = 0;
        number(prec);
      }
      while (k < fmt.size() && (fmt[k] == 'l' || fmt[k] == 'h' || fmt[k] == 'L')) ++k;
      if (k >= fmt.size()) fail("incomplete format", line);
      char c = fmt[k];
      if (c == '%') { out += '%'; continue; }
      const Value& v = keyed ? *keyed : take();
      const bool left = flags.find('-') != std::string::npos;
      std::string body;
      bool numeric = false;
      if (c == 's' || c == 'r' || c == 'a') {
        body = c == 's' ? to_str(v) : repr(v);
        if (prec >= 0) {
          auto cps = utf8_decode(body);
          if (cps.size() > static_cast<size_t>(prec)) body = utf8_encode(cps, 0, static_cast<size_t>(prec));
        }
      } else if (c == 'c') {
        if (v.t == T::Str && utf8_length(v.s) == 1) body = v.s;
        else if (is_intlike(v) && as_int(v) >= 0 && as_int(v) <= 0x10FFFF) utf8_append(body, static_cast<std::uint32_t>(as_int(v)));
        else fail("%c requires int or char", line);
      } else if (std::strchr("diuxXo", c)) {
        if (!v.is_num() || (v.t == T::Float && std::strchr("xXo", c)))
          fail(std::string("%") + c + " format: " + (std::strchr("xXo", c) ? "an integer" : "a real number") +
                   " is required, not " + type_name(v), line);
        if (v.t == T::Float && !std::isfinite(v.f)) fail("cannot convert float to integer", line);
        std::int64_t n = v.t == T::Float ? static_cast<std::int64_t>(v.f) : as_int(v);
        std::string f = "%";
        for (char fl : flags) if (fl != '-' && fl != '0') f += fl;
        if (prec >= 0) f += "." + std::to_string(prec);
        f += (c == 'i' || c == 'u') ? std::string("lld") : std::string("ll") + c;
        char b[128];
        if ((c == 'x' || c == 'X' || c == 'o') && n < 0) {
          std::snprintf(b, sizeof b, f.c_str(), static_cast<long long>(-n));
          body = std::string("-") + b;
          if (flags.find('#') != std::string::npos && c == 'o') body = "-0o" + body.substr(2);
        } else {
          std::snprintf(b, sizeof b, f.c_str(), static_cast<long long>(n));
          body = b;
          if (flags.find('#') != std::string::npos && c == 'o' && body.size() > 1 && body[0] == '0') body.insert(1, "o");
        }
        numeric = true;
      } else if (std::strchr("fFeEgG", c)) {
        if (!v.is_num()) fail("must be real number, not " + type_name(v), line);
        std::string f = "%";
        for (char fl : flags) if (fl != '-' && fl != '0') f += fl;
        f += "." + std::to_string(prec < 0 ? 6 : prec) + c;
        char b[512];
        std::snprintf(b, sizeof b, f.c_str(), as_float(v));
        body = b;
        numeric = true;
      } else {
        fail(std::string("unsupported format character '") + c + "'", line);
      }
      size_t len = utf8_length(body);
      if (static_cast<size_t>(width) > len) {
        size_t pad = static_cast<size_t>(width) - len;
        if (left) body.append(pad, ' ');
        else if (numeric && flags.find('0') != std::string::npos) {
          size_t at = (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
          if (body.compare(at, 2, "0x") == 0 || body.compare(at, 2, "0X") == 0 || body.compare(at, 2, "0o") == 0) at += 2;
          body.insert(at, pad, '0');
        } else body.insert(0, pad, ' ');
      }
      out += body;
    }
    if (!by_key && next < items.size()) fail("not all arguments converted during string formatting", line);
    return out;
  }

  bool contains(const Value& container, const Value& item, int line) {
    switch (container.t) {
      case T::Str:
        if (item.t != T::Str) fail("'in <string>' requires string as left operand, not " + type_name(item), line);
        return container.s.find(item.s) != std::string::npos;
      case T::List:
        for (auto& x : container.l->items)
          if (equals(x, item)) return true;
        return false;
      case T::Dict:
        if (container.ns) break;
        return container.d->find(item) != nullptr;
      case T::Undefined: return false;
      default: break;
    }
    fail("argument of type '" + type_name(container) + "' is not iterable", line);
  }

  bool cmp(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "==") return equals(a, b);
    if (op == "!=") return !equals(a, b);
    if (op == "in") return contains(b, a, line);
    if (op == "notin") return !contains(b, a, line);
    if (a.t == T::Undefined) fail(a.s, line);
    if (b.t == T::Undefined) fail(b.s, line);
    bool ok = (a.is_num() && b.is_num()) || (a.t == T::Str && b.t == T::Str) || (a.t == T::List && b.t == T::List);
    if (!ok) fail("'" + op + "' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'", line);
    int c = compare(a, b);
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  // ---- tests ----
  bool run_test(const std::string& name, const Value& v, CallArgs& a, int line) {
    auto other = [&]() -> const Value& {
      if (a.pos.empty()) fail("test '" + name + "' needs an argument", line);
      return a.pos[0];
    };
    if (name == "defined") return v.t != T::Undefined;
    if (name == "undefined") return v.t == T::Undefined;
    if (name == "none") return v.t == T::None;
    if (name == "boolean") return v.t == T::Bool;
    if (name == "true") return v.t == T::Bool && v.b;
    if (name == "false") return v.t == T::Bool && !v.b;
    if (name == "integer") return v.t == T::Int;
    if (name == "float") return v.t == T::Float;
    if (name == "number") return v.is_num();
    if (name == "string") return v.t == T::Str;
    if (name == "mapping") return v.t == T::Dict && !v.ns;
    if (name == "iterable") return v.t == T::Str || v.t == T::List || (v.t == T::Dict && !v.ns) || v.t == T::Undefined;
    if (name == "sequence") return v.t == T::Str || (v.t == T::List && !v.gen) || (v.t == T::Dict && !v.ns) || v.t == T::Undefined;
    if (name == "callable") return v.t == T::Func;
    if (name == "escaped") return false;
    if (name == "lower" || name == "upper") {
      CallArgs none;
      return v.t == T::Str && truthy(str_method(v.s, name == "lower" ? "islower" : "isupper", none, line));
    }
    if (name == "odd" || name == "even") {
      if (v.t == T::Float) {
        double m = std::fmod(v.f, 2.0);
        if (m < 0) m += 2.0;
        return name == "odd" ? m == 1.0 : m == 0.0;
      }
      if (!is_intlike(v)) fail("test '" + name + "' needs a number", line);
      return (as_int(v) % 2 != 0) == (name == "odd");
    }
    if (name == "divisibleby") {
      const Value& d = other();
      if (!is_intlike(v) || !is_intlike(d)) fail("divisibleby needs integers", line);
      if (as_int(d) == 0) fail("integer division or modulo by zero", line);
      return as_int(v) % as_int(d) == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return equals(v, other());
    if (name == "ne" || name == "!=") return !equals(v, other());
    if (name == "lt" || name == "lessthan" || name == "<") return cmp("<", v, other(), line);
    if (name == "le" || name == "<=") return cmp("<=", v, other(), line);
    if (name == "gt" || name == "greaterthan" || name == ">") return cmp(">", v, other(), line);
    if (name == "ge" || name == ">=") return cmp(">=", v, other(), line);
    if (name == "in") return contains(other(), v, line);
    if (name == "sameas") {
      const Value& o = other();
      if (v.t != o.t) return false;
      if (v.t == T::List) return v.l == o.l;
      if (v.t == T::Dict) return v.d == o.d;
      if (v.t == T::Func) return v.fn == o.fn;
      return equals(v, o) && v.t != T::Str;
    }
    if (name == "filter") return other().t == T::Str && is_filter(other().s);
    if (name == "test") return other().t == T::Str && is_test(other().s);
    fail("no test named '" + name + "'", line);
  }

  static bool is_test(const std::string& n) {
    static const char* names[] = {"defined", "undefined", "none", "boolean", "true", "false", "integer", "float",
                                  "number", "string", "mapping", "iterable", "sequence", "callable", "escaped",
                                  "lower", "upper", "odd", "even", "divisibleby", "eq", "equalto", "==", "ne",
                                  "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=",
                                  "in", "sameas", "filter", "test"};
    for (auto* x : names)
      if (n == x) return true;
    return false;
  }
  static bool is_filter(const std::string& n) {
    static const char* names[] = {"abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e",
                                  "escape", "first", "float", "forceescape", "indent", "int", "items", "join",
                                  "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
                                  "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string",
                                  "sum", "title", "tojson", "trim", "unique", "upper", "wordcount", "batch",
                                  "format", "pprint", "striptags", "truncate"};
    for (auto* x : names)
      if (n == x) return true;
    return false;
  }

  // ---- filters ----
  // jinja2's make_attrgetter: "a.b.0" looks up each part with getitem.
  Value attr_path(const Value& v, const Value& attr, int line) {
    if (attr.t != T::Str) return get_item(v, attr, line);
    Value cur = v;
    size_t pos = 0;
    const std::string& s = attr.s;
    while (true) {
      size_t dot = s.find('.', pos);
      std::string part = s.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
      bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
      Value key = digits && part.size() < 18 ? Value::integer(std::stoll(part)) : Value::str(part);
      if (cur.t == T::Undefined) return cur;
      cur = get_item(cur, key, line);
      if (dot == std::string::npos) return cur;
      pos = dot + 1;
    }
  }

  Value sort_key(const Value& v, bool case_sensitive) {
    if (!case_sensitive && v.t == T::Str) return Value::str(lower(v.s));
    return v;
  }

  Value apply_filter(const std::string& name, Value v, CallArgs& a, int line) {
    tick(line);
    auto need_str = [&]() { return v.t == T::Str ? v.s : to_str(v); };
    // soft_str() keeps a Markup a Markup, so these filters preserve it
    auto same_kind = [&](std::string s) {
      Value r = Value::str(std::move(s));
      r.safe = v.t == T::Str && v.safe;
      return r;
    };
    if (name == "safe") return v.t == T::Str ? Value::markup(v.s) : Value::markup(to_str(v));
    if (name == "string") return v.t == T::Str ? v : Value::str(to_str(v));
    if (name == "forceescape") return Value::markup(html_escape(need_str()));
    if (name == "e" || name == "escape") return v.t == T::Str && v.safe ? v : Value::markup(html_escape(need_str()));
    if (name == "trim") return same_kind(strip(need_str(), arg(a, 0, "chars"), true, true));
    if (name == "upper") return same_kind(upper(need_str()));
    if (name == "lower") return same_kind(lower(need_str()));
    if (name == "capitalize") return same_kind(capitalize(need_str()));
    if (name == "title") return same_kind(jinja_title(need_str()));
    if (name == "length" || name == "count") {
      switch (v.t) {
        case T::Str: return Value::integer(static_cast<std::int64_t>(utf8_length(v.s)));
        case T::List:
          if (v.gen) break;
          return Value::integer(static_cast<std::int64_t>(v.l->items.size()));
        case T::Dict:
          if (v.ns) break;
          return Value::integer(static_cast<std::int64_t>(v.d->items.size()));
        case T::Undefined: return Value::integer(0);
        default: break;
      }
      fail("object of type '" + type_name(v) + "' has no len()", line);
    }
    if (name == "tojson") {
      // jinja2's own tojson takes only indent (HF transformers' replacement
      // also takes ensure_ascii, separators, sort_keys; jinja2 rejects them).
      for (auto& kv : a.kw)
        if (kv.first != "indent") fail("tojson() got an unexpected keyword argument '" + kv.first + "'", line);
      if (a.pos.size() > 1) fail("tojson() takes at most 1 argument (" + std::to_string(a.pos.size()) + " given)", line);
      const Value* ind = arg(a, 0, "indent");
      int indent = -1;
      if (ind && ind->t != T::None) {
        if (!is_intlike(*ind)) fail("tojson indent must be an integer", line);
        indent = static_cast<int>(std::clamp<std::int64_t>(as_int(*ind), 0, 64));
      }
      return Value::markup(to_json(v, indent));
    }
    if (name == "replace") {
      if (a.pos.size() < 2) fail("replace filter needs 2 arguments", line);
      std::string r = replace(need_str(), to_str(a.pos[0]), to_str(a.pos[1]), int_arg(a, 2, "count", -1));
      check_size(r.size(), line);
      return Value::str(std::move(r));
    }
    if (name == "join") {
      const Value* sep = arg(a, 0, "d");
      const Value* attr = arg(a, 1, "attribute");
      std::string d = sep ? to_str(*sep) : "";
      std::string out;
      bool first = true;
      for (auto& x : iterate(v, line)) {
        if (!first) out += d;
        first = false;
        out += to_str(attr ? attr_path(x, *attr, line) : x);
        check_size(out.size(), line);
      }
      return Value::str(std::move(out));
    }
    if (name == "first" || name == "last") {
      if (v.t == T::Undefined) return Value::undefined("No first item, sequence was empty.");
      if (v.t == T::List && v.gen) {
        if (name == "last") fail("'generator' object is not reversible", line);
        if (v.l->items.empty()) return Value::undefined("No first item, sequence was empty.");
        Value x = v.l->items.front();
        v.l->items.erase(v.l->items.begin());  // next(iter(gen)) consumes one item
        return x;
      }
      List items = iterate(v, line);
      if (items.empty()) return Value::undefined(std::string("No ") + name + " item, sequence was empty.");
      return name == "first" ? items.front() : items.back();
    }
    if (name == "default" || name == "d") {
      const Value* dflt = arg(a, 0, "default_value");
      const Value* boolean = arg(a, 1, "boolean");
      bool use = v.t == T::Undefined || (boolean && truthy(*boolean) && !truthy(v));
      if (use) return dflt ? *dflt : Value::str("");
      return v;
    }
    if (name == "items") {  // jinja2 3.1: a generator of (key, value)
      if (v.t == T::Undefined) return generator({});
      if (!v.is_dict()) fail("Can only get item pairs from a mapping.", line);
      CallArgs none;
      Value r = call_method(v, "items", none, line);
      return r.t == T::List ? generator(r.l->items) : r;
    }
    if (name == "list") return Value::list(iterate(v, line));
    if (name == "reverse") {
      if (v.t == T::Str) {
        auto cps = utf8_decode(v.s);
        std::reverse(cps.begin(), cps.end());
        return Value::str(utf8_encode(cps, 0, cps.size()));
      }
      // reversed(list) is an iterator; a generator is first made a list
      bool was_gen = v.t == T::List && v.gen;
      List items = iterate(v, line);
      std::reverse(items.begin(), items.end());
      return was_gen ? Value::list(std::move(items)) : generator(std::move(items));
    }
    if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
      bool by_attr = name == "selectattr" || name == "rejectattr";
      bool want = name == "selectattr" || name == "select";
      size_t first = 0;
      Value attr;
      if (by_attr) {
        if (a.pos.empty()) fail(name + " needs an attribute name", line);
        attr = a.pos[0];
        first = 1;
      }
      std::string test;
      CallArgs targs;
      if (a.pos.size() > first) {
        if (a.pos[first].t != T::Str) fail(name + ": test name must be a string", line);
        test = a.pos[first].s;
        targs.pos.assign(a.pos.begin() + static_cast<std::ptrdiff_t>(first + 1), a.pos.end());
      }
      List out;
      if (!truthy(v)) return generator({});  // select_or_reject: "if value:"
      for (auto& x : iterate(v, line)) {
        Value probe = by_attr ? attr_path(x, attr, line) : x;
        bool r = test.empty() ? truthy(probe) : run_test(test, probe, targs, line);
        if (r == want) out.push_back(x);
      }
      return generator(std::move(out));
    }
    if (name == "map") {
      List out;
      if (!truthy(v)) return generator({});
      const Value* attr = nullptr;
      for (auto& kv : a.kw)
        if (kv.first == "attribute") attr = &kv.second;
      if (attr) {
        const Value* dflt = nullptr;
        for (auto& kv : a.kw)
          if (kv.first == "default") dflt = &kv.second;
        for (auto& x : iterate(v, line)) {
          Value r = attr_path(x, *attr, line);
          if (r.t == T::Undefined && dflt) r = *dflt;
          out.push_back(std::move(r));
        }
        return generator(std::move(out));
      }
      if (a.pos.empty() || a.pos[0].t != T::Str) fail("map needs a filter name or attribute=", line);
      std::string f = a.pos[0].s;
      CallArgs fargs;
      fargs.pos.assign(a.pos.begin() + 1, a.pos.end());
      fargs.kw = a.kw;
      for (auto& x : iterate(v, line)) {
        CallArgs copy = fargs;
        out.push_back(apply_filter(f, x, copy, line));
      }
      return generator(std::move(out));
    }
    if (name == "unique") {
      bool cs = false;
      if (const Value* c = arg(a, 0, "case_sensitive")) cs = truthy(*c);
      const Value* attr = arg(a, 1, "attribute");
      List out, seen;
      for (auto& x : iterate(v, line)) {
        Value key = sort_key(attr ? attr_path(x, *attr, line) : x, cs);
        bool dup = false;
        for (auto& s : seen)
          if (equals(s, key)) { dup = true; break; }
        if (!dup) {
          seen.push_back(std::move(key));
          out.push_back(x);
        }
      }
      return Value::list(std::move(out));
    }
    if (name == "sort") {
      bool rev = false, cs = false;
      if (const Value* r = arg(a, 0, "reverse")) rev = truthy(*r);
      if (const Value* c = arg(a, 1, "case_sensitive")) cs = truthy(*c);
      const Value* attr = arg(a, 2, "attribute");
      List items = iterate(v, line);
      std::vector<std::pair<Value, size_t>> keys;
      for (size_t k = 0; k < items.size(); ++k)
        keys.emplace_back(sort_key(attr ? attr_path(items[k], *attr, line) : items[k], cs), k);
      std::stable_sort(keys.begin(), keys.end(), [&](auto& x, auto& y) {
        int c = compare(x.first, y.first);
        return rev ? c > 0 : c < 0;
      });
      List out;
      for (auto& k : keys) out.push_back(items[k.second]);
      return Value::list(std::move(out));
    }
    if (name == "dictsort") {
      if (!v.is_dict()) fail("dictsort: value is not a dict", line);
      bool cs = false, rev = false, by_value = false;
      if (const Value* c = arg(a, 0, "case_sensitive")) cs = truthy(*c);
      if (const Value* b = arg(a, 1, "by")) {
        if (b->t != T::Str || (b->s != "key" && b->s != "value")) fail("You can only sort by either \"key\" or \"value\"", line);
        by_value = b->s == "value";
      }
      if (const Value* r = arg(a, 2, "reverse")) rev = truthy(*r);
      auto items = v.d->items;
      std::stable_sort(items.begin(), items.end(), [&](auto& x, auto& y) {
        int c = compare(sort_key(by_value ? x.second : x.first, cs), sort_key(by_value ? y.second : y.first, cs));
        return rev ? c > 0 : c < 0;
      });
      List out;
      for (auto& kv : items) out.push_back(Value::list({kv.first, kv.second}, true));
      return Value::list(std::move(out));
    }
    if (name == "indent") {
      std::string ind = "    ";
      if (const Value* w = arg(a, 0, "width")) {
        if (w->t == T::Str) ind = w->s;
        else if (is_intlike(*w)) {
          check_size(static_cast<size_t>(std::max<std::int64_t>(0, as_int(*w))), line);
          ind = std::string(static_cast<size_t>(std::max<std::int64_t>(0, as_int(*w))), ' ');
        } else fail("indent width must be int or str", line);
      }
      bool first = false, blank = false;
      if (const Value* f = arg(a, 1, "first")) first = truthy(*f);
      if (const Value* b = arg(a, 2, "blank")) blank = truthy(*b);
      std::string s = need_str() + "\n";
      // str.splitlines() on s (only \n, \r\n, \r handled)
      std::vector<std::string> lines;
      std::string cur;
      for (size_t k = 0; k < s.size(); ++k) {
        if (s[k] == '\n' || s[k] == '\r') {
          if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
          lines.push_back(cur);
          cur.clear();
        } else {
          cur += s[k];
        }
      }
      if (!cur.empty()) lines.push_back(cur);
      std::string rv;
      if (blank) {
        for (size_t k = 0; k < lines.size(); ++k) {
          if (k) rv += "\n" + ind;
          rv += lines[k];
        }
      } else if (!lines.empty()) {
        rv = lines[0];
        for (size_t k = 1; k < lines.size(); ++k) {
          rv += "\n";
          if (!lines[k].empty()) rv += ind;
          rv += lines[k];
        }
      }
      if (first) rv = ind + rv;
      check_size(rv.size(), line);
      return same_kind(std::move(rv));
    }
    if (name == "int") {
      std::int64_t dflt = 0;
      if (const Value* d = arg(a, 0, "default")) dflt = as_int(*d);
      std::int64_t base = int_arg(a, 1, "base", 10);
      if (v.t == T::Int || v.t == T::Bool) return Value::integer(as_int(v));
      if (v.t == T::Float) {
        if (!std::isfinite(v.f) || std::fabs(v.f) >= 9.2e18) return Value::integer(dflt);
        return Value::integer(static_cast<std::int64_t>(v.f));
      }
      if (v.t == T::Str) {
        std::string s = strip(v.s, nullptr, true, true);
        s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
        try {
          size_t used = 0;
          std::int64_t r = std::stoll(s, &used, static_cast<int>(base));
          if (used == s.size() && !s.empty()) return Value::integer(r);
        } catch (const std::exception&) {
        }
        try {
          size_t used = 0;
          double d = std::stod(s, &used);
          if (used == s.size() && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value::integer(static_cast<std::int64_t>(d));
        } catch (const std::exception&) {
        }
      }
      return Value::integer(dflt);
    }
    if (name == "float") {
      double dflt = 0.0;
      if (const Value* d = arg(a, 0, "default")) dflt = as_float(*d);
      if (v.is_num()) return Value::number(as_float(v));
      if (v.t == T::Str) {
        std::string s = strip(v.s, nullptr, true, true);
        try {
          size_t used = 0;
          double d = std::stod(s, &used);
          if (used == s.size() && !s.empty()) return Value::number(d);
        } catch (const std::exception&) {
        }
      }
      return Value::number(dflt);
    }
    if (name == "abs") {
      if (v.t == T::Float) return Value::number(std::fabs(v.f));
      if (is_intlike(v)) {
        if (as_int(v) == INT64_MIN) fail("integer overflow", line);
        return Value::integer(std::llabs(as_int(v)));
      }
      fail("bad operand type for abs(): '" + type_name(v) + "'", line);
    }
    if (name == "round") {
      std::int64_t prec = int_arg(a, 0, "precision", 0);
      std::string method = "common";
      if (const Value* m = arg(a, 1, "method")) method = to_str(*m);
      if (!v.is_num()) fail("round: value must be a number", line);
      double x = as_float(v), p = std::pow(10.0, static_cast<double>(std::clamp<std::int64_t>(prec, -300, 300)));
      double r;
      if (method == "common") r = std::nearbyint(x * p) / p;
      else if (method == "ceil") r = std::ceil(x * p) / p;
      else if (method == "floor") r = std::floor(x * p) / p;
      else fail("method must be 'common', 'ceil' or 'floor'", line);
      return Value::number(r);
    }
    if (name == "sum") {
      const Value* attr = arg(a, 0, "attribute");
      Value total = Value::integer(0);
      if (const Value* s = arg(a, 1, "start")) total = *s;
      for (auto& x : iterate(v, line)) total = binop("+", total, attr ? attr_path(x, *attr, line) : x, line);
      return total;
    }
    if (name == "min" || name == "max") {
      bool cs = false;
      if (const Value* c = arg(a, 0, "case_sensitive")) cs = truthy(*c);
      const Value* attr = arg(a, 1, "attribute");
      List items = iterate(v, line);
      if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
      size_t best = 0;
      for (size_t k = 1; k < items.size(); ++k) {
        int c = compare(sort_key(attr ? attr_path(items[k], *attr, line) : items[k], cs),
                        sort_key(attr ? attr_path(items[best], *attr, line) : items[best], cs));
        if (name == "min" ? c < 0 : c > 0) best = k;
      }
      return items[best];
    }
    if (name == "attr") {
      if (a.pos.empty() || a.pos[0].t != T::Str) fail("attr needs a name", line);
      return get_attr(v, a.pos[0].s, line);
    }
    if (name == "center") {
      CallArgs c;
      c.pos.push_back(Value::integer(int_arg(a, 0, "width", 80)));
      return str_method(need_str(), "center", c, line);
    }
    if (name == "wordcount") {  // len(re.findall(r"\w+", s))
      std::int64_t words = 0;
      bool in_word = false;
      for (auto c : utf8_decode(need_str())) {
        bool w = c == '_' || (c >= '0' && c <= '9') || cp_is_alpha(c);
        if (w && !in_word) ++words;
        in_word = w;
      }
      return Value::integer(words);
    }
    if (name == "format") {
      Value args = Value::list(a.pos, true);
      return Value::str(percent_format(need_str(), args, line));
    }
    if (name == "batch") {
      std::int64_t n = int_arg(a, 0, "linecount", 1);
      if (n <= 0) fail("batch size must be positive", line);
      const Value* fill = arg(a, 1, "fill_with");
      List out, cur;
      for (auto& x : iterate(v, line)) {
        cur.push_back(x);
        if (static_cast<std::int64_t>(cur.size()) == n) { out.push_back(Value::list(std::move(cur))); cur.clear(); }
      }
      if (!cur.empty()) {
        if (fill && fill->t != T::None)
          while (static_cast<std::int64_t>(cur.size()) < n) cur.push_back(*fill);
        out.push_back(Value::list(std::move(cur)));
      }
      return generator(std::move(out));
    }
    if (name == "truncate") {  // do_truncate(s, length=255, killwords=False, end='...', leeway=None -> 5)
      auto cps = utf8_decode(need_str());
      std::int64_t length = int_arg(a, 0, "length", 255);
      const Value* kw = arg(a, 1, "killwords");
      const Value* endv = arg(a, 2, "end");
      std::string end = endv ? to_str(*endv) : "...";
      std::int64_t leeway = int_arg(a, 3, "leeway", 5);
      std::int64_t end_len = static_cast<std::int64_t>(utf8_length(end));
      if (length < end_len) fail("expected length >= " + std::to_string(end_len) + ", got " + std::to_string(length), line);
      if (leeway < 0) fail("expected leeway >= 0, got " + std::to_string(leeway), line);
      if (static_cast<std::int64_t>(cps.size()) <= length + leeway) return v;
      std::string head = utf8_encode(cps, 0, static_cast<size_t>(length - end_len));
      if (!(kw && truthy(*kw))) {
        size_t sp = head.rfind(' ');
        if (sp != std::string::npos) head.resize(sp);
      }
      return Value::str(head + end);
    }
    if (name == "striptags") {  // markupsafe: drop comments and tags, collapse whitespace, unescape
      const std::string& in = need_str();
      std::string t;
      for (size_t k = 0; k < in.size();) {
        if (in.compare(k, 4, "<!--") == 0) {
          size_t e = in.find("-->", k + 4);
          if (e != std::string::npos) { k = e + 3; continue; }
        }
        if (in[k] == '<') {
          size_t e = in.find('>', k + 1);
          if (e != std::string::npos) { k = e + 1; continue; }
        }
        t += in[k++];
      }
      std::string words;
      for (auto& w : split(t, nullptr, -1, false)) {
        if (!words.empty()) words += ' ';
        words += w.s;
      }
      return Value::str(html_unescape(words));
    }
    if (name == "pprint") return Value::str(repr(v));
    fail("no filter named '" + name + "'", line);
  }
};

namespace {

std::string strftime_value(const std::string& fmt, const std::string& fixed_date) {
  std::tm tm{};
  if (!fixed_date.empty()) {
    int y = 0, m = 0, d = 0;
    if (std::sscanf(fixed_date.c_str(), "%d-%d-%d", &y, &m, &d) != 3) fail("bad strftime_now_date '" + fixed_date + "'");
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_hour = 12;
    std::time_t t = timegm(&tm);
    gmtime_r(&t, &tm);
    tm.tm_hour = 0;
  } else {
    std::time_t t = std::time(nullptr);
    localtime_r(&t, &tm);
  }
  if (fmt.empty()) return {};
  std::string buf(fmt.size() * 8 + 64, '\0');
  size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
  buf.resize(n);
  return buf;
}

void add_globals(Interp& in) {
  in.globals["range"] = Value::func("range", [](Interp&, CallArgs& a) -> Value {
    if (a.pos.empty() || a.pos.size() > 3) fail("range expected 1 to 3 arguments");
    for (auto& x : a.pos)
      if (!is_intlike(x)) fail("'" + type_name(x) + "' object cannot be interpreted as an integer");
    std::int64_t start = 0, stop, step = 1;
    if (a.pos.size() == 1) stop = as_int(a.pos[0]);
    else {
      start = as_int(a.pos[0]);
      stop = as_int(a.pos[1]);
      if (a.pos.size() == 3) step = as_int(a.pos[2]);
    }
    if (step == 0) fail("range() arg 3 must not be zero");
    long double count = step > 0 ? std::ceil((static_cast<long double>(stop) - start) / step)
                                 : std::ceil((static_cast<long double>(start) - stop) / -static_cast<long double>(step));
    if (count > kMaxRange) fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    List out;
    for (std::int64_t k = start; step > 0 ? k < stop : k > stop; k += step) out.push_back(Value::integer(k));
    return Value::list(std::move(out));
  });
  auto make_ns = [](Interp&, CallArgs& a) -> Value {
    Value ns = Value::dict();
    for (auto& p : a.pos) {
      if (!p.is_dict()) fail("namespace() positional argument must be a dict");
      for (auto& kv : p.d->items) ns.d->set(kv.first, kv.second);
    }
    for (auto& kv : a.kw) ns.d->set(Value::str(kv.first), kv.second);
    return ns;
  };
  in.globals["namespace"] = Value::func("namespace", [make_ns](Interp& i, CallArgs& a) -> Value {
    Value v = make_ns(i, a);
    v.ns = true;
    return v;
  });
  in.globals["dict"] = Value::func("dict", make_ns);
  in.globals["raise_exception"] = Value::func("raise_exception", [](Interp&, CallArgs& a) -> Value {
    std::string msg = a.pos.empty() ? std::string() : to_str(a.pos[0]);
    throw TemplateError(msg, 400);
  });
  in.globals["strftime_now"] = Value::func("strftime_now", [](Interp& i, CallArgs& a) -> Value {
    if (a.pos.empty() || a.pos[0].t != T::Str) fail("strftime_now(format) needs a format string");
    return Value::str(strftime_value(a.pos[0].s, i.opt.strftime_now_date));
  });
}

}  // namespace

std::string render_program(const Program& p, const Value& context, const ChatTemplate::Options& opt) {
  Interp in(p, opt);
  add_globals(in);
  if (context.t == T::Dict) {
    for (auto& kv : context.d->items)
      if (kv.first.t == T::Str) in.globals[kv.first.s] = kv.second;
  }
  std::string out;
  in.exec(p.body, &in.root, out);
  return out;
}

}  // namespace lmhost::jinja
