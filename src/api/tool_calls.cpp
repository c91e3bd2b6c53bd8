// Tool calls in generated text (see tool_calls.h for the formats).
#include "api/tool_calls.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <random>

#include "tokenizer/tokenizer.h"

namespace lmhost::api {

using json = nlohmann::json;

namespace {

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kMistral = "[TOOL_CALLS]";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kFunctionOpen = "<function=";
constexpr std::string_view kFunctionClose = "</function>";
constexpr std::string_view kActionOpen = "<|START_ACTION|>";
constexpr std::string_view kActionClose = "<|END_ACTION|>";
constexpr std::string_view kCommandRPlusAction = "Action:";
constexpr std::string_view kDeepSeekCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kDeepSeekCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kDeepSeekCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kDeepSeekCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kDeepSeekSep = "<｜tool▁sep｜>";

bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && is_ws(s[i])) ++i;
  return i;
}

std::string_view trim(std::string_view s) {
  size_t b = skip_ws(s, 0), e = s.size();
  while (e > b && is_ws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string trim_right(std::string_view s) {
  size_t e = s.size();
  while (e > 0 && is_ws(s[e - 1])) --e;
  return std::string(s.substr(0, e));
}

// End (one past) of the JSON object or array starting at s[i] ('{' or '['),
// matching brackets outside strings; npos when it does not close.
size_t json_end(std::string_view s, size_t i) {
  if (i >= s.size() || (s[i] != '{' && s[i] != '[')) return std::string_view::npos;
  int depth = 0;
  bool in_str = false;
  for (size_t k = i; k < s.size(); ++k) {
    const char c = s[k];
    if (in_str) {
      if (c == '\\') ++k;
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') in_str = true;
    else if (c == '{' || c == '[') ++depth;
    else if (c == '}' || c == ']') {
      if (--depth == 0) return k + 1;
    }
  }
  return std::string_view::npos;
}

// One call object: {"name", "arguments"|"parameters", "id"?} or OpenAI's
// {"type": "function", "function": {...}}. known: the name must be declared.
std::optional<ParsedToolCall> call_of(const json& j, bool known, const std::vector<std::string>& names) {
  if (!j.is_object()) return std::nullopt;
  const json* o = &j;
  if (auto f = j.find("function"); f != j.end() && f->is_object() && !j.contains("name")) o = &*f;
  auto n = o->find("name");
  if (n == o->end()) n = o->find("tool_name");  // Command R
  if (n == o->end() || !n->is_string() || n->get<std::string>().empty()) return std::nullopt;
  ParsedToolCall c;
  c.name = n->get<std::string>();
  if (known && !names.empty() && std::find(names.begin(), names.end(), c.name) == names.end()) return std::nullopt;
  // Nothing but the call's own fields: {"name": "Bob", "age": 3} is no call.
  for (const auto& [k, v] : o->items())
    if (k != "name" && k != "arguments" && k != "parameters" && k != "id" && k != "type" && k != "tool_name" &&
        k != "tool_call_id")
      return std::nullopt;
  json args = json::object();
  if (auto a = o->find("arguments"); a != o->end()) args = *a;
  else if (auto p = o->find("parameters"); p != o->end()) args = *p;
  if (args.is_string()) {  // some models write the arguments as JSON text
    json parsed = json::parse(args.get<std::string>(), nullptr, false);
    if (parsed.is_discarded()) return std::nullopt;
    args = std::move(parsed);
  }
  if (args.is_null()) args = json::object();
  if (!args.is_object()) return std::nullopt;
  c.arguments = std::move(args);
  if (auto id = j.find("id"); id != j.end() && id->is_string()) c.id = id->get<std::string>();
  return c;
}

// A ```json ... ``` fence (or a bare JSON value) at s[i]: the JSON's bounds
// [b, e) and the end of the fence; nullopt when it is neither.
struct Fenced {
  size_t b, e, end;
};
std::optional<Fenced> fenced_json(std::string_view s, size_t i) {
  i = skip_ws(s, i);
  if (s.substr(i, 3) != "```") {
    const size_t e = json_end(s, i);
    if (e == std::string_view::npos) return std::nullopt;
    return Fenced{i, e, e};
  }
  const size_t nl = s.find('\n', i);
  if (nl == std::string_view::npos) return std::nullopt;
  const size_t b = skip_ws(s, nl + 1), e = json_end(s, b);
  if (e == std::string_view::npos) return std::nullopt;
  size_t end = skip_ws(s, e);
  if (s.substr(end, 3) != "```") return std::nullopt;
  return Fenced{b, e, end + 3};
}

// A JSON call or list of calls starting at s[i]: appends them and returns the
// end, npos when malformed (nothing appended).
size_t json_calls(std::string_view s, size_t i, bool known, const std::vector<std::string>& names,
                  std::vector<ParsedToolCall>& out) {
  const size_t e = json_end(s, i);
  if (e == std::string_view::npos) return e;
  const json j = json::parse(s.substr(i, e - i), nullptr, false);
  if (j.is_discarded()) return std::string_view::npos;
  std::vector<ParsedToolCall> calls;
  if (j.is_array()) {
    if (j.empty()) return std::string_view::npos;
    for (const auto& x : j) {
      auto c = call_of(x, known, names);
      if (!c) return std::string_view::npos;
      calls.push_back(std::move(*c));
    }
  } else {
    auto c = call_of(j, known, names);
    if (!c) return std::string_view::npos;
    calls.push_back(std::move(*c));
  }
  for (auto& c : calls) out.push_back(std::move(c));
  return e;
}

// The whole text is a JSON call or list of calls (optionally in a ``` fence,
// calls separated by ';' or newlines), naming declared tools.
std::optional<std::vector<ParsedToolCall>> bare_calls(std::string_view text, const std::vector<std::string>& names) {
  std::string_view t = trim(text);
  if (t.substr(0, 3) == "```") {
    const size_t nl = t.find('\n');
    if (nl == std::string_view::npos || t.size() < 6 || t.substr(t.size() - 3) != "```") return std::nullopt;
    t = trim(t.substr(nl + 1, t.size() - 3 - (nl + 1)));
  }
  if (t.empty() || (t[0] != '{' && t[0] != '[')) return std::nullopt;
  std::vector<ParsedToolCall> calls;
  size_t i = 0;
  while (i < t.size()) {
    i = json_calls(t, i, /*known=*/true, names, calls);
    if (i == std::string_view::npos) return std::nullopt;
    i = skip_ws(t, i);
    if (i < t.size() && t[i] == ';') i = skip_ws(t, i + 1);
  }
  return calls;
}

std::string_view marker_of(ToolFormat f) {
  switch (f) {
    case ToolFormat::Hermes: return kHermesOpen;
    case ToolFormat::Mistral: return kMistral;
    case ToolFormat::Llama3: return kPythonTag;
    case ToolFormat::Functionary: return kFunctionOpen;
    case ToolFormat::CommandR: return kActionOpen;
    case ToolFormat::CommandRPlus: return kCommandRPlusAction;
    case ToolFormat::DeepSeek: return kDeepSeekCallsBegin;
    default: return {};
  }
}

// Functionary v3.1: <function=NAME>{args}</function>, repeated.
size_t functionary_calls(std::string_view text, size_t i, std::vector<ParsedToolCall>& out) {
  for (;;) {
    i = skip_ws(text, i);
    if (text.substr(i, kFunctionOpen.size()) != kFunctionOpen) return i;
    const size_t name_at = i + kFunctionOpen.size(), gt = text.find('>', name_at);
    if (gt == std::string_view::npos || gt == name_at) return std::string_view::npos;
    const std::string name(trim(text.substr(name_at, gt - name_at)));
    const size_t b = skip_ws(text, gt + 1), e = json_end(text, b);
    if (e == std::string_view::npos) return e;
    const json args = json::parse(text.substr(b, e - b), nullptr, false);
    if (args.is_discarded() || !args.is_object() || name.empty()) return std::string_view::npos;
    out.push_back(ParsedToolCall{name, args, ""});
    i = skip_ws(text, e);
    if (text.substr(i, kFunctionClose.size()) == kFunctionClose) i += kFunctionClose.size();
    else if (i < text.size()) return std::string_view::npos;
  }
}

// DeepSeek: <｜tool▁call▁begin｜>TYPE<｜tool▁sep｜>NAME\n```json\n{args}\n```<｜tool▁call▁end｜>, repeated, then <｜tool▁calls▁end｜>.
size_t deepseek_calls(std::string_view text, size_t i, std::vector<ParsedToolCall>& out) {
  for (;;) {
    i = skip_ws(text, i);
    if (text.substr(i, kDeepSeekCallBegin.size()) != kDeepSeekCallBegin) break;
    const size_t sep = text.find(kDeepSeekSep, i);
    if (sep == std::string_view::npos) return sep;
    const size_t name_at = sep + kDeepSeekSep.size(), nl = text.find('\n', name_at);
    if (nl == std::string_view::npos) return nl;
    const std::string name(trim(text.substr(name_at, nl - name_at)));
    const auto f = fenced_json(text, nl + 1);
    if (!f || name.empty()) return std::string_view::npos;
    const json args = json::parse(text.substr(f->b, f->e - f->b), nullptr, false);
    if (args.is_discarded() || !args.is_object()) return std::string_view::npos;
    out.push_back(ParsedToolCall{name, args, ""});
    i = skip_ws(text, f->end);
    if (text.substr(i, kDeepSeekCallEnd.size()) == kDeepSeekCallEnd) i += kDeepSeekCallEnd.size();
    else if (i < text.size()) return std::string_view::npos;
  }
  if (text.substr(i, kDeepSeekCallsEnd.size()) == kDeepSeekCallsEnd) i += kDeepSeekCallsEnd.size();
  return i;
}

// After a marker: calls until the end. Hermes wraps each call in
// <tool_call>...</tool_call> (the last closing tag may be missing when the
// model stopped there); Llama 3 and Mistral write JSON after one marker.
std::optional<ToolParse> after_marker(std::string_view text, size_t at, ToolFormat fmt) {
  ToolParse out;
  out.content = trim_right(text.substr(0, at));
  const std::vector<std::string> any;
  size_t i = at;
  if (fmt == ToolFormat::Functionary) {
    i = functionary_calls(text, i, out.calls);
    if (i == std::string_view::npos) return std::nullopt;
  } else if (fmt == ToolFormat::DeepSeek) {
    i = deepseek_calls(text, i + kDeepSeekCallsBegin.size(), out.calls);
    if (i == std::string_view::npos) return std::nullopt;
  } else if (fmt == ToolFormat::CommandR || fmt == ToolFormat::CommandRPlus) {
    // A JSON list of actions (Command R+ in a ```json fence), then <|END_ACTION|> (R7B).
    const auto f = fenced_json(text, i + marker_of(fmt).size());
    if (!f) return std::nullopt;
    if (json_calls(text, f->b, /*known=*/false, any, out.calls) != f->e) return std::nullopt;
    i = skip_ws(text, f->end);
    if (text.substr(i, kActionClose.size()) == kActionClose) i += kActionClose.size();
    // Command R+ answers without tools through its "directly-answer" action: no call.
    std::erase_if(out.calls, [](const ParsedToolCall& c) { return c.name == "directly-answer"; });
    if (out.calls.empty()) return ToolParse{std::string(text), {}};
  } else if (fmt == ToolFormat::Hermes) {
    while (true) {
      i = skip_ws(text, i);
      if (text.substr(i, kHermesOpen.size()) != kHermesOpen) break;
      i = skip_ws(text, i + kHermesOpen.size());
      i = json_calls(text, i, /*known=*/false, any, out.calls);
      if (i == std::string_view::npos) return std::nullopt;
      i = skip_ws(text, i);
      if (text.substr(i, kHermesClose.size()) == kHermesClose) i += kHermesClose.size();
      else if (i < text.size()) return std::nullopt;
    }
  } else {
    i = skip_ws(text, i + (fmt == ToolFormat::Mistral ? kMistral.size() : kPythonTag.size()));
    while (i < text.size() && (text[i] == '{' || text[i] == '[')) {
      i = json_calls(text, i, /*known=*/false, any, out.calls);
      if (i == std::string_view::npos) return std::nullopt;
      i = skip_ws(text, i);
      if (i < text.size() && text[i] == ';') i = skip_ws(text, i + 1);
    }
  }
  if (out.calls.empty()) return std::nullopt;
  // Text after the calls stays content.
  const std::string_view rest = trim(text.substr(std::min(i, text.size())));
  if (rest.find(marker_of(fmt)) != std::string_view::npos) return std::nullopt;  // a later call that is broken
  if (!rest.empty()) out.content += (out.content.empty() ? "" : "\n") + std::string(rest);
  return out;
}

// The id of this text when it is a single special / added token of the vocabulary.
std::optional<Token> special_token(const Tokenizer& tok, std::string_view text) {
  try {
    const auto ids = tok.encode(text, /*add_special=*/false, /*parse_special=*/true);
    if (ids.size() != 1) return std::nullopt;
    const TokenAttr a = tok.token_attr(ids[0]);
    if ((a == TokenAttr::Control || a == TokenAttr::UserDefined) && tok.token_text(ids[0]) == text) return ids[0];
  } catch (...) {
  }
  return std::nullopt;
}
bool has_token(const Tokenizer& tok, std::string_view text) { return special_token(tok, text).has_value(); }

}  // namespace

const char* tool_format_name(ToolFormat f) {
  switch (f) {
    case ToolFormat::Hermes: return "hermes";
    case ToolFormat::Llama3: return "llama3";
    case ToolFormat::Mistral: return "mistral";
    case ToolFormat::Functionary: return "functionary";
    case ToolFormat::CommandR: return "command-r";
    case ToolFormat::CommandRPlus: return "command-r-plus";
    case ToolFormat::DeepSeek: return "deepseek";
    default: return "json";
  }
}

ToolFormat detect_tool_format(std::string_view tpl, const Tokenizer* tok) {
  auto has = [&](std::string_view s) { return tpl.find(s) != std::string_view::npos; };
  if (has(kHermesOpen)) return ToolFormat::Hermes;
  if (has(kMistral)) return ToolFormat::Mistral;
  if (has(kDeepSeekCallsBegin)) return ToolFormat::DeepSeek;
  if (has(kActionOpen)) return ToolFormat::CommandR;
  if (has("Action:") && has("tool_name")) return ToolFormat::CommandRPlus;
  if (has(kFunctionOpen) && has(kFunctionClose)) return ToolFormat::Functionary;
  if (has(kPythonTag) || (has("<|start_header_id|>") && has("\"parameters\""))) return ToolFormat::Llama3;
  if (tok) {
    if (has_token(*tok, kHermesOpen)) return ToolFormat::Hermes;
    if (has_token(*tok, kMistral)) return ToolFormat::Mistral;
    if (has_token(*tok, kPythonTag)) return ToolFormat::Llama3;
    if (has_token(*tok, kDeepSeekCallsBegin)) return ToolFormat::DeepSeek;
    if (has_token(*tok, kActionOpen)) return ToolFormat::CommandR;
  }
  return ToolFormat::Json;
}

std::vector<int32_t> tool_marker_tokens(ToolFormat f, const Tokenizer& tok) {
  std::vector<std::string_view> markers;
  switch (f) {
    case ToolFormat::Hermes: markers = {kHermesOpen, kHermesClose}; break;
    case ToolFormat::Mistral: markers = {kMistral}; break;
    case ToolFormat::Llama3: markers = {kPythonTag}; break;
    case ToolFormat::CommandR: markers = {kActionOpen, kActionClose}; break;
    case ToolFormat::DeepSeek:
      markers = {kDeepSeekCallsBegin, kDeepSeekCallsEnd, kDeepSeekCallBegin, kDeepSeekCallEnd, kDeepSeekSep};
      break;
    default: break;  // functionary, Command R+, json: plain text
  }
  std::vector<int32_t> ids;
  for (std::string_view m : markers)
    if (auto id = special_token(tok, m)) ids.push_back(*id);
  return ids;
}

ToolParse parse_tool_calls(std::string_view text, ToolFormat fmt, const std::vector<std::string>& names) {
  if (const std::string_view m = marker_of(fmt); !m.empty()) {
    if (const size_t at = text.find(m); at != std::string_view::npos) {
      if (auto p = after_marker(text, at, fmt)) return std::move(*p);
      return ToolParse{std::string(text), {}};
    }
  }
  if (auto calls = bare_calls(text, names)) return ToolParse{"", std::move(*calls)};
  return ToolParse{std::string(text), {}};
}

std::string ToolCallStreamer::feed(std::string_view piece) {
  all_ += piece;
  if (holding_) return "";
  // Nothing sent so far (what is sent never ends in whitespace, so nothing
  // but whitespace came before) and the output starts like JSON (or a code
  // fence): it may be a bare call, hold everything.
  if (sent_ == 0) {
    const size_t first = skip_ws(all_, 0);
    if (first == all_.size()) return "";  // only whitespace yet: wait
    const char c = all_[first];
    if (c == '{' || c == '[' || c == '`') {
      holding_ = true;
      return "";
    }
  }
  const std::string_view m = marker_of(fmt_);
  size_t upto = all_.size();
  if (!m.empty()) {
    const size_t at = all_.find(m, sent_);
    if (at != std::string::npos) {
      holding_ = true;
      upto = at;
    } else {
      // Keep back a tail that may be the start of the marker.
      for (size_t k = std::min(m.size() - 1, all_.size() - sent_); k > 0; --k)
        if (std::string_view(all_).substr(all_.size() - k) == m.substr(0, k)) {
          upto = all_.size() - k;
          break;
        }
    }
  }
  // Trailing whitespace waits for what follows (it is dropped before a call).
  while (upto > sent_ && is_ws(all_[upto - 1])) --upto;
  std::string out = all_.substr(sent_, upto - sent_);
  sent_ = upto;
  return out;
}

ToolParse ToolCallStreamer::finish() {
  const std::string held = all_.substr(sent_);
  sent_ = all_.size();
  if (!holding_) return ToolParse{held, {}};
  ToolParse p = parse_tool_calls(held, fmt_, names_);
  if (p.calls.empty()) return ToolParse{held, {}};
  return p;
}

std::string new_tool_call_id(bool mistral) {
  static const char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lk(mu);
  std::string s = mistral ? "" : "call_";
  const int n = mistral ? 9 : 24;
  for (int i = 0; i < n; ++i) s += kAlnum[rng() % (sizeof kAlnum - 1)];
  return s;
}

}  // namespace lmhost::api
