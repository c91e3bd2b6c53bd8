// Tool calls in generated text: recognises the call formats of the common
// model families in what a model wrote, so the chat endpoints can return
// them as OpenAI `message.tool_calls` / Ollama `message.tool_calls` instead
// of plain text. API-neutral (no HTTP); used by api/openai.cpp and
// api/ollama.cpp only when the request declared tools.
//
// Formats (picked from the model's chat template, then its vocabulary):
//   Hermes   Hermes 2 Pro / 3, Qwen 2.5, Qwen 3: one or more
//            <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>
//            (text before the first one is content)
//   Llama3   Llama 3.1 / 3.2 / 3.3: {"name": N, "parameters": {...}}, alone
//            or after <|python_tag|> (text before the tag is content)
//   Mistral  Mistral / Mistral Nemo: [TOOL_CALLS][{"name": N, "arguments": {...}, "id": "abcdefghi"}, ...]
//   Functionary  functionary v3.1 (Llama 3.1 based): <function=N>{...}</function>, one or more
//   CommandR  Command R7B: <|START_ACTION|>[{"tool_call_id": "0", "tool_name": N, "parameters": {...}}, ...]<|END_ACTION|>;
//            Command R+: Action: ```json [{"tool_name": N, "parameters": {...}}, ...] ``` (its
//            "directly-answer" action is no call)
//   DeepSeek  DeepSeek R1 / V3: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N
//            ```json {...} ```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
//   Json     any other model: the whole output is a JSON object (or a list
//            of them) {"name": N, "arguments"|"parameters": {...}}
// Every format also accepts a bare JSON call (object or list) as its whole
// output: control markers such as [TOOL_CALLS] and <|python_tag|> are often
// not rendered in the output text. A bare call must name one of the declared
// tools; a call after an explicit marker may name any function.
// Anything malformed stays plain content.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace lmhost {
class Tokenizer;
}

namespace lmhost::api {

enum class ToolFormat { Json, Hermes, Llama3, Mistral, Functionary, CommandR, CommandRPlus, DeepSeek };
// "json", "hermes", "llama3", "mistral", "functionary", "command-r", "command-r-plus", "deepseek"
const char* tool_format_name(ToolFormat f);

// The format a model writes calls in: markers in its chat template first
// (<tool_call>, [TOOL_CALLS], <function=, <|START_ACTION|>, Action: with
// tool_name, <｜tool▁calls▁begin｜>, <|python_tag|> or Llama 3's "parameters"
// with header tokens), then tokens of its vocabulary (tok may be null), else Json.
ToolFormat detect_tool_format(std::string_view chat_template, const Tokenizer* tok);

// The format's marker tokens in this vocabulary (single special tokens, e.g.
// DeepSeek's <｜tool▁calls▁begin｜>): the generation writes them into its text
// so the parser sees them (special tokens are otherwise not part of the text).
std::vector<int32_t> tool_marker_tokens(ToolFormat f, const Tokenizer& tok);

struct ParsedToolCall {
  std::string name;
  nlohmann::json arguments;  // an object (a string the model wrote as JSON text is parsed when it can be)
  std::string id;            // the model's own id (Mistral), "" when it gave none
};

struct ToolParse {
  std::string content;               // text around the calls (the whole text when no call)
  std::vector<ParsedToolCall> calls;  // empty: no (well-formed) call
};

// tool_names: the declared tools' function names (bare JSON must name one of
// them; empty = any name).
ToolParse parse_tool_calls(std::string_view text, ToolFormat fmt, const std::vector<std::string>& tool_names);

// The declared function names of an OpenAI / Ollama `tools` list (entries
// {"type": "function", "function": {"name": ...}}); unnamed entries skipped.
template <class J>
std::vector<std::string> tool_names_of(const J& tools) {
  std::vector<std::string> out;
  if (!tools.is_array()) return out;
  for (const auto& t : tools) {
    if (!t.is_object()) continue;
    auto fn = t.find("function");
    const auto& f = fn != t.end() && fn->is_object() ? *fn : t;
    auto n = f.find("name");
    if (n != f.end() && n->is_string()) out.push_back(n->template get<std::string>());
  }
  return out;
}

// A generation as it streams: content is passed through until the output
// starts looking like a tool call, then held back; finish() parses what was
// held. Text that was held but is no call comes back from finish() as content.
class ToolCallStreamer {
 public:
  ToolCallStreamer(ToolFormat fmt, std::vector<std::string> tool_names)
      : fmt_(fmt), names_(std::move(tool_names)) {}
  // The part of `piece` that can be sent as content now ("" while holding).
  std::string feed(std::string_view piece);
  // At the end of the generation: the calls, and content not sent yet
  // (held text that was no call, or text after the calls).
  ToolParse finish();
  bool holding() const { return holding_; }

 private:
  ToolFormat fmt_;
  std::vector<std::string> names_;
  std::string all_;        // everything generated so far
  size_t sent_ = 0;        // bytes of all_ already returned as content
  size_t call_start_ = 0;  // where the held (call) text starts, valid when holding_
  bool holding_ = false;
};

// A fresh id for a call: "call_" + 24 random alphanumerics; Mistral's
// templates need exactly 9 alphanumerics (mistral = true).
std::string new_tool_call_id(bool mistral = false);

}  // namespace lmhost::api
