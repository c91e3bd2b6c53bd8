// Renders every chat template of ../shared/golden/templates for every case of
// expected.json and compares with python3-jinja2 3.1.2's output exactly.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "template/chat_template.h"

namespace fs = std::filesystem;
using lmhost::ChatTemplate;
using lmhost::TemplateError;

namespace {

fs::path templates_dir() { return fs::path(LMHOST_SHARED_DIR) / "golden" / "templates"; }

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// First differing position with some context, for readable failures.
std::string diff_at(const std::string& want, const std::string& got) {
  size_t k = 0;
  while (k < want.size() && k < got.size() && want[k] == got[k]) ++k;
  size_t from = k > 40 ? k - 40 : 0;
  return "first difference at byte " + std::to_string(k) + "\n  want: " +
         nlohmann::json(want.substr(from, 120)).dump() + "\n  got:  " + nlohmann::json(got.substr(from, 120)).dump();
}

}  // namespace

TEST(TemplateGolden, AllTemplatesAllCases) {
  fs::path dir = templates_dir();
  if (!fs::exists(dir / "expected.json")) GTEST_SKIP() << "golden templates not found at " << dir;
  auto expected = nlohmann::ordered_json::parse(read_file(dir / "expected.json"));
  ChatTemplate::Options opt;
  opt.strftime_now_date = "2026-01-15";

  int total = 0, passed = 0;
  for (auto& [name, renders] : expected["renders"].items()) {
    std::string src = read_file(dir / name);
    ChatTemplate tmpl;
    try {
      tmpl = ChatTemplate::parse(src, opt);
    } catch (const TemplateError& e) {
      ADD_FAILURE() << name << ": parse error: " << e.what();
      total += static_cast<int>(renders.size());
      continue;
    }
    for (auto& c : expected["cases"]) {
      std::string case_name = c["name"];
      if (!renders.contains(case_name)) continue;
      ++total;
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
        if (threw) {
          ADD_FAILURE() << name << " / " << case_name << ": unexpected error: " << err;
        } else if (got != w) {
          ADD_FAILURE() << name << " / " << case_name << ": " << diff_at(w, got);
        } else {
          ++passed;
        }
      } else {
        std::string w = want["error"];
        const std::string prefix = "TemplateError: ";
        if (w.rfind(prefix, 0) == 0) w = w.substr(prefix.size());
        if (!threw) {
          ADD_FAILURE() << name << " / " << case_name << ": expected error '" << w << "', rendered "
                        << nlohmann::json(got).dump();
        } else if (err != w) {
          ADD_FAILURE() << name << " / " << case_name << ": error '" << err << "', expected '" << w << "'";
        } else {
          ++passed;
        }
      }
    }
  }
  std::printf("template golden: %d / %d renders match\n", passed, total);
  EXPECT_EQ(passed, total);
  EXPECT_GT(total, 0);
}
