#include "store/store_factory.h"

#include <filesystem>

#include "store/embedded_store.h"
#include "store/etcd_store.h"

namespace berth::store {

Result<StorePtr> OpenStore(std::string_view url, const StoreTls& tls, ClockPtr clock) {
  if (url.rfind("etcd://", 0) == 0) {
    EtcdOptions o;
    std::string_view rest = url.substr(7);
    while (!rest.empty()) {
      auto comma = rest.find(',');
      std::string_view ep = rest.substr(0, comma);
      if (!ep.empty() && ep.back() == '/') ep.remove_suffix(1);
      if (ep.empty() || ep.find(':') == std::string_view::npos) {
        return InvalidArgument("store URL \"" + std::string(url) +
                               "\": each endpoint must be HOST:PORT");
      }
      o.endpoints.emplace_back(ep);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    if (o.endpoints.empty()) {
      return InvalidArgument("store URL \"" + std::string(url) + "\" names no endpoint");
    }
    o.ca_file = tls.ca_file;
    o.cert_file = tls.cert_file;
    o.key_file = tls.key_file;
    return OpenEtcdStore(o);
  }
  EmbeddedOptions o;
  o.clock = std::move(clock);
  if (url == "memory:") {
    o.path = "";
  } else if (url.rfind("embedded:", 0) == 0) {
    std::string dir(url.substr(9));
    if (dir.rfind("//", 0) == 0) dir = dir.substr(2);
    if (dir.empty()) return InvalidArgument("store URL \"embedded:\" needs a directory");
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Unavailable("store directory " + dir + ": " + ec.message());
    o.path = (std::filesystem::path(dir) / "store.db").string();
  } else {
    return InvalidArgument("store URL \"" + std::string(url) +
                           "\": expected etcd://HOST:PORT[,HOST:PORT...], embedded:DIR or "
                           "memory:");
  }
  BERTH_ASSIGN_OR_RETURN(auto store, EmbeddedStore::Open(o));
  return StorePtr(std::move(store));
}

}  // namespace berth::store
