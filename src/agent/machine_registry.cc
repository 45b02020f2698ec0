#include "agent/machine_registry.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace berth::agent {

nlohmann::json MachineInfo::ToJson() const {
  return {{"id", id},        {"address", api_address}, {"hostname", hostname},
          {"os", os},        {"cpus", cpus},           {"memory_bytes", memory_bytes},
          {"meta", meta},    {"version", version},     {"started_at", started_at_ms},
          {"eligible", true}};
}

MachineInfo MachineInfo::FromSystem() {
  MachineInfo m;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) m.hostname = host;
  struct utsname u {};
  if (uname(&u) == 0) m.os = std::string(u.sysname) + " " + u.release;
  m.cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) m.memory_bytes = static_cast<int64_t>(pages) * page_size;
  return m;
}

MachineRegistry::MachineRegistry(store::Store& store, store::Keys keys, MachineInfo info,
                                 std::chrono::seconds ttl)
    : store_(store), keys_(std::move(keys)), info_(std::move(info)), ttl_(ttl) {}

MachineRegistry::~MachineRegistry() {
  Stop(/*revoke=*/false);
}

Status MachineRegistry::Register() {
  BERTH_ASSIGN_OR_RETURN(store::LeaseId lease, store_.GrantLease(ttl_));
  auto put = store_.Put(keys_.Machine(info_.id), Record().dump(), lease);
  if (!put.ok()) {
    store_.RevokeLease(lease).IgnoreError();
    return put.status();
  }
  lease_ = lease;
  spdlog::info("machine {} registered (lease {:x}, ttl {}s)", info_.id, lease, ttl_.count());
  if (on_registered_) on_registered_();
  return Status::Ok();
}

nlohmann::json MachineRegistry::Record() const {
  nlohmann::json j = info_.ToJson();
  MachineUsage u;
  {
    std::lock_guard lock(mu_);
    u = usage_;
  }
  int64_t cpu = static_cast<int64_t>(info_.cpus) * 1000;
  j["resources"] = {
      {"cpu", cpu},
      {"memory_bytes", info_.memory_bytes},
      {"used", {{"cpu", u.cpu}, {"memory_bytes", u.memory_bytes}, {"allocs", u.allocs}}},
      {"free", {{"cpu", cpu - u.cpu}, {"memory_bytes", info_.memory_bytes - u.memory_bytes}}}};
  return j;
}

void MachineRegistry::SetUsage(const MachineUsage& usage) {
  {
    std::lock_guard lock(mu_);
    if (usage_ == usage) return;
    usage_ = usage;
    usage_dirty_ = true;
  }
  cv_.notify_all();
}

Status MachineRegistry::Start() {
  Status first = Register();
  thread_ = std::thread([this] { Loop(); });
  return first;
}

void MachineRegistry::Loop() {
  auto interval = std::max(std::chrono::milliseconds(ttl_) / 3, std::chrono::milliseconds(200));
  bool warned = false;
  auto last_keepalive = std::chrono::steady_clock::now();
  std::unique_lock lock(mu_);
  while (!stop_) {
    // Retry sooner while unregistered.
    cv_.wait_for(lock, lease_ ? interval : std::chrono::milliseconds(500),
                 [&] { return stop_ || (usage_dirty_ && lease_ != 0); });
    if (stop_) break;
    bool usage_changed = usage_dirty_ && lease_ != 0;
    usage_dirty_ = false;
    lock.unlock();
    Status st;
    if (usage_changed) {
      auto put = store_.Put(keys_.Machine(info_.id), Record().dump(), lease_);
      st = put.ok() ? Status::Ok() : put.status();
      if (!st.ok()) {
        std::lock_guard relock(mu_);
        usage_dirty_ = true;  // written again with the next keep-alive
      } else if (std::chrono::steady_clock::now() - last_keepalive >= interval) {
        // A put does not refresh the lease: usage changing all the time must not starve it.
        auto ka = store_.KeepAlive(lease_);
        if (ka.ok()) last_keepalive = std::chrono::steady_clock::now();
      }
    } else if (lease_ == 0) {
      st = Register();
    } else {
      auto ka = store_.KeepAlive(lease_);
      if (ka.ok()) last_keepalive = std::chrono::steady_clock::now();
      if (!ka.ok() && ka.status().code() == Code::kNotFound) {
        spdlog::warn("machine {}: lease ended, registering again", info_.id);
        lease_ = 0;
        st = Register();
      } else {
        st = ka.status();
      }
    }
    if (!st.ok() && !warned) {
      spdlog::warn("machine {}: cannot reach the store ({}); retrying", info_.id, st.ToString());
      warned = true;
    } else if (st.ok() && warned) {
      spdlog::info("machine {}: store reachable again", info_.id);
      warned = false;
    }
    lock.lock();
  }
}

void MachineRegistry::Stop(bool revoke) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  store::LeaseId lease = lease_.exchange(0);
  if (revoke && lease != 0) store_.RevokeLease(lease).IgnoreError();
}

}  // namespace berth::agent
