// The dtype table: ggml type ids with their block sizes and bytes per block.
#include "tensor/types.h"

#include <array>
#include <cctype>
#include <string>

#include "util/error.h"

namespace lmhost {

namespace {

constexpr std::array<DTypeInfo, kDTypeCount> make_table() {
  std::array<DTypeInfo, kDTypeCount> t{};
  for (auto& e : t) e = DTypeInfo{"", 0, 0, false, false};
  auto set = [&](DType d, const char* name, int64_t bs, size_t ts, bool compute) {
    t[static_cast<uint32_t>(d)] = DTypeInfo{name, bs, ts, compute, false};
  };
  set(DType::F32, "F32", 1, 4, true);
  set(DType::F16, "F16", 1, 2, true);
  set(DType::Q4_0, "Q4_0", 32, 18, true);
  set(DType::Q4_1, "Q4_1", 32, 20, true);
  set(DType::Q5_0, "Q5_0", 32, 22, true);
  set(DType::Q5_1, "Q5_1", 32, 24, true);
  set(DType::Q8_0, "Q8_0", 32, 34, true);
  set(DType::Q8_1, "Q8_1", 32, 36, true);
  set(DType::Q2_K, "Q2_K", 256, 84, true);
  set(DType::Q3_K, "Q3_K", 256, 110, true);
  set(DType::Q4_K, "Q4_K", 256, 144, true);
  set(DType::Q5_K, "Q5_K", 256, 176, true);
  set(DType::Q6_K, "Q6_K", 256, 210, true);
  set(DType::Q8_K, "Q8_K", 256, 292, true);
  set(DType::IQ2_XXS, "IQ2_XXS", 256, 66, false);
  set(DType::IQ2_XS, "IQ2_XS", 256, 74, false);
  set(DType::IQ3_XXS, "IQ3_XXS", 256, 98, false);
  set(DType::IQ1_S, "IQ1_S", 256, 50, false);
  set(DType::IQ4_NL, "IQ4_NL", 32, 18, false);
  set(DType::IQ3_S, "IQ3_S", 256, 110, false);
  set(DType::IQ2_S, "IQ2_S", 256, 82, false);
  set(DType::IQ4_XS, "IQ4_XS", 256, 136, false);
  set(DType::I8, "I8", 1, 1, false);
  set(DType::I16, "I16", 1, 2, false);
  set(DType::I32, "I32", 1, 4, false);
  set(DType::I64, "I64", 1, 8, false);
  set(DType::F64, "F64", 1, 8, false);
  set(DType::IQ1_M, "IQ1_M", 256, 56, false);
  set(DType::BF16, "BF16", 1, 2, true);
  set(DType::TQ1_0, "TQ1_0", 256, 54, false);
  set(DType::TQ2_0, "TQ2_0", 256, 66, false);
  // 16 Q4_0 rows interleaved per group: the same bytes per row on average
  set(DType::Q4_0_X16, "Q4_0_X16", 32, 18, true);
  set(DType::Q8_0_X16, "Q8_0_X16", 32, 34, true);
  set(DType::Q6_K_X16, "Q6_K_X16", 256, 210, true);
  set(DType::Q4_K_X16, "Q4_K_X16", 256, 144, true);
  set(DType::Q5_0_X16, "Q5_0_X16", 32, 22, true);
  set(DType::Q5_K_X16, "Q5_K_X16", 256, 176, true);
  for (DType p : {DType::Q4_0_X16, DType::Q8_0_X16, DType::Q6_K_X16, DType::Q4_K_X16, DType::Q5_0_X16, DType::Q5_K_X16})
    t[static_cast<uint32_t>(p)].internal = true;
  return t;
}

constexpr std::array<DTypeInfo, kDTypeCount> kTable = make_table();
constexpr DTypeInfo kUnknown{"", 0, 0, false, false};

}  // namespace

const DTypeInfo& dtype_info(DType t) {
  const uint32_t id = static_cast<uint32_t>(t);
  if (id >= kDTypeCount) return kUnknown;
  return kTable[id];
}

const char* dtype_name(DType t) {
  const DTypeInfo& info = dtype_info(t);
  return info.block_size ? info.name : "unknown";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (uint32_t id = 0; id < kDTypeCount; ++id) {
    const DTypeInfo& info = kTable[id];
    if (!info.block_size || info.internal) continue;
    std::string_view n(info.name);
    if (n.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < n.size() && eq; ++i)
      eq = std::toupper(static_cast<unsigned char>(name[i])) == static_cast<unsigned char>(n[i]);
    if (eq) return static_cast<DType>(id);
  }
  return std::nullopt;
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  if (info.block_size == 0)
    throw Error("unknown tensor type id " + std::to_string(static_cast<uint32_t>(t)));
  if (n < 0 || n % info.block_size != 0)
    throw Error(std::string("row of ") + std::to_string(n) + " elements is not a multiple of the " +
                info.name + " block size " + std::to_string(info.block_size));
  return static_cast<size_t>(n / info.block_size) * info.type_size;
}

}  // namespace lmhost
