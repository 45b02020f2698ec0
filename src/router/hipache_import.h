// Moving from hipache: reads hipache's routes from its Redis and turns them into berth routes.
//
// Hipache keeps one Redis list per frontend, `frontend:<host>`: the first element is an
// identifier (an application name), the rest are backend URLs. `*.example.com` hosts are
// wildcards, as in berth. Each backend becomes a route routes/<host>/hipache-<n>, n being the
// backend's 0-based position among the frontend's backends (the index hipache itself uses for
// its dead-backend marks), with the host normalized as the router does (lower case).
//
// Three parts, each testable alone: RespParser (Redis's wire protocol, RESP2, from bytes: the
// reply comes from the network and is untrusted, so malformed or oversized input is an error,
// never a crash), RedisClient (a small blocking client over one TCP connection), and
// PlanHipacheImport (a pure function from the frontends read to the routes to write and the
// entries skipped, with the reason). Writing the routes is the caller's business: the CLI puts
// them through the agent's API.
//
// Thread-safety: RespParser and RedisClient are used by one thread at a time; the functions are
// pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace berth::router {

// One RESP2 reply.
struct RespValue {
  enum class Type : uint8_t { kSimpleString, kError, kInteger, kBulkString, kNull, kArray };
  Type type = Type::kNull;
  std::string str;  // simple string, error message, bulk string
  int64_t integer = 0;
  std::vector<RespValue> elements;  // array

  bool operator==(const RespValue& o) const = default;
};

// Encodes a command as Redis expects it: an array of bulk strings.
std::string EncodeRespCommand(const std::vector<std::string>& args);

// Parses replies from bytes as they arrive.
class RespParser {
 public:
  struct Limits {
    int64_t max_bulk_bytes = 64 << 20;     // one bulk string
    int64_t max_array_elements = 1 << 20;  // one array
    int max_depth = 8;                     // nested arrays
    size_t max_line_bytes = 64 << 10;      // a simple string, error or length line
  };
  RespParser() = default;
  explicit RespParser(Limits limits) : limits_(limits) {}

  // Parses one reply from the start of `buf`. Returns the reply and sets *consumed to its size;
  // nullopt (and *consumed = 0) when `buf` holds only part of one; an error when the bytes are
  // not RESP or exceed the limits (the connection is then unusable).
  Result<std::optional<RespValue>> Parse(std::string_view buf, size_t* consumed) const;

 private:
  // Parses from buf[*pos]; advances *pos. nullopt: incomplete.
  Result<std::optional<RespValue>> ParseAt(std::string_view buf, size_t* pos, int depth) const;
  Result<std::optional<std::string_view>> Line(std::string_view buf, size_t* pos) const;
  Limits limits_;
};

// redis://[:PASSWORD@]HOST[:PORT][/DB]; the port defaults to 6379.
struct RedisAddress {
  std::string host;
  uint16_t port = 6379;
  std::string password;
  int db = 0;
};
Result<RedisAddress> ParseRedisUrl(std::string_view url);

// A blocking Redis client over one TCP connection, with a deadline per command.
class RedisClient {
 public:
  // Connects (and authenticates, selects the database) within `timeout`. A connection failure
  // is kUnavailable naming the address.
  static Result<std::unique_ptr<RedisClient>> Connect(
      const RedisAddress& address, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one command and reads its reply. An error reply is returned as a value (type
  // kError), not a Status: the caller decides (a WRONGTYPE key is skipped, not fatal).
  Result<RespValue> Command(const std::vector<std::string>& args);

 private:
  RedisClient(int fd, std::string name, std::chrono::milliseconds timeout);
  Status WaitFor(short events, std::chrono::steady_clock::time_point deadline);

  int fd_;
  std::string name_;  // "HOST:PORT" for messages
  std::chrono::milliseconds timeout_;
  std::string buf_;  // received bytes not yet parsed
  RespParser parser_;
};

// One `frontend:<host>` key as read from Redis.
struct HipacheFrontend {
  std::string key;                // "frontend:www.example.com"
  std::vector<std::string> list;  // the list: identifier, then backend URLs
  std::string error;              // set when the key could not be read (e.g. not a list)
};

// Every frontend key (SCAN with MATCH frontend:*, each read with LRANGE key 0 -1), sorted by
// key. A key that is not a list comes back with `error` set; a failed command or connection
// is an error.
Result<std::vector<HipacheFrontend>> ReadHipacheFrontends(RedisClient& redis);

struct ImportedRoute {
  std::string host;        // normalized: "www.example.com", "*.example.com"
  std::string id;          // "hipache-0"
  std::string backend;     // the URL as hipache had it
  std::string identifier;  // the frontend's first element
  std::string frontend;    // the Redis key it came from
};
struct SkippedEntry {
  std::string frontend;  // the Redis key
  std::string backend;   // the backend URL, or "" when the whole frontend was skipped
  std::string reason;
};
struct ImportPlan {
  std::vector<ImportedRoute> routes;
  std::vector<SkippedEntry> skipped;
  // The normalized host of every frontend read (even one whose list is empty): the hosts whose
  // hipache-<n> routes this import replaces (a route of a shorter list is stale).
  std::vector<std::string> hosts;
};

// What importing `frontends` means: the routes to write (each checked with ParseRoute, as the
// router and the API check it) and what cannot be imported, with the reason: a frontend that
// could not be read, an empty list, one with no backends, a bad host; a backend URL the router
// cannot use (not http://IP:PORT, a path, a name to resolve).
ImportPlan PlanHipacheImport(const std::vector<HipacheFrontend>& frontends);

}  // namespace berth::router
