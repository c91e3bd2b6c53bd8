// Tool calls in generated text: each model family's format parsed into
// calls with exact names, arguments and the content around them; malformed
// calls stay content; the streaming hold-back returns the same content and
// calls as parsing the whole text; the format is detected from the real
// chat templates in ../shared/golden, and what those templates write for an
// assistant tool call parses back into the same call.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "api/tool_calls.h"
#include "gguf/gguf.h"
#include "model/synth.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

using namespace lmhost;
using namespace lmhost::api;
using json = nlohmann::json;

namespace {

const std::vector<std::string> kNames = {"get_weather", "get_time"};

// Calls as one JSON value for exact comparison: [{name, arguments, id?}].
json calls_json(const ToolParse& p) {
  json a = json::array();
  for (const auto& c : p.calls) {
    json x = {{"name", c.name}, {"arguments", c.arguments}};
    if (!c.id.empty()) x["id"] = c.id;
    a.push_back(x);
  }
  return a;
}

void expect_parse(ToolFormat f, const std::string& text, const std::string& content, const char* calls) {
  SCOPED_TRACE(std::string(tool_format_name(f)) + ": " + text);
  const ToolParse p = parse_tool_calls(text, f, kNames);
  EXPECT_EQ(p.content, content);
  EXPECT_EQ(calls_json(p), json::parse(calls));
}

void expect_plain(ToolFormat f, const std::string& text) { expect_parse(f, text, text, "[]"); }

}  // namespace

TEST(ToolCallParse, Hermes) {
  const auto H = ToolFormat::Hermes;
  expect_parse(H, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "",
               R"([{"name": "get_weather", "arguments": {"city": "Paris"}}])");
  // Several in a row, text before them, no newlines, a missing last closing tag.
  expect_parse(H,
               "Let me check both.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
               "</tool_call>\n<tool_call>{\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET\", \"n\": [1, {\"x\": \"}\"}]}}",
               "Let me check both.",
               R"([{"name": "get_weather", "arguments": {"city": "Paris"}},
                   {"name": "get_time", "arguments": {"tz": "CET", "n": [1, {"x": "}"}]}}])");
  // After the marker any function name counts; arguments written as a JSON string are parsed.
  expect_parse(H, "<tool_call>\n{\"name\": \"lookup\", \"arguments\": \"{\\\"q\\\": 1}\"}\n</tool_call>", "",
               R"([{"name": "lookup", "arguments": {"q": 1}}])");
  // No arguments: an empty object.
  expect_parse(H, "<tool_call>{\"name\": \"get_time\"}</tool_call>", "", R"([{"name": "get_time", "arguments": {}}])");
  // Text after the calls stays content.
  expect_parse(H, "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>\nDone.", "Done.",
               R"([{"name": "get_time", "arguments": {}}])");
  // Malformed: the whole text is content.
  expect_plain(H, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par");
  expect_plain(H, "<tool_call>\n{\"name\": get_weather}\n</tool_call>");
  expect_plain(H, "<tool_call>\n{\"arguments\": {}}\n</tool_call>");
  expect_plain(H, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": [1]}\n</tool_call>");
  expect_plain(H, "<tool_call>\n{\"name\": \"get_weather\"}\n</tool_call> junk <tool_call>{\"name\": 1}</tool_call>");
  expect_plain(H, "Use <tool_call> tags to call tools.");
  expect_plain(H, "The weather in Paris is sunny.");
  expect_plain(H, "");
}

TEST(ToolCallParse, Llama3) {
  const auto L = ToolFormat::Llama3;
  expect_parse(L, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "",
               R"([{"name": "get_weather", "arguments": {"city": "Paris"}}])");
  expect_parse(L, "  {\"type\": \"function\", \"name\": \"get_time\", \"parameters\": {}}\n", "",
               R"([{"name": "get_time", "arguments": {}}])");
  // <|python_tag|> (when special tokens are rendered): text before it is content, any name counts.
  expect_parse(L, "Checking.<|python_tag|>{\"name\": \"search\", \"parameters\": {\"q\": \"x\"}}", "Checking.",
               R"([{"name": "search", "arguments": {"q": "x"}}])");
  // Several calls separated by ';'.
  expect_parse(L, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"A\"}}; {\"name\": \"get_time\", \"parameters\": {}}",
               "", R"([{"name": "get_weather", "arguments": {"city": "A"}}, {"name": "get_time", "arguments": {}}])");
  // Bare JSON must name a declared tool and hold only call fields.
  expect_plain(L, "{\"name\": \"unknown_fn\", \"parameters\": {}}");
  expect_plain(L, "{\"name\": \"get_weather\", \"age\": 3}");
  expect_plain(L, "Sure: {\"name\": \"get_weather\", \"parameters\": {}}");
  expect_plain(L, "<|python_tag|>brave_search.call(query=\"x\")");
  expect_plain(L, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}");
}

TEST(ToolCallParse, Mistral) {
  const auto M = ToolFormat::Mistral;
  expect_parse(M,
               "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1b2c3d4e\"}, "
               "{\"name\": \"get_time\", \"arguments\": {}, \"id\": \"zzzzzzzzz\"}]",
               "",
               R"([{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"},
                   {"name": "get_time", "arguments": {}, "id": "zzzzzzzzz"}])");
  // [TOOL_CALLS] is a control token, usually not in the output text: the bare list.
  expect_parse(M, "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]", "",
               R"([{"name": "get_weather", "arguments": {"city": "Oslo"}}])");
  expect_plain(M, "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {}]");
  expect_plain(M, "[1, 2, 3]");
  expect_plain(M, "[]");
}

TEST(ToolCallParse, Functionary) {
  const auto F = ToolFormat::Functionary;
  expect_parse(F, "<function=get_weather>{\"city\": \"Paris\"}</function>", "",
               R"([{"name": "get_weather", "arguments": {"city": "Paris"}}])");
  expect_parse(F, "Let me check.\n<function=get_weather>{\"city\": \"Oslo\"}</function><function=get_time>{}</function>",
               "Let me check.", R"([{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_time", "arguments": {}}])");
  expect_parse(F, "<function=get_time>{}", "", R"([{"name": "get_time", "arguments": {}}])");  // stopped at the closing tag
  expect_plain(F, "<function=get_weather>{\"city\": }</function>");
  expect_plain(F, "<function=>{}</function>");
}

TEST(ToolCallParse, CommandR) {
  const auto R = ToolFormat::CommandR;
  expect_parse(R,
               "<|START_THINKING|>I will look up the weather.<|END_THINKING|><|START_ACTION|>[\n"
               "    {\"tool_call_id\": \"0\", \"tool_name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}},\n"
               "    {\"tool_call_id\": \"1\", \"tool_name\": \"get_time\", \"parameters\": {}}\n]<|END_ACTION|>",
               "<|START_THINKING|>I will look up the weather.<|END_THINKING|>",  // the tool plan stays content
               R"([{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}])");
  expect_plain(R, "<|START_ACTION|>[{\"tool_name\": \"get_weather\", \"parameters\": {]<|END_ACTION|>");
  const auto P = ToolFormat::CommandRPlus;
  expect_parse(P, "Action:\n```json\n[\n    {\n        \"tool_name\": \"get_weather\",\n        \"parameters\": {\"city\": \"Rome\"}\n    }\n]\n```",
               "", R"([{"name": "get_weather", "arguments": {"city": "Rome"}}])");
  // Its way of answering without a tool is no call.
  const std::string direct = "Action: ```json\n[{\"tool_name\": \"directly-answer\", \"parameters\": {}}]\n```";
  expect_plain(P, direct);
  expect_plain(P, "The action: is not a call.");
}

TEST(ToolCallParse, DeepSeek) {
  const auto D = ToolFormat::DeepSeek;
  expect_parse(D,
               "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```"
               "<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜>"
               "<｜tool▁calls▁end｜>",
               "", R"([{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}])");
  expect_parse(D, "Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```",
               "Sure.", R"([{"name": "get_time", "arguments": {}}])");  // stopped before the end markers
  expect_plain(D, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{\n```");
}

TEST(ToolCallParse, JsonFallback) {
  const auto J = ToolFormat::Json;
  expect_parse(J, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}", "",
               R"([{"name": "get_weather", "arguments": {"city": "Paris"}}])");
  expect_parse(J, "```json\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n```", "",
               R"([{"name": "get_time", "arguments": {"tz": "UTC"}}])");
  expect_parse(J, "[{\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"arguments\": \"{}\"}}]", "",
               R"([{"name": "get_time", "arguments": {}}])");
  // Markers of other families mean nothing here; neither does JSON that is no call.
  expect_plain(J, "<tool_call>{\"name\": \"lookup\", \"arguments\": {}}</tool_call>");
  expect_plain(J, "{\"city\": \"Paris\", \"temp\": 21}");
  expect_plain(J, "{\"name\": \"get_weather\", \"arguments\": {}} and more");
  expect_plain(J, "Hello there");
}

namespace {

// Feeds text in pieces of `step` bytes; returns (content sent while
// streaming + content from finish(), calls).
std::pair<std::string, json> stream(ToolFormat f, const std::string& text, size_t step) {
  ToolCallStreamer s(f, kNames);
  std::string sent;
  for (size_t i = 0; i < text.size(); i += step) sent += s.feed(std::string_view(text).substr(i, step));
  const ToolParse p = s.finish();
  return {sent + p.content, calls_json(p)};
}

}  // namespace

TEST(ToolCallParse, StreamingMatchesWholeText) {
  const std::vector<std::pair<ToolFormat, std::string>> cases = {
      {ToolFormat::Hermes, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"},
      {ToolFormat::Hermes, "<tool_call>{\"name\": \"get_time\"}</tool_call><tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>"},
      {ToolFormat::Hermes, "a < b and <tool_x> is no marker <tool_cal"},
      {ToolFormat::Hermes, "<tool_call>{\"name\": broken</tool_call>"},
      {ToolFormat::Llama3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}"},
      {ToolFormat::Llama3, "{\"not\": \"a call\"}"},
      {ToolFormat::Mistral, "[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}, \"id\": \"abcdefghi\"}]"},
      {ToolFormat::Json, "\n  {\"name\": \"get_time\", \"arguments\": {}}"},
      {ToolFormat::Json, "Plain answer over\nseveral lines.\n"},
      {ToolFormat::Functionary, "Checking.<function=get_weather>{\"city\": \"Paris\"}</function>"},
      {ToolFormat::Functionary, "<functions are not calls>"},
      {ToolFormat::CommandR, "<|START_THINKING|>Plan.<|END_THINKING|><|START_ACTION|>[{\"tool_call_id\": \"0\", "
                             "\"tool_name\": \"get_time\", \"parameters\": {}}]<|END_ACTION|>"},
      {ToolFormat::CommandRPlus, "Action:\n```json\n[{\"tool_name\": \"get_time\", \"parameters\": {}}]\n```"},
      {ToolFormat::DeepSeek, "Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```"
                             "<｜tool▁call▁end｜><｜tool▁calls▁end｜>"},
  };
  for (const auto& [f, text] : cases) {
    const ToolParse whole = parse_tool_calls(text, f, kNames);
    for (size_t step : {1, 2, 3, 7, 1000}) {
      SCOPED_TRACE(text + " step " + std::to_string(step));
      auto [content, calls] = stream(f, text, step);
      EXPECT_EQ(calls, calls_json(whole));
      EXPECT_EQ(content, whole.calls.empty() ? text : whole.content);
    }
  }
}

TEST(ToolCallParse, StreamingHoldsBackOnlyWhatMayBeACall) {
  ToolCallStreamer s(ToolFormat::Hermes, kNames);
  EXPECT_EQ(s.feed("Hello"), "Hello");
  EXPECT_EQ(s.feed(" world <tool"), " world");  // a possible marker start (and the space before it) waits
  EXPECT_FALSE(s.holding());
  EXPECT_EQ(s.feed("_call>\n{\"name\""), "");  // the marker: held from here on
  EXPECT_TRUE(s.holding());
  EXPECT_EQ(s.feed(": \"get_time\"}\n</tool_call>"), "");
  const ToolParse p = s.finish();
  EXPECT_EQ(p.content, "");
  EXPECT_EQ(calls_json(p), json::parse(R"([{"name": "get_time", "arguments": {}}])"));

  ToolCallStreamer t(ToolFormat::Hermes, kNames);
  EXPECT_EQ(t.feed("1 <"), "1");
  EXPECT_EQ(t.feed(" 2"), " < 2");  // not the marker after all
  EXPECT_EQ(t.finish().content, "");
  // Output that starts like JSON is held until the end.
  ToolCallStreamer j(ToolFormat::Json, kNames);
  EXPECT_EQ(j.feed(" {\"a\""), "");
  EXPECT_EQ(j.feed(": 1}"), "");
  EXPECT_EQ(j.finish().content, " {\"a\": 1}");
}

// A format's marker tokens are special tokens, which generations do not
// write as text: when tools are declared the scheduler's decoder keeps them
// (GenerateRequest::keep_special), so the parser sees the marker.
TEST(ToolCallParse, MarkerTokensAreWrittenIntoTheText) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("lmhost-toolmarker-" + std::to_string(::getpid()) + ".gguf")).string();
  auto spec = model::synth_shape("demo");
  spec->tokenizer = model::SynthTokenizer::Llama3;  // <|python_tag|> is a control token there
  model::synth_model(*spec, path, 1);
  auto tok = Tokenizer::from_gguf(*gguf::File::open(path));
  std::filesystem::remove(path);
  const std::vector<int32_t> ids = tool_marker_tokens(ToolFormat::Llama3, *tok);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(tok->token_text(ids[0]), "<|python_tag|>");
  EXPECT_TRUE(tool_marker_tokens(ToolFormat::DeepSeek, *tok).empty()) << "not in this vocabulary";
  EXPECT_TRUE(tool_marker_tokens(ToolFormat::Functionary, *tok).empty()) << "plain-text markers";

  const std::vector<Token> call = [&] {
    std::vector<Token> t = {ids[0]};
    for (Token x : tok->encode("{\"name\": \"get_time\", \"parameters\": {}}", false, false)) t.push_back(x);
    return t;
  }();
  auto decode = [&](std::vector<Token> keep) {
    StreamDecoder d(*tok, false, std::move(keep));
    std::string out;
    for (Token t : call) out += d.push(t);
    return out + d.flush();
  };
  const std::string kept = decode(ids), plain = decode({});
  EXPECT_EQ(kept, "<|python_tag|>{\"name\": \"get_time\", \"parameters\": {}}");
  EXPECT_EQ(plain, "{\"name\": \"get_time\", \"parameters\": {}}");
  // After the marker any function name is a call; without it only a declared one.
  EXPECT_EQ(parse_tool_calls(kept, ToolFormat::Llama3, {"other"}).calls.size(), 1u);
  EXPECT_TRUE(parse_tool_calls(plain, ToolFormat::Llama3, {"other"}).calls.empty());
}

TEST(ToolCallParse, Ids) {
  const std::string a = new_tool_call_id(), b = new_tool_call_id();
  EXPECT_EQ(a.rfind("call_", 0), 0u);
  EXPECT_EQ(a.size(), 29u);
  EXPECT_NE(a, b);
  const std::string m = new_tool_call_id(true);  // Mistral's templates demand 9 alphanumerics
  EXPECT_EQ(m.size(), 9u);
  for (char c : m) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << m;
}

namespace {

std::filesystem::path templates_dir() { return std::filesystem::path(LMHOST_SHARED_DIR) / "golden" / "templates"; }

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST(ToolCallParse, FormatFromGoldenTemplates) {
  if (!std::filesystem::exists(templates_dir())) GTEST_SKIP() << "no golden templates at " << templates_dir();
  const std::vector<std::pair<const char*, ToolFormat>> want = {
      {"Qwen-Qwen2.5-7B-Instruct", ToolFormat::Hermes},
      {"Qwen-Qwen3", ToolFormat::Hermes},
      {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", ToolFormat::Hermes},
      {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use", ToolFormat::Hermes},
      {"meta-llama-Llama-3.1-8B-Instruct", ToolFormat::Llama3},
      {"meta-llama-Llama-3.2-3B-Instruct", ToolFormat::Llama3},
      {"meta-llama-Llama-3.3-70B-Instruct", ToolFormat::Llama3},
      {"mistralai-Mistral-Nemo-Instruct-2407", ToolFormat::Mistral},
      {"meetkai-functionary-medium-v3.1", ToolFormat::Functionary},
      {"CohereForAI-c4ai-command-r7b-12-2024-tool_use", ToolFormat::CommandR},
      {"CohereForAI-c4ai-command-r-plus-tool_use", ToolFormat::CommandRPlus},
      {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B", ToolFormat::DeepSeek},
      {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", ToolFormat::DeepSeek},
      {"google-gemma-2-2b-it", ToolFormat::Json},
      {"microsoft-Phi-3.5-mini-instruct", ToolFormat::Json},
  };
  for (const auto& [name, f] : want)
    EXPECT_EQ(tool_format_name(detect_tool_format(read_file(templates_dir() / (std::string(name) + ".jinja")), nullptr)),
              std::string(tool_format_name(f)))
        << name;
}

// What each family's own template writes for an assistant tool call (the
// form the model was trained to produce) parses back into that call.
TEST(ToolCallParse, TemplatesWriteWhatWeParse) {
  if (!std::filesystem::exists(templates_dir())) GTEST_SKIP() << "no golden templates at " << templates_dir();
  const json tools = json::parse(R"([{"type": "function", "function": {"name": "get_weather", "description": "d",
      "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
      "required": ["city"]}}}])");
  struct Case {
    const char* file;
    const char* begin;  // the assistant turn starts after this (the first one after the user's message)
    const char* end;    // and ends here ("": at the end of the text)
    bool string_args = false;  // the template pastes arguments as text (OpenAI's JSON string)
    bool null_content = true;  // the assistant message's content: null (as OpenAI sends it) or ""
    const char* content = "";  // what the template writes around the call
  };
  for (const Case& c : {Case{"Qwen-Qwen2.5-7B-Instruct", "<|im_start|>assistant\n", "<|im_end|>"},
                        Case{"NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "<|im_start|>assistant\n", "<|im_end|>"},
                        Case{"meta-llama-Llama-3.1-8B-Instruct", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"},
                        Case{"meta-llama-Llama-3.2-3B-Instruct", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"},
                        Case{"mistralai-Mistral-Nemo-Instruct-2407", "[/INST]", "</s>"},
                        Case{"meetkai-functionary-medium-v3.1", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eom_id|>", true},
                        Case{"CohereForAI-c4ai-command-r7b-12-2024-tool_use", "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
                             false, true, "<|START_THINKING|><|END_THINKING|>"},  // an empty tool plan
                        Case{"CohereForAI-c4ai-command-r-plus-tool_use", "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", "<|START_OF_TURN_TOKEN|>",
                             false, false},  // it prints a null content as "None"
                        Case{"deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "<｜Assistant｜>", "", true}}) {
    SCOPED_TRACE(c.file);
    const std::string src = read_file(templates_dir() / (std::string(c.file) + ".jinja"));
    ChatTemplate::Options opt;
    opt.strftime_now_date = "2024-07-26";
    const ChatTemplate t = ChatTemplate::parse(src, opt);
    json messages = json::parse(R"([{"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "abcdefghi", "type": "function",
          "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}])");
    if (c.string_args) {
      json& args = messages[1]["tool_calls"][0]["function"]["arguments"];
      args = args.dump();
    }
    if (!c.null_content) messages[1]["content"] = "";
    json ctx = {{"messages", messages},
                {"tools", tools}, {"add_generation_prompt", false}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
    const std::string out = t.render(ctx);
    const size_t b = out.find(c.begin, out.find("Weather in Paris?"));  // the turn after the user's
    ASSERT_NE(b, std::string::npos) << out;
    const size_t s = b + std::string(c.begin).size();
    const size_t e = *c.end ? out.find(c.end, s) : out.size();
    ASSERT_NE(e, std::string::npos) << out;
    const std::string turn = out.substr(s, e - s);
    const ToolParse p = parse_tool_calls(turn, detect_tool_format(src, nullptr), {"get_weather"});
    ASSERT_EQ(p.calls.size(), 1u) << turn;
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[0].arguments, json::parse(R"({"city": "Paris"})"));
    EXPECT_EQ(p.content, c.content) << turn;
  }
}
