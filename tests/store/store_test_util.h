// Helpers shared by the store tests: collecting watch events, polling for a condition, and
// unique key prefixes (so tests can share one etcd without emptying it).
// Thread-safety: WatchLog is thread-safe; the rest are plain functions.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"

namespace berth::store::testing {

// Generous, since the tests run on slow, busy machines; only a failing test waits this long.
inline constexpr std::chrono::seconds kPatience{30};

// Polls `done` until it holds or kPatience passes. Returns whether it held.
inline bool Eventually(const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + kPatience;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// A key prefix no other test (in this or an earlier run) uses.
inline std::string UniquePrefix(const std::string& test_name) {
  static const std::string run = [] {
    std::random_device rd;
    return std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "-" +
           std::to_string(rd());
  }();
  static std::atomic<int> counter{0};
  std::string name = test_name;
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  return "/berth-test/" + run + "/" + name + "-" + std::to_string(counter++) + "/";
}

// Collects what a watch delivers, and checks that callbacks never overlap.
class WatchLog {
 public:
  WatchCallback Callback() {
    return [this](const WatchResponse& response) {
      if (in_callback_.fetch_add(1) != 0) overlapped_ = true;
      if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
      {
        std::lock_guard lock(mu_);
        ++calls_;
        for (const Event& e : response.events) events_.push_back(e);
        if (!response.status.ok()) {
          finals_.push_back(response);
        } else if (response.events.empty()) {
          empty_batches_ = true;
        }
      }
      in_callback_.fetch_sub(1);
      cv_.notify_all();
    };
  }

  // Makes every callback take this long (a slow consumer).
  void SetDelay(std::chrono::milliseconds delay) { delay_ = delay; }

  bool WaitForEvents(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kPatience, [&] { return events_.size() >= n; });
  }
  // Waits until an event for `key` has arrived.
  bool WaitForKey(const std::string& key) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kPatience, [&] {
      for (const Event& e : events_) {
        if (e.kv.key == key) return true;
      }
      return false;
    });
  }
  bool WaitForFinal() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kPatience, [&] { return !finals_.empty(); });
  }

  std::vector<Event> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::vector<WatchResponse> finals() const {
    std::lock_guard lock(mu_);
    return finals_;
  }
  int calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  bool overlapped() const { return overlapped_; }
  bool empty_batches() const {
    std::lock_guard lock(mu_);
    return empty_batches_;
  }

 private:
  std::atomic<int> in_callback_{0};
  std::atomic<bool> overlapped_{false};
  std::chrono::milliseconds delay_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;          // guarded by mu_
  std::vector<WatchResponse> finals_;  // guarded by mu_
  int calls_ = 0;                      // guarded by mu_
  bool empty_batches_ = false;         // guarded by mu_
};

inline std::string EnvOr(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : fallback;
}

inline std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace berth::store::testing
