#include "router/hipache_import.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "router/route_table.h"

namespace berth::router {

namespace {

constexpr std::string_view kFrontendPrefix = "frontend:";

// A decimal integer, optionally negative, that fits in int64_t.
std::optional<int64_t> ParseInteger(std::string_view s) {
  bool negative = !s.empty() && s[0] == '-';
  if (negative) s.remove_prefix(1);
  if (s.empty() || s.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return negative ? -v : v;
}

std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) {
    auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  if (s.size() > 64) out += "...";
  return out;
}

}  // namespace

std::string EncodeRespCommand(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out += a;
    out += "\r\n";
  }
  return out;
}

Result<std::optional<RespValue>> RespParser::Parse(std::string_view buf, size_t* consumed) const {
  size_t pos = 0;
  *consumed = 0;
  auto v = ParseAt(buf, &pos, 0);
  if (!v.ok()) return v.status();
  if (*v) *consumed = pos;
  return v;
}

Result<std::optional<std::string_view>> RespParser::Line(std::string_view buf, size_t* pos) const {
  size_t end = buf.find("\r\n", *pos);
  if (end == std::string_view::npos) {
    if (buf.size() - *pos > limits_.max_line_bytes) {
      return InvalidArgument("redis reply: a line longer than " +
                             std::to_string(limits_.max_line_bytes) + " bytes");
    }
    return std::optional<std::string_view>();
  }
  std::string_view line = buf.substr(*pos, end - *pos);
  if (line.find_first_of("\r\n") != std::string_view::npos) {
    return InvalidArgument("redis reply: a bare CR or LF in a line");
  }
  *pos = end + 2;
  return std::optional<std::string_view>(line);
}

Result<std::optional<RespValue>> RespParser::ParseAt(std::string_view buf, size_t* pos,
                                                     int depth) const {
  using Incomplete = std::optional<RespValue>;
  if (*pos >= buf.size()) return Incomplete();
  const char type = buf[*pos];
  size_t p = *pos + 1;
  auto line = Line(buf, &p);
  if (!line.ok()) return line.status();
  if (!*line) return Incomplete();
  RespValue v;
  switch (type) {
    case '+':
      v.type = RespValue::Type::kSimpleString;
      v.str = std::string(**line);
      break;
    case '-':
      v.type = RespValue::Type::kError;
      v.str = std::string(**line);
      break;
    case ':': {
      auto n = ParseInteger(**line);
      if (!n)
        return InvalidArgument("redis reply: malformed integer \"" + Printable(**line) + "\"");
      v.type = RespValue::Type::kInteger;
      v.integer = *n;
      break;
    }
    case '$': {
      auto n = ParseInteger(**line);
      if (!n || *n < -1) {
        return InvalidArgument("redis reply: malformed bulk length \"" + Printable(**line) + "\"");
      }
      if (*n == -1) {
        v.type = RespValue::Type::kNull;
        break;
      }
      if (*n > limits_.max_bulk_bytes) {
        return InvalidArgument("redis reply: a bulk string of " + std::to_string(*n) +
                               " bytes (the limit is " + std::to_string(limits_.max_bulk_bytes) +
                               ")");
      }
      auto len = static_cast<size_t>(*n);
      if (buf.size() - p < len + 2) return Incomplete();
      if (buf.substr(p + len, 2) != "\r\n") {
        return InvalidArgument("redis reply: a bulk string not followed by CRLF");
      }
      v.type = RespValue::Type::kBulkString;
      v.str = std::string(buf.substr(p, len));
      p += len + 2;
      break;
    }
    case '*': {
      auto n = ParseInteger(**line);
      if (!n || *n < -1) {
        return InvalidArgument("redis reply: malformed array length \"" + Printable(**line) + "\"");
      }
      if (*n == -1) {
        v.type = RespValue::Type::kNull;
        break;
      }
      if (*n > limits_.max_array_elements) {
        return InvalidArgument("redis reply: an array of " + std::to_string(*n) +
                               " elements (the limit is " +
                               std::to_string(limits_.max_array_elements) + ")");
      }
      if (depth + 1 > limits_.max_depth) {
        return InvalidArgument("redis reply: arrays nested deeper than " +
                               std::to_string(limits_.max_depth));
      }
      v.type = RespValue::Type::kArray;
      // Each element takes at least 3 bytes ("+\r\n"): do not reserve for a count the buffer
      // cannot hold yet.
      v.elements.reserve(static_cast<size_t>(std::min<int64_t>(*n, (buf.size() - p) / 3 + 1)));
      for (int64_t i = 0; i < *n; ++i) {
        auto e = ParseAt(buf, &p, depth + 1);
        if (!e.ok()) return e.status();
        if (!*e) return Incomplete();
        v.elements.push_back(std::move(**e));
      }
      break;
    }
    default:
      return InvalidArgument("redis reply: unknown type byte \"" +
                             Printable(std::string_view(&type, 1)) + "\"");
  }
  *pos = p;
  return std::optional<RespValue>(std::move(v));
}

Result<RedisAddress> ParseRedisUrl(std::string_view url) {
  constexpr std::string_view kScheme = "redis://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return InvalidArgument("\"" + std::string(url) + "\": expected redis://HOST:PORT");
  }
  std::string_view rest = url.substr(kScheme.size());
  RedisAddress a;
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) {
      auto n = ParseInteger(db);
      if (!n || *n < 0 || *n > 1'000'000) {
        return InvalidArgument("\"" + std::string(url) + "\": the database must be a number");
      }
      a.db = static_cast<int>(*n);
    }
  }
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    // redis://:PASSWORD@HOST (the user part, before ':', is ignored: RESP2 AUTH has none).
    size_t colon = auth.find(':');
    a.password = std::string(colon == std::string_view::npos ? auth : auth.substr(colon + 1));
  }
  std::string_view host = rest;
  std::string_view port;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return InvalidArgument("\"" + std::string(url) + "\": malformed IPv6 address");
    }
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':')
        return InvalidArgument("\"" + std::string(url) + "\": malformed address");
      port = after.substr(1);
    }
  } else if (size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) return InvalidArgument("\"" + std::string(url) + "\": no host");
  a.host = std::string(host);
  if (!port.empty() || rest.find(':') != std::string_view::npos) {
    auto n = ParseInteger(port);
    if (!n || *n < 1 || *n > 65535) {
      return InvalidArgument("\"" + std::string(url) + "\": malformed port");
    }
    a.port = static_cast<uint16_t>(*n);
  }
  return a;
}

RedisClient::RedisClient(int fd, std::string name, std::chrono::milliseconds timeout)
    : fd_(fd), name_(std::move(name)), timeout_(timeout) {}

RedisClient::~RedisClient() {
  if (fd_ >= 0) ::close(fd_);
}

Status RedisClient::WaitFor(short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return DeadlineExceeded("redis " + name_ + ": timed out");
    pollfd p{fd_, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
    if (n > 0) return Status::Ok();
    if (n < 0 && errno != EINTR) {
      return Unavailable("redis " + name_ + ": poll: " + std::strerror(errno));
    }
  }
}

Result<std::unique_ptr<RedisClient>> RedisClient::Connect(const RedisAddress& address,
                                                          std::chrono::milliseconds timeout) {
  const std::string name =
      (address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host) +
      ":" + std::to_string(address.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int gai = ::getaddrinfo(address.host.c_str(), std::to_string(address.port).c_str(), &hints, &res);
  if (gai != 0) {
    return Unavailable("redis " + name + ": cannot resolve the host: " + ::gai_strerror(gai));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, &::freeaddrinfo);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last_error = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    std::unique_ptr<RedisClient> c(new RedisClient(fd, name, timeout));
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last_error = std::strerror(errno);
        continue;
      }
      if (Status st = c->WaitFor(POLLOUT, deadline); !st.ok()) {
        last_error = "connect timed out";
        continue;
      }
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last_error = std::strerror(err);
        continue;
      }
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!address.password.empty()) {
      BERTH_ASSIGN_OR_RETURN(RespValue r, c->Command({"AUTH", address.password}));
      if (r.type == RespValue::Type::kError) {
        return PermissionDenied("redis " + name + ": AUTH: " + r.str);
      }
    }
    if (address.db != 0) {
      BERTH_ASSIGN_OR_RETURN(RespValue r, c->Command({"SELECT", std::to_string(address.db)}));
      if (r.type == RespValue::Type::kError) {
        return InvalidArgument("redis " + name + ": SELECT " + std::to_string(address.db) + ": " +
                               r.str);
      }
    }
    return c;
  }
  return Unavailable("redis " + name + ": cannot connect: " + last_error);
}

Result<RespValue> RedisClient::Command(const std::vector<std::string>& args) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  const std::string out = EncodeRespCommand(args);
  size_t sent = 0;
  while (sent < out.size()) {
    ssize_t n = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      BERTH_RETURN_IF_ERROR(WaitFor(POLLOUT, deadline));
    } else if (n < 0 && errno != EINTR) {
      return Unavailable("redis " + name_ + ": send: " + std::strerror(errno));
    }
  }
  for (;;) {
    size_t consumed = 0;
    auto reply = parser_.Parse(buf_, &consumed);
    if (!reply.ok()) return reply.status().Annotate("redis " + name_);
    if (*reply) {
      buf_.erase(0, consumed);
      return std::move(**reply);
    }
    char chunk[16384];
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buf_.append(chunk, static_cast<size_t>(n));
    } else if (n == 0) {
      return Unavailable("redis " + name_ + ": the server closed the connection");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BERTH_RETURN_IF_ERROR(WaitFor(POLLIN, deadline));
    } else if (errno != EINTR) {
      return Unavailable("redis " + name_ + ": recv: " + std::strerror(errno));
    }
  }
}

Result<std::vector<HipacheFrontend>> ReadHipacheFrontends(RedisClient& redis) {
  // SCAN, not KEYS: it does not block a busy Redis. It may return a key more than once.
  std::set<std::string> keys;
  std::string cursor = "0";
  do {
    BERTH_ASSIGN_OR_RETURN(RespValue r,
                           redis.Command({"SCAN", cursor, "MATCH", "frontend:*", "COUNT", "1000"}));
    if (r.type == RespValue::Type::kError) return Unavailable("redis SCAN: " + r.str);
    if (r.type != RespValue::Type::kArray || r.elements.size() != 2 ||
        r.elements[0].type != RespValue::Type::kBulkString ||
        r.elements[1].type != RespValue::Type::kArray) {
      return InvalidArgument("redis SCAN: unexpected reply shape");
    }
    cursor = r.elements[0].str;
    for (const auto& k : r.elements[1].elements) {
      if (k.type != RespValue::Type::kBulkString) {
        return InvalidArgument("redis SCAN: a key that is not a bulk string");
      }
      keys.insert(k.str);
    }
  } while (cursor != "0");

  std::vector<HipacheFrontend> out;
  out.reserve(keys.size());
  for (const auto& key : keys) {
    HipacheFrontend f;
    f.key = key;
    BERTH_ASSIGN_OR_RETURN(RespValue r, redis.Command({"LRANGE", key, "0", "-1"}));
    if (r.type == RespValue::Type::kError) {
      f.error = r.str;  // WRONGTYPE: not a list
    } else if (r.type != RespValue::Type::kArray) {
      f.error = "LRANGE answered something other than a list";
    } else {
      for (const auto& e : r.elements) {
        if (e.type != RespValue::Type::kBulkString) {
          f.error = "the list holds an element that is not a string";
          break;
        }
        f.list.push_back(e.str);
      }
    }
    out.push_back(std::move(f));
  }
  return out;
}

ImportPlan PlanHipacheImport(const std::vector<HipacheFrontend>& frontends) {
  ImportPlan plan;
  std::map<std::string, std::string> host_from;  // normalized host -> the key that gave it
  std::vector<const HipacheFrontend*> sorted;
  for (const auto& f : frontends) sorted.push_back(&f);
  std::sort(sorted.begin(), sorted.end(),
            [](const HipacheFrontend* a, const HipacheFrontend* b) { return a->key < b->key; });
  for (const HipacheFrontend* f : sorted) {
    auto skip = [&](std::string backend, std::string reason) {
      plan.skipped.push_back({f->key, std::move(backend), std::move(reason)});
    };
    if (!f->error.empty()) {
      skip("", "cannot be read: " + f->error);
      continue;
    }
    if (f->key.substr(0, kFrontendPrefix.size()) != kFrontendPrefix) {
      skip("", "not a frontend:<host> key");
      continue;
    }
    const std::string raw_host = f->key.substr(kFrontendPrefix.size());
    if (raw_host.find('/') != std::string::npos) {
      skip("", "bad host: it contains '/'");
      continue;
    }
    // The host, normalized as the router does (a probe backend: only the host is checked).
    const std::string probe = nlohmann::json{{"backend", "http://127.0.0.1:1"}}.dump();
    auto host = ParseRoute(raw_host + "/hipache-0", probe);
    if (!host.ok()) {
      skip("", "bad host: " + host.status().message());
      continue;
    }
    auto [it, inserted] = host_from.emplace(host->host, f->key);
    if (!inserted) {
      skip("", "the same host as " + it->second + " (hosts are case-insensitive)");
      continue;
    }
    plan.hosts.push_back(host->host);
    if (f->list.empty()) {
      skip("", "empty list");
      continue;
    }
    if (f->list.size() == 1) {
      skip("", "no backends (the list holds only its identifier)");
      continue;
    }
    for (size_t i = 1; i < f->list.size(); ++i) {
      const std::string& url = f->list[i];
      const std::string id = "hipache-" + std::to_string(i - 1);
      // Replace invalid UTF-8 rather than throw: the URL comes from Redis, unchecked.
      auto spec = ParseRoute(raw_host + "/" + id,
                             nlohmann::json{{"backend", url}}.dump(
                                 -1, ' ', false, nlohmann::json::error_handler_t::replace));
      if (!spec.ok()) {
        skip(url, spec.status().message());
        continue;
      }
      plan.routes.push_back({spec->host, id, url, f->list[0], f->key});
    }
  }
  return plan;
}

}  // namespace berth::router
