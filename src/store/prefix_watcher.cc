#include "store/prefix_watcher.h"

#include <algorithm>

namespace berth::store {

PrefixWatcher::PrefixWatcher(Store& store, std::string prefix, Callbacks callbacks)
    : PrefixWatcher(store, std::move(prefix), std::move(callbacks), Options{}) {}

PrefixWatcher::PrefixWatcher(Store& store, std::string prefix, Callbacks callbacks, Options options)
    : store_(store),
      prefix_(std::move(prefix)),
      callbacks_(std::move(callbacks)),
      options_(options) {}

PrefixWatcher::~PrefixWatcher() {
  Stop();
}

void PrefixWatcher::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void PrefixWatcher::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PrefixWatcher::Relist() {
  {
    std::lock_guard lock(mu_);
    relist_ = true;
  }
  cv_.notify_all();
}

bool PrefixWatcher::Sleep(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [this] { return stopping_ || relist_; });
  return !stopping_;
}

void PrefixWatcher::Loop() {
  auto backoff = options_.min_backoff;
  auto fail = [&](const Status& st) {
    if (callbacks_.on_error) callbacks_.on_error(st);
    bool go_on = Sleep(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
    return go_on;
  };
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      relist_ = false;
      queue_.clear();
    }
    auto listing = store_.Range(prefix_);
    if (!listing.ok()) {
      if (!fail(listing.status())) return;
      continue;
    }
    callbacks_.on_list(*listing);
    auto watch = store_.Watch(prefix_, listing->revision + 1, [this](const WatchResponse& r) {
      {
        std::lock_guard lock(mu_);
        queue_.push_back(r);
      }
      cv_.notify_all();
    });
    if (!watch.ok()) {
      if (!fail(watch.status())) return;
      continue;
    }
    backoff = options_.min_backoff;
    Status error = Status::Ok();
    while (error.ok()) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || relist_ || !queue_.empty(); });
      if (stopping_ || relist_) break;
      WatchResponse r = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      if (!r.status.ok()) {
        error = r.status;
      } else if (!r.events.empty()) {
        callbacks_.on_events(r.events);
      }
    }
    (*watch)->Cancel();
    if (!error.ok() && !fail(error)) return;
  }
}

}  // namespace berth::store
