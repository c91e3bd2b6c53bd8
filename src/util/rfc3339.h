// Timestamps as Ollama writes them: RFC 3339 in UTC with nanoseconds,
// e.g. "2024-05-01T12:00:00.123456789Z".
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace lmhost {

inline std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(ns % 1000000000));
  return buf;
}
inline std::string rfc3339_now() { return rfc3339(std::chrono::system_clock::now()); }

}  // namespace lmhost
