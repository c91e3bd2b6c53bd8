// Streaming detokenizer: emits only complete, well-formed UTF-8.
#include <algorithm>

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_util.h"

namespace lmhost {

namespace {

// Moves the longest well-formed prefix of `pending` to the result; a byte
// that can never start or continue a valid sequence becomes U+FFFD; an
// incomplete sequence at the end stays pending unless `final`.
std::string drain(std::string& pending, bool final) {
  std::string out;
  size_t i = 0;
  while (i < pending.size()) {
    int n = tok::utf8_sequence_status(std::string_view(pending).substr(i));
    if (n > 0) {
      out.append(pending, i, size_t(n));
      i += size_t(n);
    } else if (n < 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {  // incomplete
      if (!final) break;
      out += "\xEF\xBF\xBD";
      ++i;
      // the rest of the incomplete sequence are continuation bytes: each is invalid alone
    }
  }
  pending.erase(0, i);
  return out;
}

}  // namespace

std::string StreamDecoder::push(Token id) {
  std::string piece;
  const bool render_special = render_special_ || std::find(keep_.begin(), keep_.end(), id) != keep_.end();
  if (first_) {
    // decode() knows whether the tokenizer drops a leading space at the
    // start of the text; a leading BOS keeps us at the start.
    const Token one[1] = {id};
    piece = tok_.decode(std::span<const Token>(one, 1), render_special);
    first_ = (id == tok_.bos());
  } else {
    piece = tok_.token_to_piece(id, render_special);
  }
  pending_ += piece;
  return drain(pending_, false);
}

std::string StreamDecoder::flush() {
  std::string out = drain(pending_, true);
  pending_.clear();
  return out;
}

}  // namespace lmhost
