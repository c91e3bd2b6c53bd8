// `lmhost show -m FILE [--json]`: what a GGUF file holds — architecture,
// size, quantization, hyperparameters, tokenizer and chat template.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/command.h"
#include "gguf/gguf.h"
#include "tensor/types.h"
#include "util/error.h"

namespace lmhost::cli {
namespace {

using nlohmann::ordered_json;

const char* file_type_name(int64_t ft) {
  switch (ft) {  // llama.cpp's LLAMA_FTYPE_* numbering (general.file_type)
    case 0: return "F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K_S";
    case 12: return "Q3_K_M";
    case 13: return "Q3_K_L";
    case 14: return "Q4_K_S";
    case 15: return "Q4_K_M";
    case 16: return "Q5_K_S";
    case 17: return "Q5_K_M";
    case 18: return "Q6_K";
    case 19: return "IQ2_XXS";
    case 20: return "IQ2_XS";
    case 21: return "Q2_K_S";
    case 22: return "IQ3_XS";
    case 23: return "IQ3_XXS";
    case 24: return "IQ1_S";
    case 25: return "IQ4_NL";
    case 26: return "IQ3_S";
    case 27: return "IQ3_M";
    case 28: return "IQ2_S";
    case 29: return "IQ2_M";
    case 30: return "IQ4_XS";
    case 31: return "IQ1_M";
    case 32: return "BF16";
    case 36: return "TQ1_0";
    case 37: return "TQ2_0";
    default: return "unknown";
  }
}

ordered_json to_json(const gguf::Value& v, size_t max_array = 16) {
  using gguf::ValueType;
  switch (v.type()) {
    case ValueType::STRING: return std::string(v.as_string());
    case ValueType::BOOL: return v.as_bool();
    case ValueType::FLOAT32: {  // shortest decimal that round-trips the float, not the double
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.9g", v.as_float());
      for (int prec = 6; prec <= 9; ++prec) {
        std::snprintf(buf, sizeof buf, "%.*g", prec, v.as_float());
        if (static_cast<float>(std::strtod(buf, nullptr)) == static_cast<float>(v.as_float())) break;
      }
      return std::strtod(buf, nullptr);
    }
    case ValueType::FLOAT64: return v.as_float();
    case ValueType::UINT64: {
      uint64_t u;
      std::memcpy(&u, v.data_, 8);
      return u;
    }
    case ValueType::ARRAY: {
      if (v.array_size() > max_array)
        return ordered_json{{"type", std::string("array of ") + gguf::value_type_name(v.array_type())},
                            {"count", v.array_size()}};
      ordered_json a = ordered_json::array();
      for (auto& e : v.elements()) a.push_back(to_json(e, max_array));
      return a;
    }
    default: return v.as_int();
  }
}

std::string human_count(uint64_t n) {
  char buf[32];
  if (n >= 1000000000ull) std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1000000ull) std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1000ull) std::snprintf(buf, sizeof buf, "%.2fK", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
  return buf;
}

std::string human_bytes(uint64_t n) {
  char buf[32];
  if (n >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", n / double(1ull << 30));
  else if (n >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", n / double(1ull << 20));
  else if (n >= 1024) std::snprintf(buf, sizeof buf, "%.2f KiB", n / 1024.0);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  return buf;
}

int run_show(const std::string& path, bool as_json) {
  auto f = gguf::File::open(path);
  const gguf::Value* arch_v = f->find("general.architecture");
  const std::string arch = arch_v && arch_v->is_string() ? std::string(arch_v->as_string()) : "";
  auto meta = [&](const std::string& key) -> const gguf::Value* { return f->find(key); };
  auto arch_meta = [&](const std::string& suffix) -> const gguf::Value* {
    return arch.empty() ? nullptr : f->find(arch + "." + suffix);
  };

  uint64_t params = 0, data_bytes = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> hist;  // type -> (tensors, bytes)
  for (auto& t : f->tensors()) {
    params += static_cast<uint64_t>(t.n_elements());
    data_bytes += t.nbytes;
    auto& h = hist[dtype_name(t.type)];
    h.first++;
    h.second += t.nbytes;
  }

  ordered_json j;
  j["file"] = path;
  j["gguf_version"] = f->version();
  j["file_size"] = f->file_size();
  j["architecture"] = arch;
  if (auto v = meta("general.name")) j["name"] = to_json(*v);
  j["parameters"] = params;
  j["tensor_count"] = f->tensors().size();
  if (auto v = meta("general.file_type"); v && v->is_number()) {
    j["file_type"] = {{"id", v->as_int()}, {"name", file_type_name(v->as_int())}};
  }
  ordered_json th = ordered_json::object();
  for (auto& [name, h] : hist) th[name] = {{"tensors", h.first}, {"bytes", h.second}};
  j["tensor_types"] = th;

  ordered_json hp = ordered_json::object();
  const std::pair<const char*, const char*> hp_keys[] = {
      {"context_length", "context_length"},
      {"embedding_length", "embedding_length"},
      {"block_count", "block_count"},
      {"head_count", "attention.head_count"},
      {"head_count_kv", "attention.head_count_kv"},
      {"feed_forward_length", "feed_forward_length"},
      {"key_length", "attention.key_length"},
      {"value_length", "attention.value_length"},
      {"rms_epsilon", "attention.layer_norm_rms_epsilon"},
      {"layer_norm_epsilon", "attention.layer_norm_epsilon"},
      {"vocab_size", "vocab_size"},
      {"expert_count", "expert_count"},
      {"expert_used_count", "expert_used_count"},
  };
  for (auto& [label, suffix] : hp_keys)
    if (auto v = arch_meta(suffix)) hp[label] = to_json(*v);
  j["hyperparameters"] = hp;

  ordered_json rope = ordered_json::object();
  for (auto& e : f->metadata()) {
    const std::string prefix = arch + ".rope.";
    if (!arch.empty() && e.key.rfind(prefix, 0) == 0) rope[e.key.substr(prefix.size())] = to_json(e);
  }
  if (f->tensor("rope_freqs.weight")) rope["rope_freqs_tensor"] = true;
  j["rope"] = rope;

  ordered_json tok = ordered_json::object();
  if (auto v = meta("tokenizer.ggml.model")) tok["model"] = to_json(*v);
  if (auto v = meta("tokenizer.ggml.pre")) tok["pre"] = to_json(*v);
  std::vector<std::string_view> tokens;
  if (auto v = meta("tokenizer.ggml.tokens"); v && v->is_array()) {
    tok["vocab_size"] = v->array_size();
    if (v->array_type() == gguf::ValueType::STRING) tokens = v->as_string_array();
  }
  if (auto v = meta("tokenizer.ggml.merges"); v && v->is_array()) tok["merges"] = v->array_size();
  for (const char* which : {"bos", "eos", "eot", "unknown", "padding"}) {
    if (auto v = meta(std::string("tokenizer.ggml.") + which + "_token_id"); v && v->is_number()) {
      const int64_t id = v->as_int();
      ordered_json t = {{"id", id}};
      if (id >= 0 && static_cast<size_t>(id) < tokens.size()) t["text"] = std::string(tokens[id]);
      tok[which] = t;
    }
  }
  for (const char* flag : {"add_bos_token", "add_eos_token"})
    if (auto v = meta(std::string("tokenizer.ggml.") + flag)) tok[flag] = to_json(*v);
  j["tokenizer"] = tok;
  std::string tmpl;
  if (auto v = meta("tokenizer.chat_template"); v && v->is_string()) tmpl = std::string(v->as_string());
  j["chat_template"] = tmpl.empty() ? ordered_json() : ordered_json(tmpl);

  if (as_json) {
    ordered_json md = ordered_json::object();
    for (auto& e : f->metadata()) md[e.key] = to_json(e);
    j["metadata"] = md;
    std::printf("%s\n", j.dump(2, ' ', false, ordered_json::error_handler_t::replace).c_str());
    return 0;
  }

  auto str = [](const ordered_json& v) {
    return v.is_string() ? v.get<std::string>() : v.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
  };
  std::printf("file:          %s (%s, GGUF v%u)\n", path.c_str(), human_bytes(f->file_size()).c_str(), f->version());
  std::printf("architecture:  %s\n", arch.empty() ? "(none)" : arch.c_str());
  if (j.contains("name")) std::printf("name:          %s\n", str(j["name"]).c_str());
  std::printf("parameters:    %s (%llu)\n", human_count(params).c_str(), static_cast<unsigned long long>(params));
  if (j.contains("file_type"))
    std::printf("file type:     %s (%lld)\n", j["file_type"]["name"].get<std::string>().c_str(),
                static_cast<long long>(j["file_type"]["id"].get<int64_t>()));
  std::printf("tensors:       %zu (%s of data)\n", f->tensors().size(), human_bytes(data_bytes).c_str());
  for (auto& [name, h] : hist)
    std::printf("  %-8s %5llu tensors  %s\n", name.c_str(), static_cast<unsigned long long>(h.first),
                human_bytes(h.second).c_str());
  if (!hp.empty()) {
    std::printf("hyperparameters:\n");
    for (auto& [k, v] : hp.items()) std::printf("  %-20s %s\n", k.c_str(), str(v).c_str());
  }
  if (!rope.empty()) {
    std::printf("rope:\n");
    for (auto& [k, v] : rope.items()) std::printf("  %-20s %s\n", k.c_str(), str(v).c_str());
  }
  if (!tok.empty()) {
    std::printf("tokenizer:\n");
    for (auto& [k, v] : tok.items()) {
      if (v.is_object() && v.contains("id"))
        std::printf("  %-20s %s%s\n", k.c_str(), str(v["id"]).c_str(),
                    v.contains("text") ? (" " + v["text"].dump(-1, ' ', false, ordered_json::error_handler_t::replace)).c_str() : "");
      else
        std::printf("  %-20s %s\n", k.c_str(), str(v).c_str());
    }
  }
  if (!tmpl.empty()) {
    std::printf("chat template (%zu bytes; full text with --json):\n", tmpl.size());
    std::istringstream in(tmpl);
    std::string line;
    int shown = 0;
    while (shown < 8 && std::getline(in, line)) {
      std::printf("  | %s\n", line.c_str());
      ++shown;
    }
    if (in && in.peek() != EOF) std::printf("  | ...\n");
  }
  return 0;
}

const bool registered = register_command({
    "show",
    "Show a GGUF model file's architecture, size, quantization, tokenizer and chat template",
    [](CLI::App& sub) -> std::function<int()> {
      auto path = std::make_shared<std::string>();
      auto json = std::make_shared<bool>(false);
      sub.add_option("-m,--model", *path, "GGUF file")->required();
      sub.add_flag("--json", *json, "Print everything as JSON (full chat template and metadata)");
      return [path, json] { return run_show(*path, *json); };
    },
});

}  // namespace
}  // namespace lmhost::cli
