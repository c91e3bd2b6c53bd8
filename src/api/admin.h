// The admin API (/admin/*): list, load, unload, remove and hot-swap models,
// set alias weights, reload the configuration. Only the admin key may call it
// (checked by the production middleware, api/production.cpp); slow work
// (loading, warming up) runs on a pool thread, not on an HTTP I/O thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "engine/model_pool.h"
#include "server/http.h"

namespace lmhost::api {

struct AdminOptions {
  // POST /admin/reload: re-reads the configuration and applies its model list
  // and aliases (what SIGHUP does); returns a one-line summary of the changes,
  // throws Error (400) for a bad configuration (the running one stays). Null: 404.
  std::function<std::string()> reload;
};

void register_admin_routes(server::Router& router, std::shared_ptr<ModelPool> pool, AdminOptions options = {});

}  // namespace lmhost::api
