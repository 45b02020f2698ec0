#include "engine/leader.h"

#include <spdlog/spdlog.h>

namespace berth::engine {

LeaderElection::LeaderElection(store::Store& store, store::Keys keys, LeaderRecord me,
                               std::chrono::seconds ttl, ClockPtr clock)
    : store_(store),
      keys_(std::move(keys)),
      me_(std::move(me)),
      ttl_(ttl),
      clock_(std::move(clock)) {}

LeaderElection::~LeaderElection() {
  Stop();
}

store::Compare LeaderElection::Fence(const store::Keys& keys, int64_t term) {
  return {keys.EngineLeader(),
          store::Compare::Target::kCreateRevision,
          store::Compare::Op::kEqual,
          {},
          term};
}

void LeaderElection::Start(Callbacks callbacks) {
  callbacks_ = std::move(callbacks);
  thread_ = std::thread([this] { Loop(); });
}

void LeaderElection::Stop(bool resign) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (watch_) {
    watch_->Cancel();
    watch_.reset();
  }
  if (!resign) {
    term_ = 0;
    lease_ = 0;
    return;
  }
  if (int64_t term = term_.exchange(0); term != 0) {
    // Resign: hand over at once instead of after the TTL.
    auto txn = store_.Txn({Fence(keys_, term)}, {store::TxnOp::Delete(keys_.EngineLeader())});
    if (!txn.ok()) spdlog::warn("engine: resigning: {}", txn.status().message());
    if (callbacks_.on_lost) callbacks_.on_lost();
  }
  if (lease_ != 0) {
    store_.RevokeLease(lease_).IgnoreError();
    lease_ = 0;
  }
}

void LeaderElection::WatchLeaderKey() {
  if (watch_ && watch_failed_) {
    watch_->Cancel();  // not from its own callback: this is the election thread
    watch_.reset();
  }
  if (watch_) return;
  watch_failed_ = false;
  auto w = store_.Watch(keys_.EngineLeader(), 0, [this](const store::WatchResponse& r) {
    bool deleted = !r.status.ok();
    if (!r.status.ok()) watch_failed_ = true;
    for (const auto& e : r.events) deleted |= e.type == store::Event::Type::kDelete;
    if (!deleted) return;
    {
      std::lock_guard lock(mu_);
      wake_ = true;
    }
    cv_.notify_all();
  });
  if (w.ok()) watch_ = std::move(*w);
}

bool LeaderElection::Campaign() {
  if (lease_ == 0) {
    auto lease = store_.GrantLease(ttl_);
    if (!lease.ok()) return false;
    lease_ = *lease;
  } else if (auto ka = store_.KeepAlive(lease_); !ka.ok()) {
    if (ka.status().code() == Code::kNotFound) lease_ = 0;
    return false;
  }
  LeaderRecord rec = me_;
  rec.since_ms = clock_->WallMillis();
  auto txn = store_.Txn({store::Compare::Absent(keys_.EngineLeader())},
                        {store::TxnOp::Put(keys_.EngineLeader(), rec.ToJson().dump(), lease_)});
  if (!txn.ok() || !txn->succeeded) return false;
  term_ = txn->revision;
  last_renewed_ = clock_->Now();
  spdlog::info("engine: machine {} leads (term {})", me_.machine, txn->revision);
  return true;
}

bool LeaderElection::StillLeading() {
  auto ka = store_.KeepAlive(lease_);
  if (ka.ok()) {
    auto got = store_.Get(keys_.EngineLeader());
    if (got.ok()) {
      if (!got->has_value() || (*got)->create_revision != term_.load()) return false;
      last_renewed_ = clock_->Now();
      return true;
    }
  } else if (ka.status().code() == Code::kNotFound) {
    lease_ = 0;
    return false;
  }
  // The store did not answer: keep leading until the lease may have run out.
  return clock_->Now() - last_renewed_ < ttl_;
}

void LeaderElection::StepDown(const char* why) {
  spdlog::warn("engine: machine {} stops leading: {}", me_.machine, why);
  term_ = 0;
  if (callbacks_.on_lost) callbacks_.on_lost();
}

void LeaderElection::Loop() {
  const auto interval =
      std::max<std::chrono::milliseconds>(ttl_ / 3, std::chrono::milliseconds(200));
  while (true) {
    {
      std::unique_lock lock(mu_);
      if (stop_) return;
    }
    if (!leading()) {
      WatchLeaderKey();
      if (Campaign()) {
        if (callbacks_.on_elected) callbacks_.on_elected(term_.load());
      }
    } else if (!StillLeading()) {
      StepDown("lost the leader lease");
    }
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, interval, [&] { return stop_ || wake_; });
    wake_ = false;
    if (stop_) return;
  }
}

}  // namespace berth::engine
