#include "engine/json_constraint.h"

namespace lmhost {

JsonConstraint::JsonConstraint(bool object_only, int max_ws_run) : object_only_(object_only), max_ws_(max_ws_run) {}

bool JsonConstraint::accepts(std::string_view bytes) const {
  if (mode_ == Mode::Dead) return false;
  JsonConstraint c = *this;
  for (char ch : bytes)
    if (!c.step(static_cast<unsigned char>(ch))) return false;
  return true;
}

void JsonConstraint::advance(std::string_view bytes) {
  if (mode_ == Mode::Dead) return;
  for (char ch : bytes) {
    if (!step(static_cast<unsigned char>(ch))) {
      mode_ = Mode::Dead;
      return;
    }
  }
}

int JsonConstraint::close_cost() const {
  const int closers = static_cast<int>(stack_.size());
  switch (mode_) {
    case Mode::Dead: return 1 << 30;
    case Mode::Done: return 0;
    case Mode::ValueStart:
      if (stack_.empty()) return object_only_ ? 2 : 1;  // "{}" / "0"
      return 1 + closers;                                // "0"
    case Mode::ArrFirstOrEnd:
    case Mode::ObjKeyOrEnd:
    case Mode::AfterValue:
      return closers;
    case Mode::ObjKey: return 4 + closers;  // "":0
    case Mode::Colon: return 2 + closers;   // :0
    case Mode::Str: return utf8_left_ + (str_is_key_ ? 3 : 1) + closers;
    case Mode::StrEsc: return 1 + (str_is_key_ ? 3 : 1) + closers;
    case Mode::StrHex: return hex_left_ + (str_is_key_ ? 3 : 1) + closers;
    case Mode::NumMinus:
    case Mode::NumFracStart:
    case Mode::NumExpStart:
    case Mode::NumExpSign:
      return 1 + closers;
    case Mode::NumZero:
    case Mode::NumInt:
    case Mode::NumFrac:
    case Mode::NumExp:
      return closers;
    case Mode::Literal: {
      int n = 0;
      for (const char* p = lit_; *p; ++p) ++n;
      return n + closers;
    }
  }
  return 1 << 30;
}

int JsonConstraint::close_cost_after(std::string_view bytes) const {
  if (mode_ == Mode::Dead) return -1;
  JsonConstraint c = *this;
  for (char ch : bytes)
    if (!c.step(static_cast<unsigned char>(ch))) return -1;
  return c.close_cost();
}

bool JsonConstraint::ws(unsigned char c) {
  if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
  return ++ws_run_ <= max_ws_;
}

void JsonConstraint::after_value() { mode_ = stack_.empty() ? Mode::Done : Mode::AfterValue; }

bool JsonConstraint::value_start(unsigned char c) {
  const bool top = stack_.empty();
  if (top && object_only_ && c != '{') return false;
  switch (c) {
    case '{': stack_.push_back('o'); mode_ = Mode::ObjKeyOrEnd; return true;
    case '[': stack_.push_back('a'); mode_ = Mode::ArrFirstOrEnd; return true;
    case '"': mode_ = Mode::Str; str_is_key_ = false; utf8_left_ = 0; return true;
    case '-': mode_ = Mode::NumMinus; return true;
    case '0': mode_ = Mode::NumZero; return true;
    case 't': mode_ = Mode::Literal; lit_ = "rue"; return true;
    case 'f': mode_ = Mode::Literal; lit_ = "alse"; return true;
    case 'n': mode_ = Mode::Literal; lit_ = "ull"; return true;
    default:
      if (c >= '1' && c <= '9') { mode_ = Mode::NumInt; return true; }
      return false;
  }
}

bool JsonConstraint::step(unsigned char c) {
  const bool is_ws = c == ' ' || c == '\t' || c == '\n' || c == '\r';
  if (!is_ws && mode_ != Mode::Str) ws_run_ = 0;
  auto digit = [c] { return c >= '0' && c <= '9'; };
  // A number ends at the first byte that cannot continue it.
  auto end_number = [&](bool terminal) -> bool {
    if (!terminal || stack_.empty()) return false;  // top-level numbers never complete (no lookahead)
    mode_ = Mode::AfterValue;
    return step(c);
  };
  switch (mode_) {
    case Mode::Dead:
    case Mode::Done:
      return false;
    case Mode::ValueStart:
      if (is_ws) return ws(c);
      return value_start(c);
    case Mode::ArrFirstOrEnd:
      if (is_ws) return ws(c);
      if (c == ']') { stack_.pop_back(); after_value(); return true; }
      return value_start(c);
    case Mode::ObjKeyOrEnd:
      if (is_ws) return ws(c);
      if (c == '}') { stack_.pop_back(); after_value(); return true; }
      [[fallthrough]];
    case Mode::ObjKey:
      if (is_ws) return ws(c);
      if (c != '"') return false;
      mode_ = Mode::Str; str_is_key_ = true; utf8_left_ = 0;
      return true;
    case Mode::Colon:
      if (is_ws) return ws(c);
      if (c != ':') return false;
      mode_ = Mode::ValueStart;
      return true;
    case Mode::AfterValue: {
      if (is_ws) return ws(c);
      const char top = stack_.back();
      if (c == ',') { mode_ = top == 'o' ? Mode::ObjKey : Mode::ValueStart; return true; }
      if ((c == '}' && top == 'o') || (c == ']' && top == 'a')) { stack_.pop_back(); after_value(); return true; }
      return false;
    }
    case Mode::Str:
      if (utf8_left_ > 0) {
        if (c < utf8_lo_ || c > utf8_hi_) return false;
        --utf8_left_; utf8_lo_ = 0x80; utf8_hi_ = 0xBF;
        return true;
      }
      if (c == '"') {
        if (str_is_key_) mode_ = Mode::Colon;
        else after_value();
        return true;
      }
      if (c == '\\') { mode_ = Mode::StrEsc; return true; }
      if (c < 0x20) return false;
      if (c < 0x80) return true;
      // UTF-8 lead byte (strict: no overlongs, no surrogates, <= U+10FFFF).
      utf8_lo_ = 0x80; utf8_hi_ = 0xBF;
      if (c >= 0xC2 && c <= 0xDF) { utf8_left_ = 1; return true; }
      if (c >= 0xE0 && c <= 0xEF) {
        utf8_left_ = 2;
        if (c == 0xE0) utf8_lo_ = 0xA0;
        if (c == 0xED) utf8_hi_ = 0x9F;
        return true;
      }
      if (c >= 0xF0 && c <= 0xF4) {
        utf8_left_ = 3;
        if (c == 0xF0) utf8_lo_ = 0x90;
        if (c == 0xF4) utf8_hi_ = 0x8F;
        return true;
      }
      return false;
    case Mode::StrEsc:
      switch (c) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
          mode_ = Mode::Str; return true;
        case 'u': mode_ = Mode::StrHex; hex_left_ = 4; return true;
        default: return false;
      }
    case Mode::StrHex:
      if (!(digit() || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
      if (--hex_left_ == 0) mode_ = Mode::Str;
      return true;
    case Mode::NumMinus:
      if (c == '0') { mode_ = Mode::NumZero; return true; }
      if (c >= '1' && c <= '9') { mode_ = Mode::NumInt; return true; }
      return false;
    case Mode::NumZero:
      if (c == '.') { mode_ = Mode::NumFracStart; return true; }
      if (c == 'e' || c == 'E') { mode_ = Mode::NumExpStart; return true; }
      return end_number(true);
    case Mode::NumInt:
      if (digit()) return true;
      if (c == '.') { mode_ = Mode::NumFracStart; return true; }
      if (c == 'e' || c == 'E') { mode_ = Mode::NumExpStart; return true; }
      return end_number(true);
    case Mode::NumFracStart:
      if (digit()) { mode_ = Mode::NumFrac; return true; }
      return false;
    case Mode::NumFrac:
      if (digit()) return true;
      if (c == 'e' || c == 'E') { mode_ = Mode::NumExpStart; return true; }
      return end_number(true);
    case Mode::NumExpStart:
      if (c == '+' || c == '-') { mode_ = Mode::NumExpSign; return true; }
      [[fallthrough]];
    case Mode::NumExpSign:
      if (digit()) { mode_ = Mode::NumExp; return true; }
      return false;
    case Mode::NumExp:
      if (digit()) return true;
      return end_number(true);
    case Mode::Literal:
      if (c != static_cast<unsigned char>(*lit_)) return false;
      ++lit_;
      if (*lit_ == '\0') after_value();
      return true;
  }
  return false;
}

}  // namespace lmhost
