// RoutePublisher: the seed's "service starts → route appears; service stops → route goes away"
// flow, without hand-written hooks. For every task whose spec has `route:`, while the task runs
// and is healthy (or has no health check), the agent keeps
//
//   routes/<host>/<alloc>-<task>  {"backend": "http://IP:HOSTPORT", "path_prefix": "/",
//                                  "alloc": ..., "job": ..., "task": ..., "machine": ...}
//
// for each of the route's hosts, under the machine's lease: a dead machine's routes vanish with
// it. A task that stops, exits or turns unhealthy loses its routes at the next status; an
// allocation that is no longer wanted loses them before its tasks are stopped (Close), so the
// router stops sending it requests first. When the machine registers again under a new lease,
// Refresh() puts every route again under it.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "runtime/alloc.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::agent {

class RoutePublisher {
 public:
  RoutePublisher(store::Store& store, store::Keys keys, std::string advertise_ip,
                 std::function<store::LeaseId()> lease);

  // Brings the allocation's routes in line with its status.
  Status Sync(const runtime::Allocation& alloc, const runtime::AllocStatus& status);
  // Deletes the allocation's routes and ignores its later statuses.
  void Close(const std::string& alloc_id);
  // Forgets a closed allocation (its runner is gone).
  void Forget(const std::string& alloc_id);
  // Puts the routes again if the machine lease changed; retries what failed.
  void Refresh();

  // The routes an allocation should have now: key -> value.
  static std::map<std::string, std::string> Desired(const store::Keys& keys,
                                                    const std::string& advertise_ip,
                                                    const runtime::Allocation& alloc,
                                                    const runtime::AllocStatus& status);

 private:
  struct Entry {
    std::map<std::string, std::string> want;  // key -> value
    std::map<std::string, std::string> have;  // what the store holds (as far as we know)
    store::LeaseId lease = 0;                 // the lease `have` was written under
  };
  Status Apply(Entry& e, store::LeaseId lease);

  store::Store& store_;
  const store::Keys keys_;
  const std::string advertise_ip_;
  const std::function<store::LeaseId()> lease_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;  // by alloc id
  std::set<std::string> closed_;
};

}  // namespace berth::agent
