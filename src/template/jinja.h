// Internal: value model, AST and interpreter entry points of the Jinja
// subset behind ChatTemplate. Not part of the public API.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "template/chat_template.h"

namespace lmhost::jinja {

struct Value;
struct Interp;
struct CallArgs;
using List = std::vector<Value>;
struct ListObj;
struct DictObj;
struct FuncObj;

// A Python-like value. Lists, dicts and namespaces are shared references
// (as in Python); everything else is copied.
struct Value {
  enum class T : std::uint8_t { Undefined, None, Bool, Int, Float, Str, List, Dict, Func };
  T t = T::Undefined;
  bool b = false;
  bool tuple = false;      // List: a Python tuple (repr "(a, b)")
  bool ns = false;         // Dict: a namespace() object
  bool safe = false;       // Str: a markupsafe.Markup (as tojson/safe return)
  bool gen = false;        // List: a one-shot Python iterator (what map/select/... return):
                           // always true, no len(), not subscriptable, consumed by iteration
  std::int64_t i = 0;
  double f = 0;
  std::string s;           // Str: UTF-8 text; Undefined: hint for error messages
  std::shared_ptr<ListObj> l;
  std::shared_ptr<DictObj> d;
  std::shared_ptr<FuncObj> fn;

  static Value undefined(std::string hint = {}) { Value v; v.s = std::move(hint); return v; }
  static Value none() { Value v; v.t = T::None; return v; }
  static Value boolean(bool x) { Value v; v.t = T::Bool; v.b = x; return v; }
  static Value integer(std::int64_t x) { Value v; v.t = T::Int; v.i = x; return v; }
  static Value number(double x) { Value v; v.t = T::Float; v.f = x; return v; }
  static Value str(std::string x) { Value v; v.t = T::Str; v.s = std::move(x); return v; }
  static Value markup(std::string x) { Value v = str(std::move(x)); v.safe = true; return v; }
  static Value list(List items = {}, bool is_tuple = false);
  static Value dict();
  static Value func(std::string name, std::function<Value(Interp&, CallArgs&)> f);

  bool is_undef() const { return t == T::Undefined; }
  bool is_none() const { return t == T::None; }
  bool is_str() const { return t == T::Str; }
  bool is_list() const { return t == T::List; }
  bool is_dict() const { return t == T::Dict && !ns; }
  bool is_num() const { return t == T::Int || t == T::Float || t == T::Bool; }
};

struct ListObj { List items; };
struct DictObj {
  std::vector<std::pair<Value, Value>> items;  // insertion order, like Python
  const Value* find(const Value& key) const;
  const Value* find(const std::string& key) const;
  void set(const Value& key, Value v);
};
struct CallArgs {
  List pos;
  std::vector<std::pair<std::string, Value>> kw;
};
struct FuncObj {
  std::string name;
  std::function<Value(Interp&, CallArgs&)> f;
};

// ---- AST -------------------------------------------------------------------
struct Expr;
using ExprP = std::unique_ptr<Expr>;

struct Expr {
  enum class K {
    Const, Name, Attr, Item, Slice, Call, Filter, Test, Neg, Pos, Not, And, Or,
    Binary, Compare, Cond, ListLit, TupleLit, DictLit, Concat
  };
  K k;
  int line = 0;
  Value value;                       // Const
  std::string name;                  // Name / Attr / Filter / Test / Binary op
  std::vector<ExprP> args;           // operands, call args, literal items
  std::vector<std::string> kwnames;  // Call/Filter/Test: names of the trailing keyword args
  std::vector<std::string> ops;      // Compare operators
  bool negated = false;              // Test: "is not"
  ExprP star_args, star_kwargs;      // Call: f(*seq) / f(**mapping)
  explicit Expr(K kind, int ln) : k(kind), line(ln) {}
};

struct Stmt;
using StmtP = std::unique_ptr<Stmt>;
using Body = std::vector<StmtP>;

struct Stmt {
  enum class K { Text, Output, If, For, Set, SetAttr, SetBlock, Macro, Break, Continue, FilterBlock, CallBlock };
  K k;
  int line = 0;
  std::string text;                     // Text; Set/SetBlock/Macro: name; SetAttr: namespace var
  std::string attr;                     // SetAttr
  std::vector<std::string> targets;     // For / Set tuple unpacking
  ExprP expr;                           // Output / Set value / For iterable / FilterBlock filter / CallBlock call
  ExprP cond;                           // For: "if" filter
  std::vector<std::pair<ExprP, Body>> branches;  // If: (condition, body); else = cond null
  Body body, else_body;                 // For / SetBlock / Macro / CallBlock (the caller's body)
  std::vector<std::pair<std::string, ExprP>> params;  // Macro / CallBlock caller parameters and defaults
  explicit Stmt(K kind, int ln) : k(kind), line(ln) {}
};

struct Program {
  Body body;
};

std::shared_ptr<Program> parse_template(std::string_view source, const ChatTemplate::Options& opt);
std::string render_program(const Program& p, const Value& context, const ChatTemplate::Options& opt);

// ---- value helpers (jinja_value.cpp) ----------------------------------------
bool truthy(const Value& v);
std::string to_str(const Value& v);     // Python str()
std::string repr(const Value& v);       // Python repr()
std::string to_json(const Value& v, int indent);  // jinja2 |tojson (sort_keys, htmlsafe)
std::string type_name(const Value& v);  // Python type name for messages
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);  // <0, 0, >0; throws if unorderable
std::string format_float(double x);     // Python repr(float)
std::vector<std::uint32_t> utf8_decode(const std::string& s);
std::string utf8_encode(const std::vector<std::uint32_t>& cps, std::size_t from, std::size_t to);
void utf8_append(std::string& out, std::uint32_t cp);
std::size_t utf8_length(const std::string& s);

[[noreturn]] void fail(const std::string& msg, int line = 0);

}  // namespace lmhost::jinja
