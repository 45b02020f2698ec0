#include "runtime/port_allocator.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace berth::runtime {

PortAllocator::PortAllocator() : PortAllocator(Options{}) {}

PortAllocator::PortAllocator(Options options)
    : options_(std::move(options)), next_(options_.first) {}

Status PortAllocator::Probe(int port) const {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, options_.address.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("port allocator: bad IPv4 address '" + options_.address + "'");
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Unavailable(std::string("port allocator: socket: ") + std::strerror(errno));
  // No SO_REUSEADDR: a port with connections still in TIME_WAIT counts as busy, which is safe.
  const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::close(fd);
  if (rc == 0) return Status::Ok();
  const std::string where = options_.address + ":" + std::to_string(port);
  if (err == EADDRINUSE) return FailedPrecondition("host port " + where + " is already in use");
  if (err == EACCES) return PermissionDenied("host port " + where + ": permission denied");
  if (err == EADDRNOTAVAIL) {
    return InvalidArgument("port allocator: address " + options_.address + " is not local");
  }
  return Unavailable("host port " + where + ": " + std::strerror(err));
}

Status PortAllocator::TakeFixed(int port) {
  if (port < 1 || port > 65535) {
    return InvalidArgument("host port " + std::to_string(port) + " is outside 1-65535");
  }
  if (handed_out_.count(port) != 0) {
    return FailedPrecondition("host port " + std::to_string(port) +
                              " is already assigned to another task");
  }
  BERTH_RETURN_IF_ERROR(Probe(port));
  handed_out_.insert(port);
  return Status::Ok();
}

Result<int> PortAllocator::TakeDynamic() {
  const int first = options_.first;
  const int last = options_.last;
  if (first < 1 || last > 65535 || first > last) {
    return InvalidArgument("port allocator: bad dynamic range " + std::to_string(first) + "-" +
                           std::to_string(last));
  }
  const int size = last - first + 1;
  if (next_ < first || next_ > last) next_ = first;
  for (int i = 0; i < size; ++i) {
    const int port = next_;
    next_ = port == last ? first : port + 1;
    if (handed_out_.count(port) != 0) continue;
    Status probed = Probe(port);
    if (probed.code() == Code::kInvalidArgument) return probed;  // the address, not the port
    if (!probed.ok()) continue;
    handed_out_.insert(port);
    return port;
  }
  return Unavailable("no free host port left in " + std::to_string(first) + "-" +
                     std::to_string(last));
}

Result<std::vector<int>> PortAllocator::Allocate(const std::vector<spec::Port>& ports) {
  std::lock_guard<std::mutex> lock(mu_);
  // Fixed ports first: they cannot move, so dynamic ones must not take them.
  std::vector<int> out(ports.size(), 0);
  std::vector<int> taken;
  for (size_t i = 0; i < ports.size(); ++i) {
    if (ports[i].static_port == 0) continue;
    Status st = TakeFixed(ports[i].static_port);
    if (!st.ok()) {
      for (int p : taken) handed_out_.erase(p);
      return st.Annotate("port " + ports[i].name);
    }
    taken.push_back(ports[i].static_port);
    out[i] = ports[i].static_port;
  }
  for (size_t i = 0; i < ports.size(); ++i) {
    if (ports[i].static_port != 0) continue;
    Result<int> port = TakeDynamic();
    if (!port.ok()) {
      for (int p : taken) handed_out_.erase(p);
      return port.status().Annotate("port " + ports[i].name);
    }
    taken.push_back(*port);
    out[i] = *port;
  }
  return out;
}

void PortAllocator::Release(const std::vector<int>& ports) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int p : ports) handed_out_.erase(p);
}

Status PortAllocator::Reserve(const std::vector<int>& ports) {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<int> adding;
  for (int p : ports) {
    if (p < 1 || p > 65535) {
      return InvalidArgument("host port " + std::to_string(p) + " is outside 1-65535");
    }
    if (handed_out_.count(p) != 0 || !adding.insert(p).second) {
      return AlreadyExists("host port " + std::to_string(p) + " is already assigned");
    }
  }
  handed_out_.insert(adding.begin(), adding.end());
  return Status::Ok();
}

bool PortAllocator::IsHandedOut(int port) const {
  std::lock_guard<std::mutex> lock(mu_);
  return handed_out_.count(port) != 0;
}

size_t PortAllocator::handed_out_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return handed_out_.size();
}

}  // namespace berth::runtime
