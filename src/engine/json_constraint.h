// Byte-level JSON grammar state machine used to constrain generation to
// valid JSON (Ollama `format: "json"`, OpenAI response_format json_object).
// It tracks whether the bytes seen so far are a prefix of a valid JSON text:
// objects, arrays, strings (escapes incl. \uXXXX, strict UTF-8), numbers,
// true/false/null and whitespace. Runs of whitespace are bounded so a model
// cannot loop on spaces forever.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lmhost {

class JsonConstraint {
 public:
  // object_only: the top-level value must be an object (Ollama's "json").
  explicit JsonConstraint(bool object_only = true, int max_ws_run = 8);

  // Would appending these bytes keep the text a valid JSON prefix?
  bool accepts(std::string_view bytes) const;
  // Appends bytes; if they are not accepted the machine goes into a dead
  // state (accepts() is then false for everything, complete() false).
  void advance(std::string_view bytes);
  // The text so far is a complete JSON value (top-level closed).
  bool complete() const { return mode_ == Mode::Done; }
  bool dead() const { return mode_ == Mode::Dead; }
  // Fewest bytes that would complete the text from here (0 when complete;
  // a huge number when dead). Closing needs single-byte steps like '"', '0',
  // ':', '}', ']' and continuation bytes of an open UTF-8 character.
  int close_cost() const;
  // close_cost() after appending bytes, or -1 if they are not accepted.
  int close_cost_after(std::string_view bytes) const;

 private:
  enum class Mode : uint8_t {
    ValueStart, ArrFirstOrEnd, ObjKeyOrEnd, ObjKey, Colon, AfterValue,
    Str, StrEsc, StrHex,
    NumMinus, NumZero, NumInt, NumFracStart, NumFrac, NumExpStart, NumExpSign, NumExp,
    Literal, Done, Dead
  };
  bool step(unsigned char c);  // false: rejected (state unspecified)
  bool ws(unsigned char c);
  bool value_start(unsigned char c);
  void after_value();

  bool object_only_;
  int max_ws_;
  Mode mode_ = Mode::ValueStart;
  std::string stack_;        // 'o' / 'a' per open container
  bool str_is_key_ = false;
  int hex_left_ = 0;
  int utf8_left_ = 0;        // continuation bytes still expected in a string
  unsigned char utf8_lo_ = 0x80, utf8_hi_ = 0xBF;  // range of the next continuation byte
  const char* lit_ = nullptr;  // rest of true/false/null still expected
  int ws_run_ = 0;
};

}  // namespace lmhost
