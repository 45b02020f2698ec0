// PortAllocator: hands out host ports to the tasks of one machine.
//
// A task's ports are either fixed (`static`), which must be free, or dynamic, taken from a
// configured range (default 20000-32000). A port is handed out only if this allocator has not
// already handed it out and a TCP socket can bind it on the configured address right now, so
// a port some other program listens on is never chosen. Dynamic ports are taken round-robin
// from after the last one chosen, so a just-released port is not reused at once. After an
// agent restart, Reserve() re-registers the ports of re-adopted tasks (they hold them, so they
// are not probed). The bind probe is a snapshot: another program can take the port between
// Allocate() and the task binding it; the driver reports that as the task failing to start.
// Only TCP is probed.
// Thread-safety: every method is safe to call from any thread (one mutex).
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "spec/job.h"

namespace berth::runtime {

class PortAllocator {
 public:
  struct Options {
    std::string address = "0.0.0.0";  // where tasks bind their ports; 127.0.0.1 in tests
    int first = 20000;                // dynamic range, inclusive
    int last = 32000;
  };

  PortAllocator();
  explicit PortAllocator(Options options);

  // Host ports for `ports`, in the same order: `static_port` when set, else a dynamic one. All
  // or nothing. Errors: a fixed port already in use or handed out -> kFailedPrecondition naming
  // it; no free port left in the range -> kUnavailable; a port outside 1-65535 ->
  // kInvalidArgument; an address that cannot be probed -> kInvalidArgument.
  Result<std::vector<int>> Allocate(const std::vector<spec::Port>& ports);
  // Makes `ports` available again. Ports not handed out are ignored.
  void Release(const std::vector<int>& ports);
  // Marks ports held by re-adopted tasks as handed out, without probing. All or nothing:
  // kAlreadyExists naming a port this allocator already handed out.
  Status Reserve(const std::vector<int>& ports);

  bool IsHandedOut(int port) const;
  size_t handed_out_count() const;

 private:
  // TakeFixed and TakeDynamic expect mu_ held; Probe touches no state.
  Status TakeFixed(int port);
  Result<int> TakeDynamic();
  Status Probe(int port) const;

  const Options options_;
  mutable std::mutex mu_;
  std::set<int> handed_out_;  // guarded by mu_
  int next_;                  // guarded by mu_: where the next dynamic search starts
};

}  // namespace berth::runtime
