#include "observe/log.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace lmhost::observe {

namespace {
std::mutex g_sink_mu;

// Length of a valid UTF-8 sequence starting at s[i], 0 if invalid.
size_t utf8_len(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  if (n == 2 && c < 0xc2) return 0;  // overlong
  return n;
}

std::string now_rfc3339() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}
}  // namespace

const char* level_name(Level l) {
  switch (l) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warn: return "warn";
    case Level::Error: return "error";
  }
  return "info";
}

bool parse_level(std::string_view s, Level& out) {
  std::string l(s);
  for (auto& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "debug" || l == "trace") out = Level::Debug;
  else if (l == "info") out = Level::Info;
  else if (l == "warn" || l == "warning") out = Level::Warn;
  else if (l == "error" || l == "critical") out = Level::Error;
  else return false;
  return true;
}

std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    const size_t n = utf8_len(s, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  out.push_back('"');
  return out;
}

std::string format_line(Level level, std::string_view msg, const Fields& fields) {
  std::string line = "{\"time\":\"" + now_rfc3339() + "\",\"level\":\"" + level_name(level) + "\",\"msg\":" +
                     json_string(msg);
  for (const auto& f : fields) {
    line += "," + json_string(f.key) + ":";
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, std::nullptr_t>) line += "null";
          else if constexpr (std::is_same_v<V, std::string>) line += json_string(v);
          else if constexpr (std::is_same_v<V, bool>) line += v ? "true" : "false";
          else if constexpr (std::is_same_v<V, int64_t>) line += std::to_string(v);
          else {
            if (!std::isfinite(v)) {
              line += "null";
            } else {
              char buf[32];
              std::snprintf(buf, sizeof buf, "%.3f", v);
              line += buf;
            }
          }
        },
        f.value);
  }
  line += "}\n";
  return line;
}

Logger& Logger::global() {
  static Logger l;
  return l;
}

void Logger::set_sink(std::function<void(const std::string&)> sink) {
  std::lock_guard lk(g_sink_mu);
  sink_ = std::move(sink);
}

void Logger::log(Level l, std::string_view msg, const Fields& fields) {
  if (!enabled(l)) return;
  const std::string line = format_line(l, msg, fields);
  std::lock_guard lk(g_sink_mu);
  if (sink_) {
    sink_(line);
    return;
  }
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::write(2, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
}

}  // namespace lmhost::observe
