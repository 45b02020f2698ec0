// Fuzz target for the API's token check (src/acl/), which reads the Authorization header of
// every request from anyone who reaches the API. One in-memory store holds one real token.
//   first byte % 3 == 0: the rest is the Authorization header, as sent.
//   first byte % 3 == 1: the rest edits the real token (pairs of position, byte; a position
//                        past the end appends): the result must let the caller in exactly when
//                        it is the real token again, never for a near miss.
//   first byte % 3 == 2: the rest is a token record as the store would hand it back
//                        (TokenRecord::FromJson); whatever parses must be usable.
// Nothing may crash, and a header that is not the real token must be refused with 401.
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "acl/access_control.h"
#include "store/embedded_store.h"

using berth::acl::AccessControl;
using berth::acl::Permission;
using berth::acl::Policy;
using berth::acl::TokenRecord;

namespace {

struct World {
  std::unique_ptr<berth::store::EmbeddedStore> store;
  std::unique_ptr<AccessControl> ac;
  std::string token;
};

World& TheWorld() {
  static World* w = [] {
    spdlog::set_level(spdlog::level::off);  // refusals are logged; not the point here
    auto* world = new World;
    berth::store::EmbeddedOptions o;
    o.expiry_thread = false;
    o.sync = false;
    world->store = std::move(*berth::store::EmbeddedStore::Open(o));
    AccessControl::Options ao;
    ao.clock = std::make_shared<berth::ManualClock>();
    ao.limits.max_failures = 0;  // every input gets the full check, not a 429
    world->ac = std::make_unique<AccessControl>(*world->store, berth::store::Keys("/fuzz/"), ao);
    auto made = world->ac->tokens().Create("fuzz", Policy::kRead, "");
    if (!made.ok()) std::abort();
    world->token = made->token;
    return world;
  }();
  return *w;
}

void CheckHeader(World& w, const std::string& header, bool must_pass) {
  auto v = w.ac->Check(header, "127.0.0.1:1", Permission::Read(), "", "GET /v1/jobs");
  if (must_pass && !v.allowed()) std::abort();
  if (!v.allowed()) {
    if (v.status.code() != berth::Code::kUnauthenticated) std::abort();
    // The refusal never echoes the secret half of the real token.
    std::string secret = w.token.substr(w.token.find('.') + 1);
    if (v.status.message().find(secret) != std::string::npos) std::abort();
  } else if (v.caller.name != "fuzz" || v.caller.policy != Policy::kRead) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  World& w = TheWorld();
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      std::string header(in);
      auto v = w.ac->Check(header, "127.0.0.1:1", Permission::Read(), "", "GET /v1/jobs");
      if (!v.allowed() && v.status.code() != berth::Code::kUnauthenticated) std::abort();
      break;
    }
    case 1: {
      std::string token = w.token;
      for (size_t i = 0; i + 1 < in.size(); i += 2) {
        size_t pos = static_cast<unsigned char>(in[i]);
        if (pos < token.size()) {
          token[pos] = in[i + 1];
        } else {
          token.push_back(in[i + 1]);
        }
      }
      CheckHeader(w, "Bearer " + token, token == w.token);
      break;
    }
    default: {
      auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) break;
      auto r = TokenRecord::FromJson(j, "acl/tokens/x");
      if (r.ok()) {
        (void)r->ToJson(true);
        (void)r->ToCaller();
      }
      break;
    }
  }
  return 0;
}
