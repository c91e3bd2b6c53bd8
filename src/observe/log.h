// Structured logs: one JSON object per line on stderr (or a sink set by
// tests), with "time" (RFC 3339 UTC, milliseconds), "level" and "msg" first,
// then the fields in the order given. LOG_LEVEL sets the least severe level
// written. Thread-safe; a line is written with a single write.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace lmhost::observe {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };
const char* level_name(Level l);  // "debug", "info", "warn", "error"
// "debug", "info", "warn"/"warning", "error" (any case); false when unknown.
bool parse_level(std::string_view s, Level& out);

struct Field {
  using Value = std::variant<std::nullptr_t, std::string, int64_t, double, bool>;
  std::string key;
  Value value;
  Field(std::string k, std::string v) : key(std::move(k)), value(std::move(v)) {}
  Field(std::string k, const char* v) : key(std::move(k)), value(std::string(v ? v : "")) {}
  Field(std::string k, std::string_view v) : key(std::move(k)), value(std::string(v)) {}
  Field(std::string k, int v) : key(std::move(k)), value(static_cast<int64_t>(v)) {}
  Field(std::string k, int64_t v) : key(std::move(k)), value(v) {}
  Field(std::string k, uint64_t v) : key(std::move(k)), value(static_cast<int64_t>(v)) {}
  Field(std::string k, double v) : key(std::move(k)), value(v) {}
  Field(std::string k, bool v) : key(std::move(k)), value(v) {}
  Field(std::string k, std::nullptr_t) : key(std::move(k)), value(nullptr) {}
};
using Fields = std::vector<Field>;

// The JSON line (with trailing '\n') for these parts.
std::string format_line(Level level, std::string_view msg, const Fields& fields);
// JSON string literal with escapes; invalid UTF-8 bytes become U+FFFD.
std::string json_string(std::string_view s);

class Logger {
 public:
  static Logger& global();
  void set_level(Level l) { level_.store(l); }
  Level level() const { return level_.load(); }
  bool enabled(Level l) const { return static_cast<int>(l) >= static_cast<int>(level_.load(std::memory_order_relaxed)); }
  // Replaces stderr (tests); nullptr restores it.
  void set_sink(std::function<void(const std::string& line)> sink);
  void log(Level l, std::string_view msg, const Fields& fields = {});

 private:
  std::atomic<Level> level_{Level::Info};
  std::function<void(const std::string&)> sink_;
};

inline void log_debug(std::string_view msg, const Fields& f = {}) { Logger::global().log(Level::Debug, msg, f); }
inline void log_info(std::string_view msg, const Fields& f = {}) { Logger::global().log(Level::Info, msg, f); }
inline void log_warn(std::string_view msg, const Fields& f = {}) { Logger::global().log(Level::Warn, msg, f); }
inline void log_error(std::string_view msg, const Fields& f = {}) { Logger::global().log(Level::Error, msg, f); }

}  // namespace lmhost::observe
