// Language features of the chat-template renderer. Expected outputs were
// produced by python3-jinja2 3.1 (SandboxedEnvironment, trim_blocks,
// lstrip_blocks, loopcontrols) and are recorded here, so these tests need
// neither Python nor ../shared.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "template/chat_template.h"

using lmhost::ChatTemplate;
using lmhost::TemplateError;

namespace {

std::string render(const std::string& src, const nlohmann::ordered_json& ctx = nlohmann::ordered_json::object()) {
  ChatTemplate::Options opt;
  opt.strftime_now_date = "2026-01-15";
  return ChatTemplate::parse(src, opt).render(ctx);
}

struct Case {
  const char* name;
  const char* src;
  const char* want;
};

const Case kCases[] = {
    {"trim_blocks_lstrip", R"JJ(line1
   {% if true %}
   x
   {% endif %}
   tail
)JJ",
     R"JJ(line1
   x
   tail)JJ"},
    {"dash_strips", R"JJ(a  
 {%- if true -%}  
 b {%- endif %}
 c)JJ",
     R"JJ(ab c)JJ"},
    {"plus_keeps", R"JJ(a
  {%+ if true %}x{% endif +%}
z)JJ",
     R"JJ(a
  x
z)JJ"},
    {"comment_ws", R"JJ(x {# c #}
y
  {#- c2 -#}  z)JJ",
     R"JJ(x yz)JJ"},
    {"trailing_newline", R"JJ(abc
)JJ",
     R"JJ(abc)JJ"},
    {"loop_vars", R"JJ({% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}|{% endfor %})JJ",
     R"JJ(103TrueFalse3|212FalseFalse3a|321FalseTrue3b|)JJ"},
    {"loop_filter_else", R"JJ({% for x in [1,2,3,4] if x is even %}{{ x }}/{{ loop.length }} {% else %}none{% endfor %}{% for x in [] %}{% else %}empty{% endfor %})JJ",
     R"JJ(2/2 4/2 empty)JJ"},
    {"loop_controls", R"JJ({% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 5 %}{% break %}{% endif %}{{ x }}{% endfor %})JJ",
     R"JJ(01345)JJ"},
    {"tuple_unpack", R"JJ({% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in {'x': [1]}|items %}{{ k }}{{ v }}{% endfor %})JJ",
     R"JJ(b=1;a=2;x[1])JJ"},
    {"scoping", R"JJ({% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = x + 10 %}{{ x }} {% endfor %}{{ x }})JJ",
     R"JJ(111 111 1)JJ"},
    {"namespace", R"JJ({% set ns = namespace(n=0, found=false) %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% if i == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.n }} {{ ns.found }})JJ",
     R"JJ(6 True)JJ"},
    {"macro_defaults", R"JJ({% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }})JJ",
     R"JJ(Hi A! Hi B? Hi C.)JJ"},
    {"macro_recursion", R"JJ({% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }})JJ",
     R"JJ(54321)JJ"},
    {"set_block", R"JJ({% set body %}x={{ 1 + 2 }}{% endset %}[{{ body }}])JJ",
     R"JJ([x=3])JJ"},
    {"python_repr", R"JJ({{ [1, 'a', none, true, 1.5, (1,), {'k': "it's"}] }} {{ none }} {{ false }} {{ 1e20 }} {{ 0.1 + 0.2 }})JJ",
     R"JJ([1, 'a', None, True, 1.5, (1,), {'k': "it's"}] None False 1e+20 0.30000000000000004)JJ"},
    {"tojson", R"JJ({{ {'b': 1, 'a': ['<x>', "it's", 'é', none, 2.0]}|tojson }})JJ",
     R"JJ({"a": ["\u003cx\u003e", "it\u0027s", "\u00e9", null, 2.0], "b": 1})JJ"},
    {"tojson_indent", R"JJ({{ {'b': [], 'a': [1, {}], 'c': {'d': true}}|tojson(indent=2) }})JJ",
     R"JJ({
  "a": [
    1,
    {}
  ],
  "b": [],
  "c": {
    "d": true
  }
})JJ"},
    {"markup_concat", R"JJ({{ '<' + 'x'|tojson }} {{ ('a'|tojson)[1:] }} {{ '<' ~ 'x'|tojson }})JJ",
     R"JJ(&lt;"x" a" <"x")JJ"},
    {"string_filters", R"JJ({{ '  Hi There  '|trim }}|{{ 'hello world'|title }}|{{ 'hello'|capitalize }}|{{ 'Ab'|upper }}{{ 'Ab'|lower }}|{{ 'aXbX'|replace('X', '-') }}|{{ 'a
b'|indent(2, first=true) }})JJ",
     R"JJ(Hi There|Hello World|Hello|ABab|a-b-|  a
  b)JJ"},
    {"list_filters", R"JJ({{ [3, 1, 2]|sort }} {{ ['b', 'A', 'a']|unique|list }} {{ [1, 2]|first }}{{ [1, 2]|last }} {{ [1, 2, 3]|join('-') }} {{ 'abc'|list }} {{ [1, 2]|length }} {{ {'a': 1}|count }})JJ",
     R"JJ([1, 2, 3] ['b', 'A'] 12 1-2-3 ['a', 'b', 'c'] 2 1)JJ"},
    {"select_map", R"JJ({% set ms = [{'role': 'user', 'c': 1}, {'role': 'tool', 'c': 2}, {'role': 'user', 'c': 3}] %}{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='c')|list }} {{ ms|rejectattr('role', 'equalto', 'user')|list|length }} {{ ms|map(attribute='role')|unique|list }})JJ",
     R"JJ([1, 3] 1 ['user', 'tool'])JJ"},
    {"number_filters", R"JJ({{ '42'|int + 1 }} {{ 'x'|int }} {{ '2.5'|float }} {{ -3|abs }} {{ 2.567|round(2) }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 8 }})JJ",
     R"JJ(43 0 2.5 3 2.57 3 -4 1 2 3.5 256)JJ"},
    {"default_filter", R"JJ({{ missing|default('d') }} {{ ''|default('e') }} {{ ''|default('e', true) }} {{ none|d('n') }})JJ",
     R"JJ(d  e None)JJ"},
    {"tests", R"JJ({{ 1 is number }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ missing is defined }}{{ missing is undefined }}{{ none is none }}{{ false is false }}{{ true is true }}{{ 3 is odd }}{{ 4 is even }}{{ 1 is integer }}{{ 1.0 is float }}{{ 'a' is in 'abc' }})JJ",
     R"JJ(TrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrue)JJ"},
    {"operators", R"JJ({{ 1 < 2 < 3 }} {{ 'a' in 'abc' }} {{ 3 not in [1, 2] }} {{ not true }} {{ true and 'x' }} {{ none or 'y' }} {{ 'a' ~ 1 ~ none }} {{ 'x' if false else 'y' }} {{ 'x' if false }}|)JJ",
     R"JJ(True True True False x y a1None y |)JJ"},
    {"methods", R"JJ({{ ' a b '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'xxhixx'.strip('x') }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}|{{ 'a/b/c'.rsplit('/', 1) }}|{{ {'k': 1}.get('k') }}{{ {'k': 1}.get('z', 0) }}|{{ {'k': 1}.keys()|list }}|{{ 'AbC'.lower() }}{{ 'abc'.upper() }})JJ",
     R"JJ(a b|['a', 'b', '', 'c']|['a', 'b']|hi|TrueTrue|['a/b', 'c']|10|['k']|abcABC)JJ"},
    {"slices", R"JJ({{ 'abcdef'[::-1] }} {{ 'abcdef'[1:3] }} {{ [1, 2, 3, 4][-2:] }} {{ [1, 2, 3][::2] }} {{ 'héllo'[1] }} {{ 'héllo'|length }})JJ",
     R"JJ(fedcba bc [3, 4] [1, 3] é 5)JJ"},
    {"undefined_behaviour", R"JJ([{{ missing }}][{{ missing|length }}][{{ missing|join }}][{% for x in missing %}x{% endfor %}][{{ {'a': 1}.b }}][{{ [1][5] }}])JJ",
     R"JJ([][0][][][][])JJ"},
    {"string_escapes", R"JJ({{ 'a\tb' }}|{{ "q\"q" }}|{{ '\u00e9\x41' }}|{{ 'x' 'y' }}|{{ '\d' }})JJ",
     R"JJ(a	b|q"q|éA|xy|\d)JJ"},
    {"raw_block", R"JJ({% raw %}{{ not rendered }}{% endraw %})JJ",
     R"JJ({{ not rendered }})JJ"},
    {"strftime", R"JJ({{ strftime_now('%d %b %Y') }})JJ",
     R"JJ(15 Jan 2026)JJ"},
    {"range", R"JJ({{ range(3)|list }} {{ range(1, 10, 4)|list }} {{ range(5, 0, -2)|list }})JJ",
     R"JJ([0, 1, 2] [1, 5, 9] [5, 3, 1])JJ"},
    {"filter_block", R"JJ({% filter upper %}abc {{ 'd' }}{% endfilter %})JJ",
     R"JJ(ABC D)JJ"},
    {"list_mutation", R"JJ({% set xs = [] %}{% for i in range(3) %}{% set _ = xs.append(i * 2) %}{% endfor %}{{ xs }})JJ",
     R"JJ([0, 2, 4])JJ"},
};

}  // namespace

TEST(TemplateRender, MatchesJinja2) {
  for (const auto& c : kCases) {
    std::string got;
    try {
      got = render(c.src);
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.name << ": threw " << e.what();
      continue;
    }
    EXPECT_EQ(got, c.want) << c.name;
  }
}

TEST(TemplateRender, ContextVariablesAndKeyOrder) {
  nlohmann::ordered_json ctx = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                                {"tool", {{"name", "f"}, {"description", "d"}, {"parameters", nlohmann::ordered_json::object()}}},
                                {"add_generation_prompt", true}};
  EXPECT_EQ(render("{% for m in messages %}<{{ m.role }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}!{% endif %}", ctx),
            "<user>Hi!");
  // ordered_json keeps the caller's key order for iteration; tojson sorts keys.
  EXPECT_EQ(render("{% for k in tool %}{{ k }} {% endfor %}{{ tool|tojson }}", ctx),
            "name description parameters {\"description\": \"d\", \"name\": \"f\", \"parameters\": {}}");
  // nlohmann::json works too (its objects are key-sorted).
  nlohmann::json plain = {{"x", 1}};
  EXPECT_EQ(ChatTemplate::parse("{{ x + 1 }}").render(plain), "2");
}

TEST(TemplateRender, RaiseExceptionCarriesMessage) {
  nlohmann::ordered_json ctx = {{"messages", {{{"role", "system"}, {"content", "x"}}}}};
  try {
    render("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}", ctx);
    FAIL() << "expected TemplateError";
  } catch (const TemplateError& e) {
    EXPECT_STREQ(e.what(), "System role not supported");
    EXPECT_EQ(e.status(), 400);
  }
}

TEST(TemplateRender, SyntaxErrorsHaveLineAndColumn) {
  struct Bad {
    const char* src;
    int line;
  } bad[] = {
      {"ok\n{% if x %}\nno end", 3},
      {"a\nb\n{{ 1 + }}", 3},
      {"{% for x in %}{% endfor %}", 1},
      {"line1\nline2\n{% endfor %}", 3},
      {"{{ 'unterminated }}", 1},
      {"{% macro m(a=1, b) %}{% endmacro %}", 1},
      {"{% break %}", 1},
      {"{# never closed", 1},
      {"{{ x ", 1},
      {"\n\n{% unknown_tag %}", 3},
      {"{{ a.(b) }}", 1},
      {"{{ x is }}", 1},
  };
  for (const auto& b : bad) {
    try {
      ChatTemplate::parse(b.src);
      ADD_FAILURE() << "no error for: " << b.src;
    } catch (const TemplateError& e) {
      EXPECT_EQ(e.line(), b.line) << b.src << " -> " << e.what();
      EXPECT_NE(std::string(e.what()).find("line " + std::to_string(b.line)), std::string::npos) << e.what();
      EXPECT_EQ(e.status(), 500);
    }
  }
}

TEST(TemplateRender, RuntimeErrorsAreTemplateErrors) {
  const char* bad[] = {
      "{{ missing.attr }}",          // attribute of undefined
      "{{ missing + 1 }}",           // arithmetic on undefined
      "{{ 'a' + 1 }}",               // str + int
      "{{ 1 / 0 }}",                 // division by zero
      "{{ 5 % 0 }}",
      "{% for x in 5 %}{% endfor %}",  // not iterable
      "{{ none|list }}",
      "{{ 1 < 'a' }}",
      "{{ range(1000000)|length }}",  // sandbox MAX_RANGE
      "{{ 9223372036854775807 + 1 }}",  // no silent overflow
      "{{ {'a': 1}|items|list|tojson(indent='x') }}",
      "{% set a, b = [1, 2, 3] %}",
      "{{ nosuchfilter|frobnicate }}",
      "{{ 1 is frobnicated }}",
      "{{ 'abc'.nosuchmethod() }}",
      "{{ missing() }}",
      "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}",
  };
  for (const char* src : bad) {
    EXPECT_THROW(render(src), TemplateError) << src;
  }
}

TEST(TemplateRender, RecursionAndLoopsAreBounded) {
  // Unbounded macro recursion stops with an error, not a stack overflow.
  EXPECT_THROW(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"), TemplateError);
  // Nested big loops hit the step budget quickly.
  ChatTemplate::Options opt;
  opt.max_steps = 200000;
  auto t = ChatTemplate::parse("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", opt);
  EXPECT_THROW(t.render(nlohmann::json::object()), TemplateError);
  // Output growth is bounded.
  ChatTemplate::Options small;
  small.max_output_bytes = 1 << 16;
  auto grow = ChatTemplate::parse("{% set s = namespace(v='x') %}{% for i in range(100) %}{% set s.v = s.v + s.v %}{% endfor %}{{ s.v }}", small);
  EXPECT_THROW(grow.render(nlohmann::json::object()), TemplateError);
  EXPECT_THROW(render("{{ 'x' * 100000000000 }}"), TemplateError);
  // A list containing itself cannot be printed forever.
  EXPECT_THROW(render("{% set a = [] %}{% set _ = a.append(a) %}{{ a }}"), TemplateError);
  // Deeply nested expressions / blocks are a syntax error, not a crash.
  EXPECT_THROW(ChatTemplate::parse("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"), TemplateError);
  std::string deep;
  for (int k = 0; k < 3000; ++k) deep += "{% if true %}";
  EXPECT_THROW(ChatTemplate::parse(deep), TemplateError);
  EXPECT_THROW(ChatTemplate::parse("{{ " + std::string(5000, '-') + "1 }}"), TemplateError);
  EXPECT_THROW(ChatTemplate::parse("{{ " + std::string(5000, '[') + " }}"), TemplateError);
}

TEST(TemplateRender, EmptyAndDefaultTemplates) {
  EXPECT_EQ(render(""), "");
  EXPECT_EQ(render("plain text"), "plain text");
  ChatTemplate none;
  EXPECT_THROW(none.render(nlohmann::json::object()), TemplateError);
  EXPECT_THROW(ChatTemplate::parse("x").render(nlohmann::json::array()), TemplateError);
}

// Random garbage built from template-ish fragments must either render or
// throw TemplateError: never crash, hang or throw anything else.
TEST(TemplateFuzz, GarbageOnlyThrowsTemplateError) {
  const char* frags[] = {"{{", "}}", "{%", "%}", "{#", "#}", "-", "+", " ", "\n", "if", "for", "in", "endif",
                         "endfor", "else", "elif", "set", "=", "macro", "endmacro", "x", "y", "loop", ".",
                         "(", ")", "[", "]", "{", "}", ",", ":", "|", "length", "tojson", "'s'", "\"", "'",
                         "1", "0", "2.5", "not", "and", "or", "is", "defined", "none", "~", "*", "**", "/",
                         "//", "%", "<", ">=", "==", "!=", "raw", "endraw", "range", "(9)", "namespace",
                         "items()", "break", "continue", "\\", "é", "\xff", "messages", "[0]", "[::-1]"};
  const size_t nfrag = sizeof(frags) / sizeof(frags[0]);
  nlohmann::ordered_json ctx = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"x", 3}, {"y", "s"}};
  std::uint64_t state = 12345;
  auto rnd = [&]() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<size_t>(state >> 33);
  };
  ChatTemplate::Options opt;
  opt.max_steps = 100000;
  opt.max_output_bytes = 1 << 20;
  int rendered = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string src;
    size_t n = 1 + rnd() % 24;
    for (size_t k = 0; k < n; ++k) src += frags[rnd() % nfrag];
    try {
      auto t = ChatTemplate::parse(src, opt);
      t.render(ctx);
      ++rendered;
    } catch (const TemplateError&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "non-TemplateError " << e.what() << " for: " << src;
    }
  }
  EXPECT_GT(rendered, 0);
}
