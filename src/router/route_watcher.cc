#include "router/route_watcher.h"

#include <spdlog/spdlog.h>

namespace berth::router {

RouteWatcher::RouteWatcher(store::Store& store, const std::string& key_prefix,
                           RouteTableHolder& holder, std::string default_backend,
                           store::PrefixWatcher::Options options)
    : holder_(holder), builder_(key_prefix + "routes/", std::move(default_backend)) {
  store::PrefixWatcher::Callbacks cb;
  cb.on_list = [this](const store::RangeResult& listing) {
    Published(builder_.Reset(listing), true);
  };
  cb.on_events = [this](const std::vector<store::Event>& events) {
    Published(builder_.Apply(events), false);
  };
  cb.on_error = [this](const Status& st) {
    spdlog::warn("router: route watch failed ({}); serving the last table and retrying",
                 st.ToString());
    std::lock_guard lock(mu_);
    ++stats_.errors;
  };
  watcher_ =
      std::make_unique<store::PrefixWatcher>(store, key_prefix + "routes/", std::move(cb), options);
}

RouteWatcher::~RouteWatcher() {
  Stop();
}

void RouteWatcher::Start() {
  watcher_->Start();
}

void RouteWatcher::Stop() {
  watcher_->Stop();
}

void RouteWatcher::Published(const RouteTablePtr& table, bool listing) {
  holder_.Publish(table);
  uint64_t rejected = builder_.rejected();
  {
    std::lock_guard lock(mu_);
    if (rejected != stats_.rejected) {
      spdlog::warn("router: skipped a malformed route: {}", builder_.last_error());
    }
    stats_.rejected = rejected;
    ++(listing ? stats_.listings : stats_.updates);
    stats_.revision = table->revision();
  }
  cv_.notify_all();
}

bool RouteWatcher::WaitReady(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return stats_.listings > 0; });
}

RouteWatcher::Stats RouteWatcher::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace berth::router
