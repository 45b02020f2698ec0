#include "router/route_table.h"

#include <arpa/inet.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "router/http_parser.h"

namespace berth::router {

namespace {

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && http::EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

bool ValidPathPrefix(std::string_view p) {
  if (p.empty() || p[0] != '/') return false;
  for (char c : p) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '?' || c == '#') return false;
  }
  return true;
}

}  // namespace

Result<std::string> NormalizeHostPattern(std::string_view host) {
  if (host == "*") return std::string("*");
  bool wildcard = host.substr(0, 2) == "*.";
  if (wildcard) host.remove_prefix(2);
  char buf[256];
  size_t n = NormalizeHost(host, buf);
  if (n == 0) return InvalidArgument("malformed host \"" + std::string(host) + "\"");
  return (wildcard ? "*." : "") + std::string(buf, n);
}

size_t NormalizeHost(std::string_view raw, char (&out)[256]) {
  std::string_view h = raw;
  if (!h.empty() && h[0] == '[') {
    size_t close = h.find(']');
    if (close == std::string_view::npos) return 0;
    std::string_view rest = h.substr(close + 1);
    if (!rest.empty() && rest[0] != ':') return 0;
    h = h.substr(0, close + 1);
  } else if (size_t colon = h.rfind(':'); colon != std::string_view::npos) {
    for (char c : h.substr(colon + 1)) {
      if (c < '0' || c > '9') return 0;
    }
    h = h.substr(0, colon);
  }
  if (!h.empty() && h.back() == '.') h.remove_suffix(1);
  if (h.empty() || h.size() > 255) return 0;
  for (size_t i = 0; i < h.size(); ++i) {
    auto c = static_cast<unsigned char>(h[i]);
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
              c == '_' || c == '[' || c == ']' || c == ':';
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<unsigned char>(c + 32);
      ok = true;
    }
    if (!ok) return 0;
    out[i] = static_cast<char>(c);
  }
  return h.size();
}

Result<BackendAddress> ParseBackendUrl(std::string_view url) {
  std::string_view u = url;
  if (StartsWithIgnoreCase(u, "http://")) {
    u.remove_prefix(7);
  } else if (u.find("://") != std::string_view::npos) {
    return InvalidArgument("backend \"" + std::string(url) + "\": only http:// is supported");
  }
  size_t slash = u.find('/');
  if (slash != std::string_view::npos) {
    if (u.substr(slash) != "/") {
      return InvalidArgument("backend \"" + std::string(url) + "\": a path is not supported");
    }
    u = u.substr(0, slash);
  }
  std::string_view host = u;
  std::string_view port_str;
  bool has_port = false;
  if (!u.empty() && u[0] == '[') {
    size_t close = u.find(']');
    if (close == std::string_view::npos) return InvalidArgument("backend: malformed IPv6 address");
    host = u.substr(1, close - 1);
    std::string_view rest = u.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return InvalidArgument("backend: malformed address");
      port_str = rest.substr(1);
      has_port = true;
    }
  } else if (size_t colon = u.rfind(':'); colon != std::string_view::npos) {
    host = u.substr(0, colon);
    port_str = u.substr(colon + 1);
    has_port = true;
  }
  int port = 80;
  if (has_port) {
    if (port_str.empty() || port_str.size() > 5) return InvalidArgument("backend: malformed port");
    port = 0;
    for (char c : port_str) {
      if (c < '0' || c > '9') return InvalidArgument("backend: malformed port");
      port = port * 10 + (c - '0');
    }
    if (port < 1 || port > 65535) return InvalidArgument("backend: port out of range");
  }
  BackendAddress a;
  std::string h(host);
  if (http::EqualsIgnoreCase(h, "localhost")) h = "127.0.0.1";
  unsigned char tmp[16];
  if (inet_pton(AF_INET, h.c_str(), tmp) == 1) {
    a.address = h + ":" + std::to_string(port);
  } else if (inet_pton(AF_INET6, h.c_str(), tmp) == 1) {
    a.address = "[" + h + "]:" + std::to_string(port);
  } else {
    return InvalidArgument("backend \"" + std::string(url) +
                           "\": the host must be an IP address or localhost");
  }
  a.ip = std::move(h);
  a.port = static_cast<uint16_t>(port);
  return a;
}

Result<RouteSpec> ParseRoute(std::string_view host_and_id, std::string_view json) {
  size_t slash = host_and_id.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == host_and_id.size() ||
      host_and_id.find('/', slash + 1) != std::string_view::npos) {
    return InvalidArgument("route key must be routes/<host>/<route-id>");
  }
  RouteSpec spec;
  BERTH_ASSIGN_OR_RETURN(spec.host, NormalizeHostPattern(host_and_id.substr(0, slash)));
  spec.id = std::string(host_and_id.substr(slash + 1));
  auto j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return InvalidArgument("route value is not a JSON object");
  auto backend = j.find("backend");
  if (backend == j.end() || !backend->is_string()) {
    return InvalidArgument("route has no \"backend\" string");
  }
  spec.backend = backend->get<std::string>();
  BERTH_RETURN_IF_ERROR(ParseBackendUrl(spec.backend).status());
  spec.path_prefix = "/";
  if (auto p = j.find("path_prefix"); p != j.end()) {
    if (!p->is_string() || !ValidPathPrefix(p->get<std::string>())) {
      return InvalidArgument("route \"path_prefix\" must be a path starting with /");
    }
    spec.path_prefix = p->get<std::string>();
    while (spec.path_prefix.size() > 1 && spec.path_prefix.back() == '/') {
      spec.path_prefix.pop_back();
    }
  }
  if (auto b = j.find("balance"); b != j.end()) {
    std::string v = b->is_string() ? b->get<std::string>() : "";
    if (v == "round_robin") {
      spec.balance = Balance::kRoundRobin;
    } else if (v == "least_conn" || v == "least_connections") {
      spec.balance = Balance::kLeastConnections;
    } else {
      return InvalidArgument("route \"balance\" must be round_robin or least_conn");
    }
    spec.balance_set = true;
  }
  return spec;
}

const RouteGroup* HostEntry::Match(std::string_view path) const {
  for (const auto& g : groups) {
    const std::string& p = g->prefix;
    if (p.size() == 1) return g.get();  // "/"
    if (path.size() >= p.size() && path.compare(0, p.size(), p) == 0 &&
        (path.size() == p.size() || path[p.size()] == '/' || path[p.size()] == '?')) {
      return g.get();
    }
  }
  return nullptr;
}

const RouteGroup* RouteTable::Match(std::string_view host, std::string_view path) const {
  if (const HostEntry* e = exact_.Find(host)) {
    if (const RouteGroup* g = e->Match(path)) return g;
  }
  if (!wildcard_.empty()) {
    for (size_t dot = host.find('.'); dot != std::string_view::npos;
         dot = host.find('.', dot + 1)) {
      if (const HostEntry* e = wildcard_.Find(host.substr(dot + 1))) {
        if (const RouteGroup* g = e->Match(path)) return g;
      }
    }
  }
  if (any_) return any_->Match(path);
  return nullptr;
}

RouteTableBuilder::RouteTableBuilder(std::string routes_prefix, std::string default_backend)
    : prefix_(std::move(routes_prefix)), default_backend_(std::move(default_backend)) {}

bool RouteTableBuilder::Parse(const store::KeyValue& kv, RouteSpec* spec) {
  std::string_view key = kv.key;
  Result<RouteSpec> r = key.substr(0, prefix_.size()) == prefix_
                            ? ParseRoute(key.substr(prefix_.size()), kv.value)
                            : Result<RouteSpec>(InvalidArgument("not a route key"));
  if (!r.ok()) {
    ++rejected_;
    last_error_ = kv.key + ": " + r.status().message();
    return false;
  }
  *spec = std::move(r).value();
  return true;
}

BackendPtr RouteTableBuilder::GetBackend(const BackendAddress& addr) {
  auto& slot = backends_[addr.address];
  if (auto b = slot.lock()) return b;
  auto b = std::make_shared<Backend>();
  b->id = next_backend_id_++;
  b->address = addr.address;
  b->ip = addr.ip;
  b->port = addr.port;
  slot = b;
  return b;
}

HostEntryPtr RouteTableBuilder::BuildHost(const std::map<std::string, RouteSpec>& routes) {
  auto entry = std::make_shared<HostEntry>();
  std::map<std::string, RouteGroup*> by_prefix;
  for (const auto& [key, spec] : routes) {
    RouteGroup*& g = by_prefix[spec.path_prefix];
    if (g == nullptr) {
      entry->groups.push_back(std::make_unique<RouteGroup>());
      g = entry->groups.back().get();
      g->prefix = spec.path_prefix;
      g->balance = spec.balance;
    } else if (spec.balance_set) {
      g->balance = spec.balance;
    }
    auto addr = ParseBackendUrl(spec.backend);
    if (addr.ok()) g->backends.push_back(GetBackend(*addr));
  }
  std::stable_sort(entry->groups.begin(), entry->groups.end(), [](const auto& a, const auto& b) {
    return a->prefix.size() > b->prefix.size();
  });
  return entry;
}

void ShardedHostMap::Set(const std::string& host, HostEntryPtr entry, Copied& copied) {
  size_t i = ShardOf(host);
  auto& shard = shards_[i];
  if (!copied[i]) {
    shard = shard ? std::make_shared<HostMap>(*shard) : std::make_shared<HostMap>();
    copied[i] = true;
  }
  size_t before = shard->size();
  if (entry) {
    (*shard)[host] = std::move(entry);
  } else {
    shard->erase(host);
  }
  size_ = size_ + shard->size() - before;
}

void RouteTableBuilder::SetHost(RouteTable& t, const std::string& host, HostEntryPtr entry,
                                ShardedHostMap::Copied& exact_copied,
                                ShardedHostMap::Copied& wildcard_copied) {
  if (host == "*") {
    t.any_ = std::move(entry);
  } else if (host.substr(0, 2) == "*.") {
    t.wildcard_.Set(host.substr(2), std::move(entry), wildcard_copied);
  } else {
    t.exact_.Set(host, std::move(entry), exact_copied);
  }
}

void RouteTableBuilder::AddDefault(RouteTable& t) {
  if (t.any_ || default_backend_.empty()) return;
  RouteSpec spec;
  spec.host = "*";
  spec.backend = default_backend_;
  spec.path_prefix = "/";
  t.any_ = BuildHost({{"", spec}});
}

RouteTablePtr RouteTableBuilder::Reset(const store::RangeResult& listing) {
  hosts_.clear();
  key_host_.clear();
  routes_ = 0;
  for (const auto& kv : listing.kvs) {
    RouteSpec spec;
    if (!Parse(kv, &spec)) continue;
    key_host_[kv.key] = spec.host;
    hosts_[spec.host][kv.key] = std::move(spec);
    ++routes_;
  }
  auto t = std::make_shared<RouteTable>();
  ShardedHostMap::Copied exact(ShardedHostMap::kShards), wildcard(ShardedHostMap::kShards);
  for (const auto& [host, routes] : hosts_) {
    SetHost(*t, host, BuildHost(routes), exact, wildcard);
  }
  AddDefault(*t);
  t->routes_ = routes_;
  t->revision_ = listing.revision;
  last_ = t;
  // Forget backends no snapshot refers to any more.
  std::erase_if(backends_, [](const auto& kv) { return kv.second.expired(); });
  return t;
}

RouteTablePtr RouteTableBuilder::Apply(const std::vector<store::Event>& events) {
  if (!last_) return Reset({});
  auto t = std::make_shared<RouteTable>(*last_);
  ShardedHostMap::Copied exact(ShardedHostMap::kShards), wildcard(ShardedHostMap::kShards);
  std::set<std::string> touched;
  for (const auto& ev : events) {
    const std::string& key = ev.kv.key;
    if (auto it = key_host_.find(key); it != key_host_.end()) {
      auto h = hosts_.find(it->second);
      if (h != hosts_.end() && h->second.erase(key) > 0) --routes_;
      touched.insert(it->second);
      key_host_.erase(it);
    }
    if (ev.type == store::Event::Type::kPut) {
      RouteSpec spec;
      if (!Parse(ev.kv, &spec)) continue;
      touched.insert(spec.host);
      key_host_[key] = spec.host;
      hosts_[spec.host][key] = std::move(spec);
      ++routes_;
    }
    t->revision_ = std::max(t->revision_, ev.kv.mod_revision);
  }
  for (const auto& host : touched) {
    auto h = hosts_.find(host);
    if (h == hosts_.end() || h->second.empty()) {
      if (h != hosts_.end()) hosts_.erase(h);
      SetHost(*t, host, nullptr, exact, wildcard);
    } else {
      SetHost(*t, host, BuildHost(h->second), exact, wildcard);
    }
  }
  AddDefault(*t);
  t->routes_ = routes_;
  last_ = t;
  if (backends_.size() > 2 * routes_ + 64) {
    std::erase_if(backends_, [](const auto& kv) { return kv.second.expired(); });
  }
  return t;
}

RouteTableHolder::RouteTableHolder() : table_(std::make_shared<RouteTable>()) {}

void RouteTableHolder::Publish(RouteTablePtr table) {
  {
    std::lock_guard lock(mu_);
    table_ = std::move(table);
  }
  version_.fetch_add(1, std::memory_order_acq_rel);
}

RouteTablePtr RouteTableHolder::Get() const {
  std::lock_guard lock(mu_);
  return table_;
}

}  // namespace berth::router
