#include "driver/exit_notifier.h"

#include <utility>

namespace berth::driver {

ExitNotifier::~ExitNotifier() {
  Set(nullptr);
}

void ExitNotifier::Set(Callback callback) {
  std::lock_guard set_lock(set_mu_);
  const bool stop = callback == nullptr;
  if (stop) {
    // The thread takes no more work from here on, even before the running callback returns.
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  {
    // call_mu_ first: a callback running on the thread finishes before it is replaced.
    std::lock_guard call_lock(call_mu_);
    std::lock_guard lock(mu_);
    callback_ = std::move(callback);
  }
  if (stop) {
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mu_);
    stopping_ = false;
    return;
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
}

bool ExitNotifier::active() const {
  std::lock_guard lock(mu_);
  return callback_ != nullptr;
}

void ExitNotifier::Post(std::string alloc_id) {
  {
    std::lock_guard lock(mu_);
    if (callback_ == nullptr) return;
    queue_.push_back(std::move(alloc_id));
  }
  cv_.notify_one();
}

void ExitNotifier::Run() {
  while (true) {
    std::string alloc_id;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      alloc_id = std::move(queue_.front());
      queue_.pop_front();
    }
    // callback_ changes only under call_mu_ as well, so it stays put while it runs; Set may
    // have cleared or replaced it since the pop.
    std::lock_guard call_lock(call_mu_);
    if (callback_) callback_(alloc_id);
  }
}

}  // namespace berth::driver
