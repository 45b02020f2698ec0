// ExitNotifier: delivery on its own thread, in order; nothing without a callback; Set waits for
// a running callback and the replaced one is never called again.
#include "driver/exit_notifier.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace berth::driver {
namespace {

using namespace std::chrono_literals;

// Deadlines only: nothing waits this long unless something is broken.
constexpr auto kLong = 60s;

// Collects alloc ids delivered to a callback.
class Collector {
 public:
  ExitNotifier::Callback Callback() {
    return [this](const std::string& alloc_id) {
      std::lock_guard lock(mu_);
      ids_.push_back(alloc_id);
      threads_.push_back(std::this_thread::get_id());
      cv_.notify_all();
    };
  }
  // Waits until `n` ids arrived; returns them.
  std::vector<std::string> WaitFor(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kLong, [&] { return ids_.size() >= n; });
    return ids_;
  }
  std::vector<std::thread::id> threads() {
    std::lock_guard lock(mu_);
    return threads_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> ids_;
  std::vector<std::thread::id> threads_;
};

TEST(ExitNotifierTest, DeliversInOrderFromItsOwnThread) {
  ExitNotifier notifier;
  EXPECT_FALSE(notifier.active());
  notifier.Post("dropped");  // no callback yet
  Collector collector;
  notifier.Set(collector.Callback());
  EXPECT_TRUE(notifier.active());
  for (const char* id : {"a", "b", "c"}) notifier.Post(id);
  EXPECT_EQ(collector.WaitFor(3), (std::vector<std::string>{"a", "b", "c"}));
  for (auto id : collector.threads()) EXPECT_NE(id, std::this_thread::get_id());
}

TEST(ExitNotifierTest, ClearingWaitsForARunningCallbackAndStopsDelivery) {
  ExitNotifier notifier;
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> calls{0};
  notifier.Set([&](const std::string&) {
    if (calls++ == 0) {
      entered.set_value();
      released.wait();
    }
  });
  notifier.Post("first");
  ASSERT_EQ(entered.get_future().wait_for(kLong), std::future_status::ready);
  notifier.Post("queued");  // dropped by the clear below (unless the clear comes too late)
  auto cleared = std::async(std::launch::async, [&] { notifier.Set(nullptr); });
  // Set must wait for the running callback.
  EXPECT_EQ(cleared.wait_for(100ms), std::future_status::timeout);
  release.set_value();
  ASSERT_EQ(cleared.wait_for(kLong), std::future_status::ready);
  EXPECT_FALSE(notifier.active());
  // Set joined the thread: nothing can be delivered any more.
  const int at_clear = calls.load();
  EXPECT_LE(at_clear, 2);
  notifier.Post("after");
  EXPECT_EQ(calls.load(), at_clear);

  // A callback set again works again.
  Collector collector;
  notifier.Set(collector.Callback());
  notifier.Post("again");
  EXPECT_EQ(collector.WaitFor(1), (std::vector<std::string>{"again"}));
}

TEST(ExitNotifierTest, ReplacedCallbackIsNotCalledAgain) {
  ExitNotifier notifier;
  Collector old_one;
  Collector new_one;
  notifier.Set(old_one.Callback());
  notifier.Post("1");
  ASSERT_EQ(old_one.WaitFor(1).size(), 1u);
  notifier.Set(new_one.Callback());
  notifier.Post("2");
  EXPECT_EQ(new_one.WaitFor(1), (std::vector<std::string>{"2"}));
  EXPECT_EQ(old_one.WaitFor(1), (std::vector<std::string>{"1"}));
}

TEST(ExitNotifierTest, DestroyingWithPendingNotificationsDoesNotHang) {
  std::atomic<int> calls{0};
  {
    ExitNotifier notifier;
    notifier.Set([&](const std::string&) { ++calls; });
    for (int i = 0; i < 1000; ++i) notifier.Post(std::to_string(i));
  }
  EXPECT_LE(calls.load(), 1000);
}

}  // namespace
}  // namespace berth::driver
