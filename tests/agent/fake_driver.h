// FakeDriver: an in-memory Driver for tests of the agent's runners and reconciler. Tasks "run"
// until the test calls Exit(); Start can be told to fail.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "driver/driver.h"

namespace berth::agent::testing {

class FakeDriver final : public driver::Driver {
 public:
  explicit FakeDriver(std::string name = "process") : name_(std::move(name)) {}

  std::string_view Name() const override { return name_; }

  Result<driver::TaskHandle> Start(const driver::StartRequest& r) override {
    std::lock_guard lock(mu_);
    starts_.push_back(r);
    if (unavailable_starts_ > 0) {
      --unavailable_starts_;
      return Unavailable("fake engine is down");
    }
    if (r.image == "missing") return NotFound("image missing not found");
    if (r.command == "/no/such/command") return NotFound("command /no/such/command not found");
    driver::TaskHandle h{name_, "fake-" + std::to_string(++next_id_), r.alloc_id, r.job, r.group,
                         r.task};
    tasks_[h.id] = {h, driver::TaskState::kRunning, 0};
    return h;
  }
  Status Stop(const driver::TaskHandle& h, std::chrono::milliseconds) override {
    std::lock_guard lock(mu_);
    auto it = tasks_.find(h.id);
    if (it == tasks_.end()) return NotFound("no task " + h.id);
    it->second.state = driver::TaskState::kExited;
    it->second.exit_code = 143;
    ++stops_;
    return Status::Ok();
  }
  Status Kill(const driver::TaskHandle& h) override { return Stop(h, {}); }
  Status Remove(const driver::TaskHandle& h) override {
    std::lock_guard lock(mu_);
    tasks_.erase(h.id);
    return Status::Ok();
  }
  Result<driver::TaskStatus> Inspect(const driver::TaskHandle& h) override {
    std::lock_guard lock(mu_);
    auto it = tasks_.find(h.id);
    if (it == tasks_.end()) return NotFound("no task " + h.id);
    driver::TaskStatus st;
    st.state = it->second.state;
    st.exit_code = it->second.exit_code;
    return st;
  }
  Result<int> Wait(const driver::TaskHandle&, std::chrono::milliseconds) override {
    return DeadlineExceeded("fake");
  }
  Status Logs(const driver::TaskHandle& h, const driver::LogOptions&,
              const std::function<bool(std::string_view)>& sink) override {
    sink("logs of " + h.id + "\n");
    return Status::Ok();
  }
  Result<std::vector<driver::TaskHandle>> List() override {
    std::lock_guard lock(mu_);
    if (list_unavailable_) return Unavailable("fake engine is down");
    std::vector<driver::TaskHandle> out;
    for (const auto& [id, t] : tasks_) out.push_back(t.handle);
    return out;
  }

  // Test controls.
  void Exit(const std::string& alloc_id, int code) {
    std::lock_guard lock(mu_);
    for (auto& [id, t] : tasks_) {
      if (t.handle.alloc_id == alloc_id && t.state == driver::TaskState::kRunning) {
        t.state = driver::TaskState::kExited;
        t.exit_code = code;
      }
    }
  }
  // Adds a running task as if started by an earlier agent.
  driver::TaskHandle Plant(const std::string& alloc_id, const std::string& task) {
    std::lock_guard lock(mu_);
    driver::TaskHandle h{name_, "planted-" + std::to_string(++next_id_), alloc_id, "j", "g", task};
    tasks_[h.id] = {h, driver::TaskState::kRunning, 0};
    return h;
  }
  int RunningCount() {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& [id, t] : tasks_) n += t.state == driver::TaskState::kRunning;
    return n;
  }
  size_t StartCount() {
    std::lock_guard lock(mu_);
    return starts_.size();
  }
  driver::StartRequest LastStart() {
    std::lock_guard lock(mu_);
    return starts_.back();
  }
  void FailStartsUnavailable(int n) {
    std::lock_guard lock(mu_);
    unavailable_starts_ = n;
  }
  void SetListUnavailable(bool v) {
    std::lock_guard lock(mu_);
    list_unavailable_ = v;
  }

 private:
  struct Task {
    driver::TaskHandle handle;
    driver::TaskState state;
    int exit_code;
  };
  const std::string name_;
  std::mutex mu_;
  std::map<std::string, Task> tasks_;
  std::vector<driver::StartRequest> starts_;
  int next_id_ = 0;
  int unavailable_starts_ = 0;
  bool list_unavailable_ = false;
  int stops_ = 0;
};

}  // namespace berth::agent::testing
