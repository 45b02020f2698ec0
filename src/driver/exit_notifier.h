// ExitNotifier: hands "a task of alloc X exited" to a driver's exit callback (see
// Driver::SetExitCallback) from a thread of its own.
//
// A driver learns of exits inside its own calls (ProcessDriver reaps a child in Inspect) or on its
// own threads (DockerDriver's event stream); either way it only Post()s, and the callback runs on
// the notifier's thread. So the agent's callback never runs inside a driver call or under a
// driver lock, and an agent that holds its own lock while calling the driver cannot deadlock
// with it. The thread exists only while a callback is set.
// Thread-safety: every method may be called from any thread concurrently, except that the
// callback must not call Set() (Set waits for a running callback to return).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace berth::driver {

class ExitNotifier {
 public:
  using Callback = std::function<void(const std::string& alloc_id)>;

  ExitNotifier() = default;
  ExitNotifier(const ExitNotifier&) = delete;
  ExitNotifier& operator=(const ExitNotifier&) = delete;
  // Stops and joins the thread; notifications not yet delivered are dropped.
  ~ExitNotifier();

  // Replaces the callback (starting the thread on the first one); nullptr stops the thread and
  // drops what is pending. When Set returns, the earlier callback is not running and will not
  // be called again.
  void Set(Callback callback);
  // Whether a callback is set (so a driver may skip work nobody would hear of).
  bool active() const;
  // Queues a notification for the callback; dropped if none is set.
  void Post(std::string alloc_id);

 private:
  void Run();

  std::mutex set_mu_;  // serialises Set(); held while the thread starts or is joined
  // Held while the callback runs, so Set can wait for a running call before replacing it.
  std::mutex call_mu_;
  mutable std::mutex mu_;  // guards queue_ and stopping_
  std::condition_variable cv_;
  Callback callback_;  // written under both call_mu_ and mu_, so either suffices to read it
  std::deque<std::string> queue_;
  bool stopping_ = false;
  std::thread thread_;  // joinable while a callback is set
};

}  // namespace berth::driver
