// Small UTF-8 / Unicode helpers shared by the tokenizers (internal).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lmhost::tok {

// Byte length of the UTF-8 sequence a lead byte announces (1 for stray
// continuation bytes), as SentencePiece splits text into characters.
inline size_t utf8_len(unsigned char lead) {
  static constexpr uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lut[lead >> 4];
}

void append_utf8(std::string& out, uint32_t cp);

// Decodes UTF-8 leniently: each byte that does not start a well-formed
// sequence becomes U+FFFD (the byte is consumed alone). Surrogates and
// values above U+10FFFF also become U+FFFD.
std::vector<uint32_t> decode_utf8(std::string_view s);

// True when s is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF).
bool is_valid_utf8(std::string_view s);
// s with every ill-formed byte replaced by U+FFFD.
std::string sanitize_utf8(std::string_view s);

// Length of the complete, well-formed UTF-8 sequence starting at s[0]:
//   > 0  complete sequence of that many bytes
//   0    a valid but incomplete prefix (needs more bytes)
//   -1   invalid at s[0] (replace one byte with U+FFFD)
int utf8_sequence_status(std::string_view s);

// GPT-2 byte-level mapping: byte -> code point, and its inverse.
const std::array<uint32_t, 256>& byte_to_cp();
int cp_to_byte(uint32_t cp);  // -1 when cp is not one of the 256

// Character classes as llama.cpp's unicode tables define them.
bool cp_is_whitespace(uint32_t cp);

}  // namespace lmhost::tok
