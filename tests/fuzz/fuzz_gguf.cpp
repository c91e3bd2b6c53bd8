// libFuzzer target: any byte string either parses as GGUF or throws
// lmhost::Error; nothing else (crash, other exception, sanitizer report).
#include <cstddef>
#include <cstdint>

#include "gguf/gguf.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = lmhost::gguf::File::from_bytes(data, size, "fuzz.gguf");
    for (const auto& kv : f->metadata()) {
      (void)kv.to_display_string();
      if (kv.is_array()) {
        for (const auto& el : kv.elements()) (void)el.to_display_string(2);
        if (kv.array_type() == lmhost::gguf::ValueType::STRING) (void)kv.as_string_array();
      }
    }
    volatile uint8_t sink = 0;
    for (const auto& t : f->tensors()) {
      if (t.nbytes) sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];
      (void)t.view();
    }
    if (auto a = f->find("general.architecture"); a && a->is_string()) (void)f->get_arch_int("block_count");
  } catch (const lmhost::Error&) {
  }
  return 0;
}
