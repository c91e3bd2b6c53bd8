// OpenAI <-> Ollama translation of proxied requests and responses, so a
// request of either API flavour can be served by an upstream of the other:
//
//   client                      Ollama upstream            OpenAI upstream
//   POST /v1/chat/completions   /api/chat                  (as is)
//   POST /v1/completions        /api/generate (raw)        (as is)
//   POST /v1/embeddings         /api/embed                 (as is)
//   POST /api/chat              (as is)                    /v1/chat/completions
//   POST /api/generate          (as is)                    /v1/chat/completions (templated prompt),
//                                                          /v1/completions (raw: true)
//   POST /api/embed             (as is)                    /v1/embeddings
//   POST /api/embeddings        (as is)                    /v1/embeddings
//
// Responses come back in the client's shape: JSON bodies, and streams
// (Ollama NDJSON <-> OpenAI SSE) line by line as they arrive, with token
// counts (usage <-> prompt_eval_count / eval_count), finish / done reasons
// and tool calls. A request that cannot be expressed for the other flavour
// (token-array prompts, n > 1, an Ollama 'context') is not translated: only
// upstreams of its own flavour can take it. An upstream's model may be
// exposed under another name: requests carry the upstream's name, responses
// the client's.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "gateway/upstream.h"

namespace lmhost::gateway {

enum class Endpoint { OpenAIChat, OpenAICompletions, OpenAIEmbeddings, OllamaChat, OllamaGenerate, OllamaEmbed, OllamaEmbeddings };

bool is_openai(Endpoint e);
bool is_embedding(Endpoint e);
const char* endpoint_path(Endpoint e);                          // "/v1/chat/completions", ...
std::optional<Endpoint> endpoint_of_path(const std::string& path);

struct UpstreamRequest {
  bool ok = false;
  std::string why;  // when !ok: why this request has no form for that upstream
  Endpoint target = Endpoint::OpenAIChat;
  nlohmann::json body;
};

// The request to send to an upstream of `kind` for a client request of
// endpoint `client` with JSON `body`; `remote_model` replaces the model name
// (the upstream's own name for it). `stream` is the client's (defaults applied).
UpstreamRequest translate_request(Endpoint client, const nlohmann::json& body, UpstreamKind kind,
                                  const std::string& remote_model, bool stream);

// Turns the upstream's body into the client's: feed() as bytes arrive, finish() at the end.
class BodyTransform {
 public:
  virtual ~BodyTransform() = default;
  virtual std::string feed(const std::string& chunk) { return chunk; }
  virtual std::string finish() { return ""; }
};

struct ResponseMeta {
  std::string request_id;   // ids: "chatcmpl-" / "cmpl-" + this
  std::string model;        // the name the client asked for
  int64_t created = 0;      // OpenAI "created" (0: now)
  std::string created_at;   // Ollama "created_at" (empty: now)
  bool include_usage = false;  // OpenAI stream_options.include_usage of the client
  bool base64 = false;         // OpenAI encoding_format "base64" of the client
};

struct ResponsePlan {
  std::string content_type;  // empty: the upstream's
  std::unique_ptr<BodyTransform> transform;
};

// How the upstream's answer (to a request of endpoint `target`, HTTP `status`)
// becomes the client's: errors carry the upstream's message in the client's
// error shape; `rename`: same flavour, but the model field must show meta.model.
ResponsePlan response_plan(Endpoint client, Endpoint target, bool stream, int status, const ResponseMeta& meta,
                           bool rename);

// The whole of a body through response_plan (tests, non-streamed answers).
std::string translate_response(Endpoint client, Endpoint target, bool stream, int status, const ResponseMeta& meta,
                               const std::string& body, bool rename = false);

}  // namespace lmhost::gateway
