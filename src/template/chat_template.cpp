// ChatTemplate: parse once, render many times with a JSON context.
#include "template/chat_template.h"

#include <nlohmann/json.hpp>

#include "template/jinja.h"

namespace lmhost {

namespace {

template <class J>
jinja::Value to_value(const J& j, int depth) {
  using jinja::Value;
  if (depth > 512) throw TemplateError("template context nested too deeply", 400);
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(j.template get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      auto u = j.template get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX)) return Value::number(static_cast<double>(u));
      return Value::integer(static_cast<std::int64_t>(u));
    }
    case nlohmann::json::value_t::number_float: return Value::number(j.template get<double>());
    case nlohmann::json::value_t::string: return Value::str(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      jinja::List items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(to_value(x, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Value d = Value::dict();
      d.d->items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it)
        d.d->items.emplace_back(Value::str(it.key()), to_value(it.value(), depth + 1));
      return d;
    }
    default: return Value::none();  // binary / discarded
  }
}

}  // namespace

ChatTemplate::ChatTemplate() = default;
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(const ChatTemplate&) = default;
ChatTemplate& ChatTemplate::operator=(const ChatTemplate&) = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

ChatTemplate ChatTemplate::parse(std::string_view source) { return parse(source, Options{}); }

ChatTemplate ChatTemplate::parse(std::string_view source, const Options& options) {
  ChatTemplate t;
  t.options_ = options;
  t.program_ = jinja::parse_template(source, options);
  return t;
}

std::string ChatTemplate::render(const nlohmann::json& context) const {
  if (!program_) throw TemplateError("no chat template loaded", 500);
  if (!context.is_object()) throw TemplateError("template context must be a JSON object", 400);
  return jinja::render_program(*program_, to_value(context, 0), options_);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  if (!program_) throw TemplateError("no chat template loaded", 500);
  if (!context.is_object()) throw TemplateError("template context must be a JSON object", 400);
  return jinja::render_program(*program_, to_value(context, 0), options_);
}

}  // namespace lmhost
