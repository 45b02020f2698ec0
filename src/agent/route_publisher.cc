#include "agent/route_publisher.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

namespace berth::agent {

RoutePublisher::RoutePublisher(store::Store& store, store::Keys keys, std::string advertise_ip,
                               std::function<store::LeaseId()> lease)
    : store_(store),
      keys_(std::move(keys)),
      advertise_ip_(std::move(advertise_ip)),
      lease_(std::move(lease)) {}

std::map<std::string, std::string> RoutePublisher::Desired(const store::Keys& keys,
                                                           const std::string& advertise_ip,
                                                           const runtime::Allocation& alloc,
                                                           const runtime::AllocStatus& status) {
  std::map<std::string, std::string> out;
  const spec::Group* g = alloc.FindGroup();
  if (g == nullptr) return out;
  for (const auto& task : g->tasks) {
    if (!task.route) continue;
    const runtime::TaskReport* report = nullptr;
    for (const auto& t : status.tasks) {
      if (t.name == task.name) report = &t;
    }
    if (report == nullptr || report->state != runtime::RunState::kRunning) continue;
    if (!report->health.empty() && report->health != "healthy") continue;
    auto port = report->ports.find(task.route->port);
    if (port == report->ports.end() || port->second <= 0) continue;
    std::string ip =
        advertise_ip.find(':') != std::string::npos ? "[" + advertise_ip + "]" : advertise_ip;
    nlohmann::json value = {{"backend", "http://" + ip + ":" + std::to_string(port->second)},
                            {"path_prefix", task.route->path_prefix},
                            {"alloc", alloc.id},
                            {"job", alloc.job},
                            {"task", task.name},
                            {"machine", alloc.machine}};
    for (const auto& host : task.route->hosts) {
      out[keys.Routes() + host + "/" + alloc.id + "-" + task.name] = value.dump();
    }
  }
  return out;
}

Status RoutePublisher::Apply(Entry& e, store::LeaseId lease) {
  Status result;
  bool relet = lease != e.lease;
  for (auto it = e.have.begin(); it != e.have.end();) {
    if (e.want.count(it->first)) {
      ++it;
      continue;
    }
    auto del = store_.Delete(it->first);
    if (!del.ok()) {
      result = del.status();
      ++it;
      continue;
    }
    it = e.have.erase(it);
  }
  if (lease == 0) {
    // Not registered (store away): routes wait for the lease, never outlive the machine.
    return e.want.empty() ? result : Unavailable("no machine lease yet");
  }
  bool all_put = true;
  for (const auto& [key, value] : e.want) {
    auto have = e.have.find(key);
    if (!relet && have != e.have.end() && have->second == value) continue;
    auto put = store_.Put(key, value, lease);
    if (!put.ok()) {
      result = put.status();
      all_put = false;
      e.have.erase(key);
      continue;
    }
    e.have[key] = value;
  }
  if (all_put) e.lease = lease;
  return result;
}

Status RoutePublisher::Sync(const runtime::Allocation& alloc, const runtime::AllocStatus& status) {
  auto want = Desired(keys_, advertise_ip_, alloc, status);
  std::lock_guard lock(mu_);
  if (closed_.count(alloc.id)) return Status::Ok();
  auto it = entries_.find(alloc.id);
  if (it == entries_.end()) {
    if (want.empty()) return Status::Ok();
    it = entries_.emplace(alloc.id, Entry{}).first;
  }
  it->second.want = std::move(want);
  Status st = Apply(it->second, lease_());
  if (it->second.want.empty() && it->second.have.empty()) entries_.erase(it);
  return st;
}

void RoutePublisher::Close(const std::string& alloc_id) {
  std::lock_guard lock(mu_);
  closed_.insert(alloc_id);
  auto it = entries_.find(alloc_id);
  if (it == entries_.end()) return;
  it->second.want.clear();
  Status st = Apply(it->second, lease_());
  if (!st.ok()) spdlog::warn("alloc {}: removing its routes: {}", alloc_id, st.message());
  if (it->second.have.empty()) entries_.erase(it);
}

void RoutePublisher::Forget(const std::string& alloc_id) {
  std::lock_guard lock(mu_);
  closed_.erase(alloc_id);
}

void RoutePublisher::Refresh() {
  std::lock_guard lock(mu_);
  store::LeaseId lease = lease_();
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    bool stale = e.lease != lease || e.have.size() != e.want.size();
    if (stale) Apply(e, lease).IgnoreError();
    it = (e.want.empty() && e.have.empty()) ? entries_.erase(it) : std::next(it);
  }
}

}  // namespace berth::agent
