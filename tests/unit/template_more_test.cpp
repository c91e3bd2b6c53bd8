// Renders every chat template of tests/data/templates (real templates of
// popular models, see SOURCES.md there) for every conversation of cases.json
// and compares with python3-jinja2 3.1.2's renders in expected.json, byte for
// byte. Where Python raised raise_exception(msg) we must raise exactly msg;
// where the template itself fails in Python (TypeError, ...) we must fail too.
// expected.json is committed: no Python is needed at test time.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "template/chat_template.h"

namespace fs = std::filesystem;
using lmhost::ChatTemplate;
using lmhost::TemplateError;

namespace {

fs::path data_dir() { return fs::path(__FILE__).parent_path().parent_path() / "data" / "templates"; }

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string diff_at(const std::string& want, const std::string& got) {
  size_t k = 0;
  while (k < want.size() && k < got.size() && want[k] == got[k]) ++k;
  size_t from = k > 60 ? k - 60 : 0;
  return "first difference at byte " + std::to_string(k) + " (want " + std::to_string(want.size()) + " bytes, got " +
         std::to_string(got.size()) + ")\n  want: " + nlohmann::json(want.substr(from, 160)).dump() +
         "\n  got:  " + nlohmann::json(got.substr(from, 160)).dump();
}

const nlohmann::ordered_json& expected() {
  static const nlohmann::ordered_json j = nlohmann::ordered_json::parse(read_file(data_dir() / "expected.json"));
  return j;
}

const nlohmann::ordered_json& cases() {
  static const nlohmann::ordered_json j = nlohmann::ordered_json::parse(read_file(data_dir() / "cases.json"));
  return j["cases"];
}

std::vector<std::string> template_names() {
  std::vector<std::string> names;
  for (auto& [name, _] : expected()["renders"].items()) names.push_back(name);
  return names;
}

class TemplateMore : public ::testing::TestWithParam<std::string> {};

TEST_P(TemplateMore, MatchesJinja2) {
  const std::string& name = GetParam();
  const auto& renders = expected()["renders"][name];
  ChatTemplate::Options opt;
  opt.strftime_now_date = "2026-01-15";
  ChatTemplate tmpl;
  try {
    tmpl = ChatTemplate::parse(read_file(data_dir() / name), opt);
  } catch (const TemplateError& e) {
    FAIL() << name << ": parse error: " << e.what();
  }
  for (const auto& c : cases()) {
    std::string case_name = c["name"];
    if (!renders.contains(case_name)) continue;
    const auto& want = renders[case_name];
    nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
    for (auto& [k, v] : c.items())
      if (k != "name") ctx[k] = v;
    ctx["bos_token"] = "<s>";
    ctx["eos_token"] = "</s>";
    std::string got, err;
    bool threw = false;
    try {
      got = tmpl.render(ctx);
    } catch (const TemplateError& e) {
      threw = true;
      err = e.what();
    }
    if (want.contains("text")) {
      std::string w = want["text"];
      if (threw)
        ADD_FAILURE() << name << " / " << case_name << ": unexpected error: " << err;
      else if (got != w)
        ADD_FAILURE() << name << " / " << case_name << ": " << diff_at(w, got);
      continue;
    }
    std::string w = want["error"];
    const std::string prefix = "TemplateError: ";
    if (!threw) {
      ADD_FAILURE() << name << " / " << case_name << ": expected error '" << w << "', rendered "
                    << nlohmann::json(got).dump();
    } else if (w.rfind(prefix, 0) == 0 && err != w.substr(prefix.size())) {
      ADD_FAILURE() << name << " / " << case_name << ": error '" << err << "', expected '" << w.substr(prefix.size())
                    << "'";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(RealTemplates, TemplateMore, ::testing::ValuesIn(template_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string s;
                           for (char ch : info.param.substr(0, info.param.size() - 6))  // drop ".jinja"
                             s += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return s;
                         });

// Single-feature snippets (snippets.json) against jinja2's output.
TEST(TemplateMoreSnippets, MatchJinja2) {
  const auto snippets = nlohmann::ordered_json::parse(read_file(data_dir() / "snippets.json"))["snippets"];
  const auto& want_all = expected()["snippets"];
  ChatTemplate::Options opt;
  opt.strftime_now_date = "2026-01-15";
  nlohmann::ordered_json ctx = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  int checked = 0;
  for (auto& [name, src] : snippets.items()) {
    ASSERT_TRUE(want_all.contains(name)) << name << " has no expected render; run render_expected.py";
    const auto& want = want_all[name];
    std::string got, err;
    bool threw = false;
    try {
      got = ChatTemplate::parse(src.get<std::string>(), opt).render(ctx);
    } catch (const TemplateError& e) {
      threw = true;
      err = e.what();
    }
    ++checked;
    if (want.contains("text")) {
      std::string w = want["text"];
      if (threw) ADD_FAILURE() << name << ": unexpected error: " << err;
      else if (got != w) ADD_FAILURE() << name << ": " << diff_at(w, got);
      continue;
    }
    std::string w = want["error"];
    const std::string prefix = "TemplateError: ";
    if (!threw) ADD_FAILURE() << name << ": expected error '" << w << "', rendered " << nlohmann::json(got).dump();
    else if (w.rfind(prefix, 0) == 0 && err != w.substr(prefix.size()))
      ADD_FAILURE() << name << ": error '" << err << "', expected '" << w.substr(prefix.size()) << "'";
  }
  EXPECT_GE(checked, 30);
}

TEST(TemplateMoreData, EnoughTemplatesAndCases) {
  EXPECT_GE(expected()["renders"].size(), 20u);
  EXPECT_GE(cases().size(), 10u);
}

}  // namespace
