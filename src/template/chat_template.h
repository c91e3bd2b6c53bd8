// Chat-template renderer: our own implementation of the subset of Jinja2 that
// model chat templates use (tokenizer.chat_template in GGUF files), with the
// semantics of python3-jinja2 3.1 in a SandboxedEnvironment with
// trim_blocks, lstrip_blocks and the loopcontrols extension, plus the
// globals raise_exception(msg) and strftime_now(fmt) that HF transformers
// provides.  Python's value model is emulated: True/False/None print as in
// Python, lists and dicts print in repr style, tojson sorts keys and escapes
// like jinja2's htmlsafe_json_dumps.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "util/error.h"

namespace lmhost {

namespace jinja {
struct Program;
}

// Every failure of parsing or rendering. Syntax errors carry "line L, column
// C" in their message (status 500: the model file's template is broken).
// Render errors are status 400 (the request does not fit the template); for
// raise_exception(msg) the message is exactly msg.
class TemplateError : public Error {
 public:
  explicit TemplateError(std::string message, int http_status = 400, int line = 0)
      : Error(std::move(message), http_status), line_(line) {}
  int line() const { return line_; }  // 1-based line of the template, 0 if unknown

 private:
  int line_;
};

class ChatTemplate {
 public:
  struct Options {
    bool trim_blocks = true;
    bool lstrip_blocks = true;
    // "YYYY-MM-DD": strftime_now() then formats that date at 00:00:00 (for
    // tests); empty: the current local time.
    std::string strftime_now_date;
    // Bounds so a hostile template cannot hang or exhaust the server.
    std::size_t max_output_bytes = 64u << 20;
    std::uint64_t max_steps = 20'000'000;  // statements + loop iterations + calls
    int max_call_depth = 200;             // nested macro calls
  };

  ChatTemplate();
  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&);
  ChatTemplate& operator=(const ChatTemplate&);
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Throws TemplateError (with line/column) on syntax errors.
  static ChatTemplate parse(std::string_view source);
  static ChatTemplate parse(std::string_view source, const Options& options);

  // context: {"messages": [...], "add_generation_prompt": bool, "bos_token",
  // "eos_token", "tools"?, ...}; every key becomes a template variable.
  // nlohmann::json sorts object keys; pass an ordered_json to keep the
  // caller's key order (it shows in `for k, v in d.items()`).
  std::string render(const nlohmann::json& context) const;
  std::string render(const nlohmann::ordered_json& context) const;

  const Options& options() const { return options_; }

 private:
  std::shared_ptr<const jinja::Program> program_;
  Options options_;
};

}  // namespace lmhost
