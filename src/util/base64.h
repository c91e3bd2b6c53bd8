// Standard base64 (RFC 4648, '+' '/' and '=' padding) of raw bytes: the
// OpenAI embeddings API's encoding_format "base64" (little-endian float32s).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lmhost {

inline std::string base64_encode(const void* data, size_t n) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const uint8_t*>(data);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t x = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    out += tbl[x >> 18], out += tbl[(x >> 12) & 63], out += tbl[(x >> 6) & 63], out += tbl[x & 63];
  }
  if (i + 1 == n) {
    const uint32_t x = p[i] << 16;
    out += tbl[x >> 18], out += tbl[(x >> 12) & 63], out += "==";
  } else if (i + 2 == n) {
    const uint32_t x = (p[i] << 16) | (p[i + 1] << 8);
    out += tbl[x >> 18], out += tbl[(x >> 12) & 63], out += tbl[(x >> 6) & 63], out += '=';
  }
  return out;
}

}  // namespace lmhost
