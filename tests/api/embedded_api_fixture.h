// A fixture for API route tests: the API's routes on a loopback HttpServer over an embedded
// store (no expiry thread), with an access control that lets everyone in, and the CLI's API
// client pointed at it. A derived fixture names its key prefix, may add to the context, and may
// put a store of its own in front of the embedded one (Front()).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>

#include "acl/access_control.h"
#include "api/api_service.h"
#include "api/http_server.h"
#include "cli/api_client.h"
#include "common/clock.h"
#include "jobs/job_registry.h"
#include "store/embedded_store.h"

namespace berth::api::testing {

class EmbeddedApiFixture : public ::testing::Test {
 protected:
  explicit EmbeddedApiFixture(std::string key_prefix) : keys_(std::move(key_prefix)) {}

  void SetUp() override {
    store::EmbeddedOptions o;
    o.expiry_thread = false;
    store_ = std::move(*store::EmbeddedStore::Open(o));
    store::Store& front = Front();
    registry_ = std::make_unique<jobs::JobRegistry>(front, keys_, SystemClock::Shared());
    server_ = std::make_unique<HttpServer>(HttpServer::Options{});
    ApiContext ctx;
    ctx.store = &front;
    ctx.keys = keys_;
    ctx.jobs = registry_.get();
    ctx.version = "test";
    // These tests are about what the routes do: an access control that lets everyone in
    // (tests/api/acl_api_test.cc is about who gets in).
    ctx.access = std::make_shared<acl::AccessControl>(
        front, keys_, acl::AccessControl::Options{.enforce = false});
    Customize(ctx);
    RegisterApiRoutes(*server_, ctx);
    ASSERT_TRUE(server_->Start().ok());
    client_ = std::make_unique<cli::ApiClient>("127.0.0.1:" + std::to_string(server_->port()));
  }
  void TearDown() override { server_->Stop(); }
  // Lets a derived fixture add to the context before the routes are registered.
  virtual void Customize(ApiContext&) {}
  // The store the API, its access control and the job registry use: the embedded store itself,
  // unless a derived fixture wraps it (called once, in SetUp, after store_ is open).
  virtual store::Store& Front() { return *store_; }

  store::Keys keys_;
  std::unique_ptr<store::EmbeddedStore> store_;
  std::unique_ptr<jobs::JobRegistry> registry_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<cli::ApiClient> client_;
};

}  // namespace berth::api::testing
