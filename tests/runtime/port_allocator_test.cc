#include "runtime/port_allocator.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

namespace berth::runtime {
namespace {

// A TCP socket listening on 127.0.0.1 at a port the kernel chose; closed on destruction.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 1) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~Listener() {
    if (fd_ >= 0) ::close(fd_);
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A port that was free a moment ago (bound, then released).
int FreePort() {
  Listener l;
  return l.port();
}

bool CanBind(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

PortAllocator::Options Loopback(int first, int last) {
  PortAllocator::Options o;
  o.address = "127.0.0.1";
  o.first = first;
  o.last = last;
  return o;
}

spec::Port Dynamic(std::string name) {
  return spec::Port{std::move(name), 0, 0};
}
spec::Port Fixed(std::string name, int port) {
  return spec::Port{std::move(name), 0, port};
}

TEST(PortAllocatorTest, DefaultRange) {
  PortAllocator::Options o;
  EXPECT_EQ(o.first, 20000);
  EXPECT_EQ(o.last, 32000);
}

TEST(PortAllocatorTest, DynamicPortsAreDistinctFreeAndInRange) {
  PortAllocator alloc(Loopback(40000, 40999));
  Result<std::vector<int>> a = alloc.Allocate({Dynamic("http"), Dynamic("admin")});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  Result<std::vector<int>> b = alloc.Allocate({Dynamic("http")});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  std::set<int> all = {(*a)[0], (*a)[1], (*b)[0]};
  EXPECT_EQ(all.size(), 3u);
  for (int p : all) {
    EXPECT_GE(p, 40000);
    EXPECT_LE(p, 40999);
    EXPECT_TRUE(alloc.IsHandedOut(p));
    EXPECT_TRUE(CanBind(p)) << p;
  }
  EXPECT_EQ(alloc.handed_out_count(), 3u);
}

TEST(PortAllocatorTest, PortHeldByAListenerIsNeverHandedOut) {
  Listener held;
  // A range of exactly the held port: nothing to give.
  PortAllocator only_held(Loopback(held.port(), held.port()));
  Result<std::vector<int>> r = only_held.Allocate({Dynamic("http")});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("no free host port"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(only_held.handed_out_count(), 0u);

  // A range starting at the held port skips it.
  PortAllocator alloc(Loopback(held.port(), std::min(held.port() + 50, 65535)));
  if (held.port() < 65535) {
    Result<std::vector<int>> p = alloc.Allocate({Dynamic("http")});
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_NE((*p)[0], held.port());
  }
}

TEST(PortAllocatorTest, FixedPortInUseIsAClearError) {
  Listener held;
  PortAllocator alloc(Loopback(40000, 40999));
  Result<std::vector<int>> r = alloc.Allocate({Fixed("http", held.port())});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  const std::string want = "127.0.0.1:" + std::to_string(held.port()) + " is already in use";
  EXPECT_NE(r.status().message().find(want), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("port http"), std::string::npos) << r.status().message();
  EXPECT_FALSE(alloc.IsHandedOut(held.port()));
}

TEST(PortAllocatorTest, FixedPortHandedOutTwiceIsAnError) {
  const int port = FreePort();
  PortAllocator alloc(Loopback(40000, 40999));
  Result<std::vector<int>> a = alloc.Allocate({Fixed("http", port)});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(*a, std::vector<int>{port});
  Result<std::vector<int>> b = alloc.Allocate({Fixed("web", port)});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(b.status().message().find(std::to_string(port) + " is already assigned"),
            std::string::npos)
      << b.status().message();
}

TEST(PortAllocatorTest, AllocateIsAllOrNothing) {
  Listener held;
  PortAllocator alloc(Loopback(40000, 40999));
  const int free_port = FreePort();
  Result<std::vector<int>> r =
      alloc.Allocate({Fixed("a", free_port), Dynamic("b"), Fixed("c", held.port())});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(alloc.handed_out_count(), 0u);

  // Exhausting the range on the second dynamic port returns the first one too.
  const int one = FreePort();
  PortAllocator tiny(Loopback(one, one));
  Result<std::vector<int>> t = tiny.Allocate({Dynamic("a"), Dynamic("b")});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kUnavailable);
  EXPECT_EQ(tiny.handed_out_count(), 0u);
}

TEST(PortAllocatorTest, ReleaseMakesAPortAvailableAgain) {
  const int port = FreePort();
  PortAllocator alloc(Loopback(port, port));
  Result<std::vector<int>> a = alloc.Allocate({Dynamic("http")});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(*a, std::vector<int>{port});
  EXPECT_EQ(alloc.Allocate({Dynamic("http")}).status().code(), Code::kUnavailable);

  alloc.Release(*a);
  EXPECT_FALSE(alloc.IsHandedOut(port));
  Result<std::vector<int>> b = alloc.Allocate({Dynamic("http")});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(*b, std::vector<int>{port});
  alloc.Release({port, 1});  // unknown ports are ignored
  EXPECT_EQ(alloc.handed_out_count(), 0u);
}

TEST(PortAllocatorTest, ReservePreventsHandingOut) {
  const int port = FreePort();
  PortAllocator alloc(Loopback(port, port));
  ASSERT_TRUE(alloc.Reserve({port}).ok());
  EXPECT_TRUE(alloc.IsHandedOut(port));
  EXPECT_EQ(alloc.Allocate({Dynamic("http")}).status().code(), Code::kUnavailable);
  EXPECT_EQ(alloc.Allocate({Fixed("http", port)}).status().code(), Code::kFailedPrecondition);

  // Reserving twice is a conflict, and all or nothing.
  const int other = FreePort();
  Status st = alloc.Reserve({other, port});
  EXPECT_EQ(st.code(), Code::kAlreadyExists);
  EXPECT_FALSE(alloc.IsHandedOut(other));
  EXPECT_EQ(alloc.Reserve({0}).code(), Code::kInvalidArgument);

  alloc.Release({port});
  EXPECT_TRUE(alloc.Allocate({Dynamic("http")}).ok());
}

TEST(PortAllocatorTest, BadInput) {
  PortAllocator alloc(Loopback(40000, 40999));
  EXPECT_EQ(alloc.Allocate({Fixed("http", 70000)}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(alloc.Allocate({Fixed("http", -1)}).status().code(), Code::kInvalidArgument);

  PortAllocator bad_range(Loopback(5000, 4000));
  EXPECT_EQ(bad_range.Allocate({Dynamic("a")}).status().code(), Code::kInvalidArgument);

  PortAllocator::Options o = Loopback(40000, 40999);
  o.address = "not-an-address";
  PortAllocator bad_address(o);
  EXPECT_EQ(bad_address.Allocate({Dynamic("a")}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(bad_address.handed_out_count(), 0u);

  EXPECT_TRUE(alloc.Allocate({}).ok());
}

TEST(PortAllocatorTest, ConcurrentAllocationsNeverCollide) {
  PortAllocator alloc(Loopback(40000, 40999));
  std::vector<std::vector<int>> got(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&alloc, &got, i] {
      for (int j = 0; j < 10; ++j) {
        Result<std::vector<int>> r = alloc.Allocate({Dynamic("a"), Dynamic("b")});
        if (r.ok()) got[i].insert(got[i].end(), r->begin(), r->end());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<int> all;
  size_t n = 0;
  for (const auto& v : got) {
    n += v.size();
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(n, 80u);
  EXPECT_EQ(all.size(), n);
}

}  // namespace
}  // namespace berth::runtime
