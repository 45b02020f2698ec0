// Helpers for the router's socket tests: a small blocking HTTP/1.1 backend (one thread per
// connection) and a raw client, both on 127.0.0.1 with ephemeral ports. They use the router's
// own parser to frame messages; what they check is the proxy's behaviour.
// Thread-safety: TestBackend's counters are atomic; a TestClient belongs to one thread.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "router/http_parser.h"

namespace berth::router::testing {

inline int Listen(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, 128) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// A port nothing listens on (bound then closed).
inline uint16_t DeadPort() {
  uint16_t port = 0;
  int fd = Listen(&port);
  ::close(fd);
  return port;
}

inline int Connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

inline bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads one HTTP message (request or response) from `fd` with `buf` as carry-over.
// Returns false on EOF or a framing error. `head` gets the head text, `body` the decoded body.
inline bool ReadMessage(int fd, std::string& buf, bool is_request, bool head_request,
                        std::string* head, std::string* body, bool* chunked = nullptr) {
  http::Limits limits;
  limits.max_head_bytes = 64 * 1024;
  http::HeadScanner sc;
  char tmp[65536];
  while (true) {
    auto r = sc.Scan(buf, limits, is_request);
    if (r == http::ParseResult::kError) return false;
    if (r == http::ParseResult::kDone) break;
    ssize_t n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
  }
  *head = buf.substr(0, sc.head_end());
  body->clear();
  http::BodyKind kind;
  uint64_t length = 0;
  if (is_request) {
    http::RequestHead h;
    if (http::ParseRequestHead(*head, limits, &h) != http::ParseResult::kDone) return false;
    kind = h.body;
    length = h.content_length;
  } else {
    http::ResponseHead h;
    if (http::ParseResponseHead(*head, limits, head_request, &h) != http::ParseResult::kDone) {
      return false;
    }
    kind = h.body;
    length = h.content_length;
  }
  buf.erase(0, sc.head_end());
  if (chunked) *chunked = kind == http::BodyKind::kChunked;
  auto more = [&] {
    ssize_t n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    return true;
  };
  if (kind == http::BodyKind::kContentLength) {
    while (buf.size() < length) {
      if (!more()) return false;
    }
    *body = buf.substr(0, length);
    buf.erase(0, length);
  } else if (kind == http::BodyKind::kChunked) {
    http::ChunkedDecoder d;
    while (true) {
      size_t used = 0;
      while (used < buf.size() && !d.done()) {
        std::string_view data;
        used += d.Feed(std::string_view(buf).substr(used), limits, &data);
        if (d.failed()) return false;
        body->append(data);
      }
      buf.erase(0, used);
      if (d.done()) break;
      if (!more()) return false;
    }
  } else if (kind == http::BodyKind::kUntilClose) {
    while (more()) {
    }
    *body = buf;
    buf.clear();
  }
  return true;
}

// Returns the value of field `name` in a head ("" if absent).
inline std::string FieldOf(const std::string& head, const std::string& name) {
  size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string::npos) {
    pos += 2;
    if (head.size() >= pos + name.size() + 1 &&
        http::EqualsIgnoreCase(std::string_view(head).substr(pos, name.size()), name) &&
        head[pos + name.size()] == ':') {
      size_t end = head.find("\r\n", pos);
      std::string v = head.substr(pos + name.size() + 1, end - pos - name.size() - 1);
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      return v;
    }
  }
  return "";
}

inline int StatusOf(const std::string& head) {
  return head.size() >= 12 ? std::atoi(head.substr(9, 3).c_str()) : 0;
}

// A backend that answers by path:
//   /slow?ms=N       waits N ms, then 200
//   /big?n=N         N bytes of body (Content-Length)
//   /chunked         a chunked body of three chunks
//   /echo            the request body back (chunked if the request was chunked)
//   /sum             the request body's length and byte sum
//   /ws              101 Switching Protocols, then echoes bytes
//   /close           200 with Connection: close
//   /drop            200 (keep-alive by its head), then the connection is closed
//   anything else    200; body = the request head
// Every response carries X-Backend: <name>.
class TestBackend {
 public:
  explicit TestBackend(std::string name) : name_(std::move(name)) {
    fd_ = Listen(&port_);
    thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~TestBackend() { Stop(); }

  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }
  int requests() const { return requests_.load(); }

  void Stop() {
    if (stopped_.exchange(true)) return;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      for (int c : conns_) ::shutdown(c, SHUT_RDWR);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

 private:
  void AcceptLoop() {
    while (!stopped_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      ++connections_;
      std::lock_guard lock(mu_);
      conns_.push_back(c);
      threads_.emplace_back([this, c] { Serve(c); });
    }
  }

  void Respond(int c, const std::string& extra, const std::string& body, bool close = false) {
    std::string r = "HTTP/1.1 200 OK\r\nX-Backend: " + name_ + "\r\n" + extra +
                    "Content-Length: " + std::to_string(body.size()) + "\r\n" +
                    (close ? "Connection: close\r\n" : "") + "\r\n";
    SendAll(c, r + body);  // one write: no Nagle/delayed-ACK stall between head and body
  }

  void Serve(int c) {
    std::string buf, head, body;
    while (!stopped_) {
      bool chunked = false;
      if (!ReadMessage(c, buf, true, false, &head, &body, &chunked)) break;
      ++requests_;
      std::string target = head.substr(head.find(' ') + 1);
      target = target.substr(0, target.find(' '));
      std::string path = target.substr(0, target.find('?'));
      std::string query =
          target.find('?') == std::string::npos ? "" : target.substr(target.find('?') + 1);
      auto num = [&](const char* key) {
        size_t p = query.find(std::string(key) + "=");
        return p == std::string::npos ? 0L : std::atol(query.c_str() + p + std::strlen(key) + 1);
      };
      if (path == "/slow") {
        std::this_thread::sleep_for(std::chrono::milliseconds(num("ms")));
        Respond(c, "", "slow");
      } else if (path == "/big") {
        Respond(c, "", std::string(static_cast<size_t>(num("n")), 'b'));
      } else if (path == "/chunked") {
        SendAll(c, "HTTP/1.1 200 OK\r\nX-Backend: " + name_ +
                       "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n \r\n"
                       "5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n");
      } else if (path == "/echo") {
        if (chunked) {
          std::string r =
              "HTTP/1.1 200 OK\r\nX-Backend: " + name_ + "\r\nTransfer-Encoding: chunked\r\n\r\n";
          for (size_t i = 0; i < body.size(); i += 1000) {
            std::string part = body.substr(i, 1000);
            char size[32];
            std::snprintf(size, sizeof(size), "%zx\r\n", part.size());
            r += size + part + "\r\n";
          }
          r += "0\r\n\r\n";
          SendAll(c, r);
        } else {
          Respond(c, "", body);
        }
      } else if (path == "/sum") {
        uint64_t sum = 0;
        for (unsigned char ch : body) sum += ch;
        Respond(c, "", std::to_string(body.size()) + " " + std::to_string(sum));
      } else if (path == "/ws") {
        SendAll(c,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n\r\n");
        if (!buf.empty()) SendAll(c, buf);
        char tmp[4096];
        while (true) {
          ssize_t n = ::recv(c, tmp, sizeof(tmp), 0);
          if (n <= 0) break;
          SendAll(c, std::string_view(tmp, static_cast<size_t>(n)));
        }
        break;
      } else if (path == "/drop") {
        Respond(c, "", "dropped");  // keep-alive by its head, closed anyway
        break;
      } else if (path == "/close") {
        Respond(c, "", "bye", true);
        break;
      } else {
        Respond(c, "", head);
      }
    }
    ::close(c);
  }

  std::string name_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  std::thread thread_;
  std::mutex mu_;
  std::vector<int> conns_;            // guarded by mu_
  std::vector<std::thread> threads_;  // guarded by mu_
};

// One client connection.
class TestClient {
 public:
  explicit TestClient(uint16_t port) : fd_(Connect(port)) {}
  ~TestClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  bool Send(std::string_view data) { return SendAll(fd_, data); }
  // Sends a GET for `path` to `host`; returns the status (0 if the connection failed).
  int Get(const std::string& host, const std::string& path, std::string* body = nullptr,
          std::string* head = nullptr) {
    if (!Send("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n")) return 0;
    return Read(body, head);
  }
  int Read(std::string* body = nullptr, std::string* head = nullptr, bool head_request = false) {
    std::string h, b;
    if (!ReadMessage(fd_, buf_, false, head_request, &h, &b)) return 0;
    if (body) *body = b;
    if (head) *head = h;
    return StatusOf(h);
  }
  // True if the peer closed the connection (EOF or reset) within `timeout`.
  bool Closed(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char c;
    ssize_t n = ::recv(fd_, &c, 1, MSG_DONTWAIT);
    return n <= 0;
  }

 private:
  int fd_;
  std::string buf_;
};

}  // namespace berth::router::testing
