// Lexer and parser of the Jinja subset. Whitespace control follows jinja2's
// lexer exactly: "{%-"/"-%}" strip all whitespace on that side, trim_blocks
// drops one newline after a block or comment tag, lstrip_blocks drops the
// spaces and tabs between a line start and a block or comment tag ("{%+"
// keeps them), and a single trailing newline of the template is dropped.
#include <cstring>

#include "template/jinja.h"

namespace lmhost::jinja {

namespace {

constexpr int kMaxNesting = 200;  // expression and block nesting (recursion bound)

struct Tok {
  enum class K { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, Str, Int, Float, Op, Eof };
  K k;
  std::string s;  // text / name / op / decoded string literal
  std::int64_t i = 0;
  double f = 0;
  size_t pos = 0;  // offset in the normalised source
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}
bool is_ident(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Python str.splitlines() + "\n".join(...): normalises every line break and
// drops one trailing newline (jinja2's keep_trailing_newline=False).
std::string normalise_newlines(std::string_view src) {
  std::string out;
  out.reserve(src.size());
  size_t n = src.size();
  for (size_t k = 0; k < n; ++k) {
    unsigned char c = static_cast<unsigned char>(src[k]);
    if (c == '\r') {
      if (k + 1 < n && src[k + 1] == '\n') ++k;
      out += '\n';
    } else if (c == '\n' || c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e) {
      out += '\n';
    } else if (c == 0xC2 && k + 1 < n && static_cast<unsigned char>(src[k + 1]) == 0x85) {
      out += '\n';
      ++k;
    } else if (c == 0xE2 && k + 2 < n && static_cast<unsigned char>(src[k + 1]) == 0x80 &&
               (static_cast<unsigned char>(src[k + 2]) == 0xA8 || static_cast<unsigned char>(src[k + 2]) == 0xA9)) {
      out += '\n';
      k += 2;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(const std::string& src, const ChatTemplate::Options& opt) : src_(src), opt_(opt) {
    line_starts_.push_back(0);
    for (size_t k = 0; k < src_.size(); ++k)
      if (src_[k] == '\n') line_starts_.push_back(k + 1);
  }

  std::pair<int, int> line_col(size_t pos) const {
    size_t lo = 0, hi = line_starts_.size();
    while (hi - lo > 1) {
      size_t mid = (lo + hi) / 2;
      if (line_starts_[mid] <= pos) lo = mid; else hi = mid;
    }
    return {static_cast<int>(lo + 1), static_cast<int>(pos - line_starts_[lo] + 1)};
  }

  [[noreturn]] void error(size_t pos, const std::string& msg) const {
    auto [l, c] = line_col(pos);
    throw TemplateError("template syntax error at line " + std::to_string(l) + ", column " + std::to_string(c) +
                            ": " + msg,
                        500, l);
  }

  std::vector<Tok> run() {
    std::vector<Tok> toks;
    size_t pos = 0, n = src_.size();
    bool line_starting = true;
    while (pos < n) {
      size_t start = pos;
      while (true) {
        start = src_.find('{', start);
        if (start == std::string::npos || start + 1 >= n) { start = std::string::npos; break; }
        char c = src_[start + 1];
        if (c == '{' || c == '%' || c == '#') break;
        ++start;
      }
      if (start == std::string::npos) {
        push_text(toks, src_.substr(pos), pos);
        break;
      }
      char kind = src_[start + 1];
      char sign = (start + 2 < n && (src_[start + 2] == '-' || src_[start + 2] == '+')) ? src_[start + 2] : 0;
      std::string text = src_.substr(pos, start - pos);
      if (sign == '-') {
        size_t e = text.size();
        while (e > 0 && is_space(text[e - 1])) --e;
        text.resize(e);
      } else if (sign != '+' && opt_.lstrip_blocks && kind != '{') {
        size_t nl = text.rfind('\n');
        size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if (l_pos > 0 || line_starting) {
          bool ws = l_pos < text.size();
          for (size_t k = l_pos; k < text.size(); ++k)
            if (!is_space(text[k])) { ws = false; break; }
          if (ws) text.resize(l_pos);
        }
      }
      push_text(toks, std::move(text), pos);
      size_t p = start + 2 + (sign ? 1 : 0);
      char endsign = 0;
      bool raw_done = false;
      if (kind == '#') {
        size_t e = src_.find("#}", p);
        if (e == std::string::npos) error(start, "missing end of comment tag");
        if (e > p && (src_[e - 1] == '-' || src_[e - 1] == '+')) endsign = src_[e - 1];
        p = e + 2;
      } else {
        bool block = kind == '%';
        toks.push_back(Tok{block ? Tok::K::BlockBegin : Tok::K::VarBegin, {}, 0, 0, start});
        p = lex_tag(toks, p, block, endsign, start);
        size_t nt = toks.size();
        if (block && nt >= 3 && toks[nt - 2].k == Tok::K::Name && toks[nt - 2].s == "raw" &&
            toks[nt - 3].k == Tok::K::BlockBegin) {
          toks.resize(nt - 3);
          p = lex_raw(toks, p, endsign, start);
          raw_done = true;
        }
      }
      if (raw_done) {
        // lex_raw handled the whitespace after endraw
      } else if (endsign == '-') {
        while (p < n && is_space(src_[p])) ++p;
      } else if (endsign != '+' && kind != '{' && opt_.trim_blocks && p < n && src_[p] == '\n') {
        ++p;
      }
      line_starting = p > 0 && src_[p - 1] == '\n';
      pos = p;
    }
    toks.push_back(Tok{Tok::K::Eof, {}, 0, 0, n});
    return toks;
  }

 private:
  void push_text(std::vector<Tok>& toks, std::string text, size_t pos) {
    if (!text.empty()) toks.push_back(Tok{Tok::K::Text, std::move(text), 0, 0, pos});
  }

  // {% raw %}...{% endraw %}: the body is literal text. jinja2 applies no
  // trim_blocks after "raw %}"; the endraw tag strips like any block tag.
  size_t lex_raw(std::vector<Tok>& toks, size_t p, char begin_sign, size_t tag_start) {
    size_t n = src_.size();
    if (begin_sign == '-')
      while (p < n && is_space(src_[p])) ++p;
    size_t search = p;
    while (true) {
      size_t b = src_.find("{%", search);
      if (b == std::string::npos) error(tag_start, "missing end of raw directive");
      size_t q = b + 2;
      char sign = 0;
      if (q < n && (src_[q] == '-' || src_[q] == '+')) sign = src_[q++];
      while (q < n && is_space(src_[q])) ++q;
      if (src_.compare(q, 6, "endraw") != 0) { search = b + 2; continue; }
      q += 6;
      while (q < n && is_space(src_[q])) ++q;
      char esign = 0;
      if (q < n && (src_[q] == '-' || src_[q] == '+')) esign = src_[q++];
      if (src_.compare(q, 2, "%}") != 0) { search = b + 2; continue; }
      q += 2;
      std::string text = src_.substr(p, b - p);
      if (sign == '-') {
        size_t e = text.size();
        while (e > 0 && is_space(text[e - 1])) --e;
        text.resize(e);
      } else if (sign != '+' && opt_.lstrip_blocks) {
        size_t nl = text.rfind('\n');
        size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        bool ws = l_pos < text.size() && l_pos > 0;
        for (size_t k = l_pos; ws && k < text.size(); ++k) ws = is_space(text[k]);
        if (ws) text.resize(l_pos);
      }
      push_text(toks, std::move(text), p);
      if (esign == '-') {
        while (q < n && is_space(src_[q])) ++q;
      } else if (esign != '+' && opt_.trim_blocks && q < n && src_[q] == '\n') {
        ++q;
      }
      return q;
    }
  }

  // Lexes the inside of {{ }} / {% %} starting at p; returns the offset after the end tag.
  size_t lex_tag(std::vector<Tok>& toks, size_t p, bool block, char& endsign, size_t tag_start) {
    size_t n = src_.size();
    const char* close = block ? "%}" : "}}";
    int depth = 0;  // brackets: "}}" inside a dict literal does not close the tag
    while (true) {
      while (p < n && is_space(src_[p])) ++p;
      if (p >= n) error(tag_start, block ? "unexpected end of template: missing '%}'" : "unexpected end of template: missing '}}'");
      if (depth == 0) {
        if ((src_[p] == '-' || src_[p] == '+') && src_.compare(p + 1, 2, close) == 0 && (block || src_[p] == '-')) {
          endsign = src_[p];
          toks.push_back(Tok{block ? Tok::K::BlockEnd : Tok::K::VarEnd, {}, 0, 0, p});
          return p + 3;
        }
        if (src_.compare(p, 2, close) == 0) {
          toks.push_back(Tok{block ? Tok::K::BlockEnd : Tok::K::VarEnd, {}, 0, 0, p});
          return p + 2;
        }
      }
      char c = src_[p];
      size_t s = p;
      if (is_ident_start(c)) {
        while (p < n && is_ident(src_[p])) ++p;
        toks.push_back(Tok{Tok::K::Name, src_.substr(s, p - s), 0, 0, s});
      } else if (is_digit(c)) {
        p = lex_number(toks, p);
      } else if (c == '\'' || c == '"') {
        p = lex_string(toks, p);
      } else {
        static const char* ops2[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* o : ops2)
          if (src_.compare(p, 2, o) == 0) { op = o; break; }
        if (op.empty()) {
          if (!std::strchr("+-*/%~<>=.,:|()[]{}", c)) error(p, std::string("unexpected character '") + c + "'");
          op = std::string(1, c);
          if (c == '(' || c == '[' || c == '{') ++depth;
          if (c == ')' || c == ']' || c == '}') {
            if (depth == 0) error(p, std::string("unexpected '") + c + "'");
            --depth;
          }
        }
        p += op.size();
        toks.push_back(Tok{Tok::K::Op, op, 0, 0, s});
      }
    }
  }

  size_t lex_number(std::vector<Tok>& toks, size_t p) {
    size_t n = src_.size(), s = p;
    std::string digits;
    auto take_digits = [&] {
      while (p < n && (is_digit(src_[p]) || (src_[p] == '_' && p + 1 < n && is_digit(src_[p + 1])))) {
        if (src_[p] != '_') digits += src_[p];
        ++p;
      }
    };
    take_digits();
    bool is_float = false;
    if (p + 1 < n && src_[p] == '.' && is_digit(src_[p + 1])) {
      is_float = true;
      digits += '.';
      ++p;
      take_digits();
    }
    if (p < n && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < n && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < n && is_digit(src_[q])) {
        is_float = true;
        digits += 'e';
        digits.append(src_, p + 1, q - p - 1);
        p = q;
        take_digits();
      }
    }
    Tok t{is_float ? Tok::K::Float : Tok::K::Int, src_.substr(s, p - s), 0, 0, s};
    try {
      if (is_float) t.f = std::stod(digits);
      else t.i = std::stoll(digits);
    } catch (const std::exception&) {
      error(s, "number literal out of range");
    }
    toks.push_back(std::move(t));
    return p;
  }

  size_t lex_string(std::vector<Tok>& toks, size_t p) {
    size_t n = src_.size(), s = p;
    char q = src_[p++];
    std::string out;
    while (true) {
      if (p >= n) error(s, "unterminated string literal");
      char c = src_[p];
      if (c == q) { ++p; break; }
      if (c != '\\') { out += c; ++p; continue; }
      if (p + 1 >= n) error(s, "unterminated string literal");
      char e = src_[p + 1];
      p += 2;
      auto hex = [&](int len) -> std::uint32_t {
        if (p + static_cast<size_t>(len) > n) error(s, "truncated \\x/\\u escape in string literal");
        std::uint32_t v = 0;
        for (int k = 0; k < len; ++k) {
          char h = src_[p + static_cast<size_t>(k)];
          int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
          if (d < 0) error(s, "invalid \\x/\\u escape in string literal");
          v = v * 16 + static_cast<std::uint32_t>(d);
        }
        p += static_cast<size_t>(len);
        return v;
      };
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case 'a': out += '\a'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': break;  // line continuation
        case 'x': utf8_append(out, hex(2)); break;
        case 'u': utf8_append(out, hex(4)); break;
        case 'U': {
          std::uint32_t v = hex(8);
          if (v > 0x10FFFF) error(s, "invalid \\U escape in string literal");
          utf8_append(out, v);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            std::uint32_t v = static_cast<std::uint32_t>(e - '0');
            for (int k = 0; k < 2 && p < n && src_[p] >= '0' && src_[p] <= '7'; ++k) v = v * 8 + static_cast<std::uint32_t>(src_[p++] - '0');
            utf8_append(out, v);
          } else {
            out += '\\';  // unknown escapes stay as written (Python)
            out += e;
          }
      }
    }
    toks.push_back(Tok{Tok::K::Str, std::move(out), 0, 0, s});
    return p;
  }

  const std::string& src_;
  const ChatTemplate::Options& opt_;
  std::vector<size_t> line_starts_;
};

// ---------------------------------------------------------------------------
class Parser {
 public:
  Parser(std::vector<Tok> toks, const Lexer& lx) : t_(std::move(toks)), lx_(lx) {}

  Body parse_all() {
    std::string end;
    Body b = parse_body({}, end);
    return b;
  }

 private:
  const Tok& cur() const { return t_[p_]; }
  const Tok& peek(size_t k = 1) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  Tok next() { Tok t = t_[p_]; if (p_ + 1 < t_.size()) ++p_; return t; }
  int line() const { return lx_.line_col(cur().pos).first; }

  [[noreturn]] void error(const std::string& msg) const { lx_.error(cur().pos, msg); }
  std::string describe(const Tok& t) const {
    switch (t.k) {
      case Tok::K::Eof: return "end of template";
      case Tok::K::BlockEnd: return "end of statement block";
      case Tok::K::VarEnd: return "end of print statement";
      case Tok::K::Str: return "string";
      case Tok::K::Int: case Tok::K::Float: return "number";
      default: return "'" + t.s + "'";
    }
  }
  bool is_op(const char* op) const { return cur().k == Tok::K::Op && cur().s == op; }
  bool is_name(const char* nm) const { return cur().k == Tok::K::Name && cur().s == nm; }
  void expect_op(const char* op) {
    if (!is_op(op)) error(std::string("expected '") + op + "', got " + describe(cur()));
    next();
  }
  void expect_block_end() {
    if (cur().k != Tok::K::BlockEnd) error("expected end of statement block, got " + describe(cur()));
    next();
  }
  std::string expect_name() {
    if (cur().k != Tok::K::Name) error("expected a name, got " + describe(cur()));
    return next().s;
  }

  struct DepthGuard {
    int& d;
    DepthGuard(int& depth, const Parser& p) : d(depth) {
      if (++d > kMaxNesting) p.error("template nested too deeply");
    }
    ~DepthGuard() { --d; }
  };

  // Parses statements until a block tag whose name is in `ends`; leaves the
  // parser on that name token and stores it in `found`.
  Body parse_body(const std::vector<const char*>& ends, std::string& found) {
    DepthGuard g(depth_, *this);
    Body body;
    while (true) {
      const Tok& t = cur();
      if (t.k == Tok::K::Eof) {
        if (!ends.empty()) {
          std::string want;
          for (auto* e : ends) want += (want.empty() ? "'" : " or '") + std::string(e) + "'";
          error("unexpected end of template, expected " + want);
        }
        found.clear();
        return body;
      }
      if (t.k == Tok::K::Text) {
        auto s = std::make_unique<Stmt>(Stmt::K::Text, line());
        s->text = t.s;
        next();
        body.push_back(std::move(s));
      } else if (t.k == Tok::K::VarBegin) {
        next();
        auto s = std::make_unique<Stmt>(Stmt::K::Output, line());
        s->expr = parse_tuple(true);
        if (cur().k != Tok::K::VarEnd) error("expected end of print statement, got " + describe(cur()));
        next();
        body.push_back(std::move(s));
      } else if (t.k == Tok::K::BlockBegin) {
        next();
        if (cur().k != Tok::K::Name) error("tag name expected");
        for (auto* e : ends)
          if (cur().s == e) { found = e; return body; }
        body.push_back(parse_statement());
      } else {
        error("unexpected " + describe(t));
      }
    }
  }

  StmtP parse_statement() {
    int ln = line();
    std::string tag = next().s;
    if (tag == "if") {
      auto s = std::make_unique<Stmt>(Stmt::K::If, ln);
      ExprP cond = parse_tuple(false);
      expect_block_end();
      while (true) {
        std::string found;
        Body b = parse_body({"elif", "else", "endif"}, found);
        s->branches.emplace_back(std::move(cond), std::move(b));
        next();
        if (found == "elif") {
          cond = parse_tuple(false);
          expect_block_end();
        } else if (found == "else") {
          expect_block_end();
          std::string f2;
          Body eb = parse_body({"endif"}, f2);
          next();
          expect_block_end();
          s->branches.emplace_back(nullptr, std::move(eb));
          break;
        } else {
          expect_block_end();
          break;
        }
      }
      return s;
    }
    if (tag == "for") {
      auto s = std::make_unique<Stmt>(Stmt::K::For, ln);
      s->targets = parse_targets();
      if (!is_name("in")) error("expected 'in', got " + describe(cur()));
      next();
      s->expr = parse_tuple(false, true);
      if (is_name("if")) {
        next();
        s->cond = parse_expression(true);
      }
      if (is_name("recursive")) error("recursive for loops are not supported");
      expect_block_end();
      ++loop_depth_;
      std::string found;
      s->body = parse_body({"else", "endfor"}, found);
      --loop_depth_;
      next();
      expect_block_end();
      if (found == "else") {
        std::string f2;
        s->else_body = parse_body({"endfor"}, f2);
        next();
        expect_block_end();
      }
      return s;
    }
    if (tag == "set") {
      if (cur().k == Tok::K::Name && peek().k == Tok::K::Op && peek().s == "." && peek(2).k == Tok::K::Name) {
        auto s = std::make_unique<Stmt>(Stmt::K::SetAttr, ln);
        s->text = next().s;
        next();
        s->attr = next().s;
        expect_op("=");
        s->expr = parse_tuple(true);
        expect_block_end();
        return s;
      }
      std::vector<std::string> targets = parse_targets();
      if (is_op("=")) {
        next();
        auto s = std::make_unique<Stmt>(Stmt::K::Set, ln);
        s->targets = std::move(targets);
        s->expr = parse_tuple(true);
        expect_block_end();
        return s;
      }
      if (targets.size() != 1) error("expected '='");
      auto s = std::make_unique<Stmt>(Stmt::K::SetBlock, ln);
      s->text = targets[0];
      if (is_op("|")) s->expr = parse_filter_chain(std::make_unique<Expr>(Expr::K::Const, ln));
      expect_block_end();
      std::string found;
      s->body = parse_body({"endset"}, found);
      next();
      expect_block_end();
      return s;
    }
    if (tag == "macro") {
      auto s = std::make_unique<Stmt>(Stmt::K::Macro, ln);
      s->text = expect_name();
      parse_params(*s);
      expect_block_end();
      int saved = loop_depth_;
      loop_depth_ = 0;
      std::string found;
      s->body = parse_body({"endmacro"}, found);
      loop_depth_ = saved;
      next();
      if (cur().k == Tok::K::Name) next();  // {% endmacro name %}
      expect_block_end();
      return s;
    }
    if (tag == "call") {  // {% call(params) macro(args) %}caller body{% endcall %}
      auto s = std::make_unique<Stmt>(Stmt::K::CallBlock, ln);
      if (is_op("(")) parse_params(*s);
      s->expr = parse_expression(true);
      if (s->expr->k != Expr::K::Call) error("expected call");
      expect_block_end();
      int saved = loop_depth_;
      loop_depth_ = 0;
      std::string found;
      s->body = parse_body({"endcall"}, found);
      loop_depth_ = saved;
      next();
      expect_block_end();
      return s;
    }
    if (tag == "generation") {
      // HF transformers' {% generation %}...{% endgeneration %} marks the
      // assistant's tokens for training masks; for rendering it is its body.
      auto s = std::make_unique<Stmt>(Stmt::K::If, ln);
      expect_block_end();
      std::string found;
      Body b = parse_body({"endgeneration"}, found);
      next();
      expect_block_end();
      s->branches.emplace_back(nullptr, std::move(b));
      return s;
    }
    if (tag == "filter") {
      auto s = std::make_unique<Stmt>(Stmt::K::FilterBlock, ln);
      --p_;  // let parse_filter_chain see the filter name as if after a pipe
      t_[p_].k = Tok::K::Op;
      t_[p_].s = "|";
      s->expr = parse_filter_chain(std::make_unique<Expr>(Expr::K::Const, ln));
      expect_block_end();
      std::string found;
      s->body = parse_body({"endfilter"}, found);
      next();
      expect_block_end();
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error("'" + tag + "' outside of a loop");
      auto s = std::make_unique<Stmt>(tag == "break" ? Stmt::K::Break : Stmt::K::Continue, ln);
      expect_block_end();
      return s;
    }
    --p_;
    error("encountered unknown tag '" + tag + "'");
  }

  // "(a, b=default, ...)" of a macro or of a call block's caller.
  void parse_params(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      std::string pn = expect_name();
      ExprP def;
      if (is_op("=")) {
        next();
        def = parse_expression(true);
      } else if (!s.params.empty() && s.params.back().second) {
        error("non-default argument follows default argument");
      }
      s.params.emplace_back(pn, std::move(def));
      if (!is_op(")")) expect_op(",");
    }
    next();
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    bool paren = is_op("(");
    if (paren) next();
    while (true) {
      names.push_back(expect_name());
      if (!is_op(",")) break;
      next();
      if (cur().k != Tok::K::Name) break;
    }
    if (paren) expect_op(")");
    return names;
  }

  // ---- expressions ----
  ExprP make(Expr::K k) { return std::make_unique<Expr>(k, line()); }

  // expression, optionally "a, b" forming a tuple (as jinja2's parse_tuple)
  ExprP parse_tuple(bool with_condexpr, bool stop_at_if = false) {
    ExprP first = parse_expression(with_condexpr);
    if (!is_op(",")) return first;
    auto t = make(Expr::K::TupleLit);
    t->args.push_back(std::move(first));
    while (is_op(",")) {
      next();
      if (cur().k == Tok::K::BlockEnd || cur().k == Tok::K::VarEnd || is_op(")") || (stop_at_if && is_name("if"))) break;
      t->args.push_back(parse_expression(with_condexpr));
    }
    return t;
  }

  ExprP parse_expression(bool with_condexpr) {
    DepthGuard g(depth_, *this);
    ExprP e = parse_or();
    if (!with_condexpr) return e;
    while (is_name("if")) {
      next();
      auto c = make(Expr::K::Cond);
      ExprP test = parse_or();
      ExprP other;
      if (is_name("else")) {
        next();
        other = parse_expression(true);
      }
      c->args.push_back(std::move(test));
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(other));  // may be null: undefined
      e = std::move(c);
    }
    return e;
  }

  ExprP binary(Expr::K k, ExprP a, ExprP b, const std::string& op = {}) {
    auto e = make(k);
    e->name = op;
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprP parse_or() {
    ExprP e = parse_and();
    while (is_name("or")) { next(); e = binary(Expr::K::Or, std::move(e), parse_and()); }
    return e;
  }
  ExprP parse_and() {
    ExprP e = parse_not();
    while (is_name("and")) { next(); e = binary(Expr::K::And, std::move(e), parse_not()); }
    return e;
  }
  ExprP parse_not() {
    if (is_name("not")) {
      DepthGuard g(depth_, *this);
      next();
      auto e = make(Expr::K::Not);
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprP parse_compare() {
    ExprP first = parse_math1();
    ExprP cmp;
    while (true) {
      std::string op;
      if (cur().k == Tok::K::Op && (cur().s == "==" || cur().s == "!=" || cur().s == "<" || cur().s == ">" ||
                                    cur().s == "<=" || cur().s == ">=")) {
        op = next().s;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && peek().k == Tok::K::Name && peek().s == "in") {
        next();
        next();
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::K::Compare);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }
  ExprP parse_math1() {
    ExprP e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = next().s;
      e = binary(Expr::K::Binary, std::move(e), parse_concat(), op);
    }
    return e;
  }
  ExprP parse_concat() {
    ExprP e = parse_math2();
    if (!is_op("~")) return e;
    auto c = make(Expr::K::Concat);
    c->args.push_back(std::move(e));
    while (is_op("~")) {
      next();
      c->args.push_back(parse_math2());
    }
    return c;
  }
  ExprP parse_math2() {
    ExprP e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = next().s;
      e = binary(Expr::K::Binary, std::move(e), parse_pow(), op);
    }
    return e;
  }
  ExprP parse_pow() {
    ExprP e = parse_unary(true);
    while (is_op("**")) {
      next();
      e = binary(Expr::K::Binary, std::move(e), parse_unary(true), "**");
    }
    return e;
  }
  ExprP parse_unary(bool with_filter) {
    DepthGuard g(depth_, *this);
    ExprP node;
    if (is_op("-") || is_op("+")) {
      bool neg = next().s == "-";
      node = make(neg ? Expr::K::Neg : Expr::K::Pos);
      node->args.push_back(parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprP parse_primary() {
    const Tok& t = cur();
    if (t.k == Tok::K::Name) {
      std::string nm = next().s;
      auto e = make(Expr::K::Const);
      if (nm == "true" || nm == "True") e->value = Value::boolean(true);
      else if (nm == "false" || nm == "False") e->value = Value::boolean(false);
      else if (nm == "none" || nm == "None") e->value = Value::none();
      else {
        e->k = Expr::K::Name;
        e->name = nm;
      }
      return e;
    }
    if (t.k == Tok::K::Str) {
      std::string s = next().s;
      while (cur().k == Tok::K::Str) s += next().s;  // adjacent literals concatenate
      auto e = make(Expr::K::Const);
      e->value = Value::str(std::move(s));
      return e;
    }
    if (t.k == Tok::K::Int || t.k == Tok::K::Float) {
      Tok n = next();
      auto e = make(Expr::K::Const);
      e->value = n.k == Tok::K::Int ? Value::integer(n.i) : Value::number(n.f);
      return e;
    }
    if (is_op("(")) {
      next();
      if (is_op(")")) {
        next();
        return make(Expr::K::TupleLit);
      }
      ExprP first = parse_expression(true);
      if (is_op(")")) {
        next();
        return first;
      }
      auto tl = make(Expr::K::TupleLit);
      tl->args.push_back(std::move(first));
      while (is_op(",")) {
        next();
        if (is_op(")")) break;
        tl->args.push_back(parse_expression(true));
      }
      expect_op(")");
      return tl;
    }
    if (is_op("[")) {
      next();
      auto l = make(Expr::K::ListLit);
      while (!is_op("]")) {
        l->args.push_back(parse_expression(true));
        if (!is_op("]")) expect_op(",");
      }
      next();
      return l;
    }
    if (is_op("{")) {
      next();
      auto d = make(Expr::K::DictLit);
      while (!is_op("}")) {
        d->args.push_back(parse_expression(true));
        expect_op(":");
        d->args.push_back(parse_expression(true));
        if (!is_op("}")) expect_op(",");
      }
      next();
      return d;
    }
    error("unexpected " + describe(t));
  }

  ExprP parse_postfix(ExprP node) {
    while (true) {
      if (is_op(".")) {
        next();
        auto e = make(Expr::K::Attr);
        if (cur().k == Tok::K::Name) {
          e->name = next().s;
        } else if (cur().k == Tok::K::Int) {
          e->k = Expr::K::Item;
          auto c = make(Expr::K::Const);
          c->value = Value::integer(next().i);
          e->args.push_back(std::move(node));
          e->args.push_back(std::move(c));
          node = std::move(e);
          continue;
        } else {
          error("expected attribute name after '.', got " + describe(cur()));
        }
        e->args.push_back(std::move(node));
        node = std::move(e);
      } else if (is_op("[")) {
        next();
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprP parse_subscript(ExprP obj) {
    // [expr] or [a:b:c] with optional parts
    ExprP parts[3];
    bool slice = false;
    int idx = 0;
    while (true) {
      if (is_op("]")) break;
      if (is_op(":")) {
        slice = true;
        if (++idx > 2) error("invalid slice");
        next();
        continue;
      }
      if (parts[idx]) error("expected ']' or ':', got " + describe(cur()));
      parts[idx] = parse_expression(true);
      if (!slice && is_op(",")) error("tuple subscripts are not supported");
    }
    next();
    if (!slice) {
      if (!parts[0]) error("empty subscript");
      auto e = make(Expr::K::Item);
      e->args.push_back(std::move(obj));
      e->args.push_back(std::move(parts[0]));
      return e;
    }
    auto e = make(Expr::K::Slice);
    e->args.push_back(std::move(obj));
    for (auto& p : parts) e->args.push_back(std::move(p));  // nulls allowed
    return e;
  }

  // Parses "(args)" into e->args (positional first, then keyword values) and e->kwnames.
  void parse_args(Expr& e) {
    expect_op("(");
    std::vector<ExprP> kwvals;
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) {
        bool two = is_op("**");
        next();
        ExprP& slot = two ? e.star_kwargs : e.star_args;
        if (slot) error(two ? "repeated **kwargs" : "repeated *args");
        slot = parse_expression(true);
      } else if (e.star_kwargs) {
        error("argument follows **kwargs");
      } else if (cur().k == Tok::K::Name && peek().k == Tok::K::Op && peek().s == "=") {
        e.kwnames.push_back(next().s);
        next();
        kwvals.push_back(parse_expression(true));
      } else {
        if (!kwvals.empty()) error("positional argument follows keyword argument");
        if (e.star_args) error("positional argument follows *args");
        e.args.push_back(parse_expression(true));
      }
      if (!is_op(")")) expect_op(",");
    }
    next();
    for (auto& v : kwvals) e.args.push_back(std::move(v));
  }

  ExprP parse_call(ExprP fn) {
    auto e = make(Expr::K::Call);
    e->args.push_back(std::move(fn));
    parse_args(*e);
    return e;
  }

  ExprP parse_filter_chain(ExprP node) {
    while (is_op("|")) {
      next();
      auto e = make(Expr::K::Filter);
      e->name = expect_name();
      while (is_op(".")) {  // dotted filter names
        next();
        e->name += "." + expect_name();
      }
      e->args.push_back(std::move(node));
      if (is_op("(")) parse_args(*e);
      node = std::move(e);
    }
    return node;
  }

  ExprP parse_filter_expr(ExprP node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filter_chain(std::move(node));
      } else if (is_name("is")) {
        next();
        auto e = make(Expr::K::Test);
        if (is_name("not")) {
          next();
          e->negated = true;
        }
        e->name = expect_name();
        e->args.push_back(std::move(node));
        if (is_op("(")) {
          parse_args(*e);
        } else if ((cur().k == Tok::K::Name || cur().k == Tok::K::Str || cur().k == Tok::K::Int ||
                    cur().k == Tok::K::Float || is_op("(") || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) error("you cannot chain multiple tests with is");
          DepthGuard g(depth_, *this);
          e->args.push_back(parse_postfix(parse_primary()));
        }
        node = std::move(e);
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  std::vector<Tok> t_;
  const Lexer& lx_;
  size_t p_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

std::shared_ptr<Program> parse_template(std::string_view source, const ChatTemplate::Options& opt) {
  std::string src = normalise_newlines(source);
  Lexer lx(src, opt);
  Parser ps(lx.run(), lx);
  auto prog = std::make_shared<Program>();
  prog->body = ps.parse_all();
  return prog;
}

}  // namespace lmhost::jinja
