#include "store/etcd_store.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "rpc.grpc.pb.h"

namespace berth::store {

namespace pb = etcdserverpb;
using SteadyClock = std::chrono::steady_clock;

namespace {

// How a failed attempt may be retried on another endpoint.
enum class Failure {
  kNotDelivered,  // the request never reached a member (connection refused, no leader yet)
  kTransient,     // a member may have seen it (connection lost mid-call, server-side timeout)
  kFinal,         // an answer: retrying elsewhere would get the same one
};

bool Contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

// Whether the error says no connection to the member could be made at all.
bool IsConnectFailure(const grpc::Status& s) {
  const std::string& m = s.error_message();
  return s.error_code() == grpc::StatusCode::UNAVAILABLE &&
         (Contains(m, "failed to connect") || Contains(m, "Failed to connect") ||
          Contains(m, "Connection refused") || Contains(m, "DNS resolution failed") ||
          Contains(m, "Name resolution failure") ||
          Contains(m, "connections to all backends failing"));
}

Failure Classify(const grpc::Status& s) {
  const std::string& m = s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      if (IsConnectFailure(s)) return Failure::kNotDelivered;
      // etcd refuses these before proposing anything to raft.
      if (Contains(m, "etcdserver: no leader") || Contains(m, "etcdserver: not capable") ||
          Contains(m, "etcdserver: server stopped")) {
        return Failure::kNotDelivered;
      }
      return Failure::kTransient;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Failure::kTransient;
    case grpc::StatusCode::UNKNOWN:
      // raft drops proposals while there is no leader: never applied, safe to send again.
      if (Contains(m, "proposal dropped")) return Failure::kNotDelivered;
      return Failure::kFinal;
    default:
      return Failure::kFinal;
  }
}

Code MapCode(const grpc::Status& s) {
  const std::string& m = s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::OK:
      return Code::kOk;
    case grpc::StatusCode::NOT_FOUND:
      return Code::kNotFound;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return Code::kInvalidArgument;
    case grpc::StatusCode::ALREADY_EXISTS:
      return Code::kAlreadyExists;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return Code::kFailedPrecondition;
    case grpc::StatusCode::OUT_OF_RANGE:
      return Contains(m, "compacted") ? Code::kCompacted : Code::kInvalidArgument;
    case grpc::StatusCode::PERMISSION_DENIED:
      return Code::kPermissionDenied;
    case grpc::StatusCode::UNAUTHENTICATED:
      return Code::kUnauthenticated;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:  // "too many requests", "database space exceeded"
    case grpc::StatusCode::UNAVAILABLE:
      return Code::kUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Code::kDeadlineExceeded;
    case grpc::StatusCode::CANCELLED:
      return Code::kCancelled;
    default:
      return Code::kInternal;
  }
}

Status FromGrpc(const grpc::Status& s, const std::string& endpoint) {
  if (s.ok()) return Status::Ok();
  return Status(MapCode(s), "etcd " + endpoint + ": " + s.error_message());
}

Result<std::string> ReadFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return InvalidArgument("etcd " + std::string(what) + " " + path + ": cannot be read");
  }
  std::ostringstream data;
  data << in.rdbuf();
  if (!in.good() && !in.eof()) {
    return InvalidArgument("etcd " + std::string(what) + " " + path + ": read error");
  }
  return data.str();
}

// [key, range_end) covering every key that starts with `prefix`.
std::pair<std::string, std::string> PrefixRange(std::string_view prefix) {
  // etcd spells "from the start" and "to the end" as a single zero byte.
  std::string key = prefix.empty() ? std::string(1, '\0') : std::string(prefix);
  std::string end = PrefixEnd(prefix);
  if (end.empty()) end = std::string(1, '\0');
  return {std::move(key), std::move(end)};
}

KeyValue FromPb(const pb::KeyValue& kv) {
  KeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

void ToPb(const TxnOp& op, pb::RequestOp* out) {
  switch (op.kind) {
    case TxnOp::Kind::kPut: {
      pb::PutRequest* put = out->mutable_request_put();
      put->set_key(op.key);
      put->set_value(op.value);
      put->set_lease(op.lease);
      break;
    }
    case TxnOp::Kind::kDelete:
      out->mutable_request_delete_range()->set_key(op.key);
      break;
    case TxnOp::Kind::kDeletePrefix: {
      auto [key, end] = PrefixRange(op.key);
      pb::DeleteRangeRequest* del = out->mutable_request_delete_range();
      del->set_key(std::move(key));
      del->set_range_end(std::move(end));
      break;
    }
  }
}

void ToPb(const Compare& c, pb::Compare* out) {
  out->set_key(c.key);
  switch (c.op) {
    case Compare::Op::kEqual:
      out->set_result(pb::Compare::EQUAL);
      break;
    case Compare::Op::kNotEqual:
      out->set_result(pb::Compare::NOT_EQUAL);
      break;
    case Compare::Op::kLess:
      out->set_result(pb::Compare::LESS);
      break;
    case Compare::Op::kGreater:
      out->set_result(pb::Compare::GREATER);
      break;
  }
  switch (c.target) {
    case Compare::Target::kValue:
      out->set_target(pb::Compare::VALUE);
      out->set_value(c.value);
      break;
    case Compare::Target::kVersion:
      out->set_target(pb::Compare::VERSION);
      out->set_version(c.number);
      break;
    case Compare::Target::kCreateRevision:
      out->set_target(pb::Compare::CREATE);
      out->set_create_revision(c.number);
      break;
    case Compare::Target::kModRevision:
      out->set_target(pb::Compare::MOD);
      out->set_mod_revision(c.number);
      break;
  }
}

}  // namespace

// The endpoints, one channel each, and the fail-over policy. Shared by the store and its
// watches so a watch may outlive the store. Thread-safe: the endpoint list is immutable; the
// preferred endpoint is an atomic index.
class EtcdConnection {
 public:
  struct Endpoint {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<pb::KV::Stub> kv;
    std::unique_ptr<pb::Watch::Stub> watch;
    std::unique_ptr<pb::Lease::Stub> lease;
  };

  // Whether a call may be sent again to another endpoint after a failure that leaves its fate
  // unknown. Reads and keep-alives may; writes may not (they would apply twice).
  enum class Retry { kIdempotent, kAtMostOnce };

  static Result<std::shared_ptr<EtcdConnection>> Open(const EtcdOptions& options) {
    if (options.endpoints.empty()) return InvalidArgument("etcd: no endpoints given");
    for (const std::string& address : options.endpoints) {
      if (address.empty()) return InvalidArgument("etcd: empty endpoint");
    }
    if (options.request_timeout.count() <= 0) {
      return InvalidArgument("etcd: request timeout must be positive");
    }
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (!options.ca_file.empty()) {
      grpc::SslCredentialsOptions ssl;
      BERTH_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile(options.ca_file, "CA file"));
      if (options.cert_file.empty() != options.key_file.empty()) {
        return InvalidArgument("etcd: a client certificate needs both cert_file and key_file");
      }
      if (!options.cert_file.empty()) {
        BERTH_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadFile(options.cert_file, "certificate file"));
        BERTH_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadFile(options.key_file, "key file"));
      }
      creds = grpc::SslCredentials(ssl);
    } else if (!options.cert_file.empty() || !options.key_file.empty()) {
      return InvalidArgument("etcd: a client certificate needs ca_file (TLS) too");
    } else {
      creds = grpc::InsecureChannelCredentials();
    }

    grpc::ChannelArguments args;
    // A restarted member is noticed within a second, not after gRPC's default 2-minute backoff.
    // gRPC also takes the minimum backoff as the time limit of one connection attempt
    // (TCP + TLS handshake): a second leaves room for a busy member, and its 20 s default
    // would keep a restarted member unused for that long.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // Notice a member that vanished without closing its connection (watch streams are
    // otherwise silent). etcd rejects pings more frequent than every 5 s.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    args.SetMaxReceiveMessageSize(INT_MAX);  // a large Range answer is not an error
    // Each endpoint gets its own connection, so one failing member cannot affect another's.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);

    auto conn = std::shared_ptr<EtcdConnection>(new EtcdConnection());
    conn->request_timeout_ = options.request_timeout;
    conn->tls_ = !options.ca_file.empty();
    for (const std::string& address : options.endpoints) {
      Endpoint ep;
      ep.address = address;
      ep.channel = grpc::CreateCustomChannel(address, creds, args);
      ep.kv = pb::KV::NewStub(ep.channel);
      ep.watch = pb::Watch::NewStub(ep.channel);
      ep.lease = pb::Lease::NewStub(ep.channel);
      conn->endpoints_.push_back(std::move(ep));
    }
    BERTH_RETURN_IF_ERROR(conn->StartReconnector());
    return conn;
  }

  ~EtcdConnection() {
    if (!reconnector_.joinable()) return;
    {
      std::lock_guard lock(reconnect_mu_);
      stopping_ = true;
    }
    reconnector_.join();
  }

  size_t size() const { return endpoints_.size(); }
  const Endpoint& endpoint(size_t i) const { return endpoints_[i % endpoints_.size()]; }
  std::chrono::milliseconds request_timeout() const { return request_timeout_; }
  size_t Preferred() const { return preferred_.load(std::memory_order_relaxed); }

  // Moves the preferred endpoint past `index`, unless another call already moved it.
  void MarkFailed(size_t index) {
    size_t expected = index;
    preferred_.compare_exchange_strong(expected, (index + 1) % endpoints_.size());
  }

  std::string EndpointList() const {
    std::string out;
    for (const Endpoint& ep : endpoints_) {
      if (!out.empty()) out += ",";
      out += ep.address;
    }
    return out;
  }

  std::string Describe() const { return "etcd://" + EndpointList() + (tls_ ? " (TLS)" : ""); }

  // Runs `attempt(endpoint, context)` (which returns a grpc::Status) on the preferred endpoint,
  // moving to the next one on failures that allow it, until it succeeds, fails for good, or
  // the request timeout runs out. `what` names the operation in errors.
  template <typename Attempt>
  Status Call(std::string_view what, Retry retry, Attempt&& attempt) {
    const auto start = SteadyClock::now();
    const auto deadline = start + request_timeout_;
    const size_t n = endpoints_.size();
    const size_t first = Preferred();
    bool reached = false;  // some member answered during the current round
    int round = 0;
    grpc::Status last;
    std::string last_address;
    for (size_t i = 0;; ++i) {
      if (i > 0 && i % n == 0) {
        // A whole round failed. If no member could even be connected to, nothing is there:
        // say so now rather than at the deadline. Otherwise (an election, a member
        // restarting) wait a little and go round again.
        if (!reached) break;
        reached = false;
        auto pause = std::chrono::milliseconds(std::min(50 << std::min(round, 4), 500));
        ++round;
        if (SteadyClock::now() + pause >= deadline) break;
        std::this_thread::sleep_for(pause);
      }
      auto now = SteadyClock::now();
      if (now >= deadline) break;
      const size_t index = (first + i) % n;
      const Endpoint& ep = endpoints_[index];
      grpc::ClientContext context;
      auto attempt_deadline = deadline;
      if (retry == Retry::kIdempotent && n > 1) {
        // Leave time for the other endpoints if this one hangs.
        auto share = std::max<SteadyClock::duration>(request_timeout_ / n, std::chrono::seconds(1));
        attempt_deadline = std::min(deadline, now + share);
      }
      // gRPC takes deadlines on the system clock only.
      context.set_deadline(std::chrono::system_clock::now() + (attempt_deadline - now));
      grpc::Status s = attempt(ep, context);
      if (s.ok()) {
        preferred_.store(index, std::memory_order_relaxed);
        return Status::Ok();
      }
      Failure failure = Classify(s);
      if (failure == Failure::kFinal) return FromGrpc(s, ep.address).Annotate(what);
      if (failure == Failure::kTransient && retry == Retry::kAtMostOnce) {
        Status st = FromGrpc(s, ep.address);
        return Status(st.code(), st.message() + " (the write may or may not have been applied)")
            .Annotate(what);
      }
      if (!IsConnectFailure(s)) reached = true;
      last = s;
      last_address = ep.address;
      MarkFailed(index);
    }
    auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
    std::string msg = "etcd unavailable: no endpoint of " + EndpointList() + " answered within " +
                      std::to_string(waited) + "ms";
    if (!last_address.empty()) msg += " (last: " + last_address + ": " + last.error_message() + ")";
    return Unavailable(std::move(msg)).Annotate(what);
  }

 private:
  EtcdConnection() = default;

  // gRPC makes progress on a connection only while some thread polls for it: an RPC in
  // flight, or a connectivity watch. A channel in TRANSIENT_FAILURE fails RPCs at once, so
  // without a watch its reconnection attempts to a restarted member would never complete.
  // This thread keeps a short watch on every channel's state, and thereby polls for them.
  Status StartReconnector() {
    for (size_t i = 0; i < endpoints_.size(); ++i) ArmWatch(i);
    armed_ = endpoints_.size();  // each watch re-arms itself until stopping
    try {
      reconnector_ = std::thread([this] { Reconnect(); });
    } catch (const std::system_error& e) {
      return Internal(std::string("etcd: cannot start reconnect thread: ") + e.what());
    }
    return Status::Ok();
  }

  void ArmWatch(size_t i) {
    const Endpoint& ep = endpoints_[i];
    auto state = ep.channel->GetState(/*try_to_connect=*/false);
    // Short watches, so the thread notices `stopping_` soon after the store is closed.
    auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(100);
    ep.channel->NotifyOnStateChange(state, deadline, &reconnect_cq_,
                                    reinterpret_cast<void*>(static_cast<uintptr_t>(i + 1)));
  }

  void Reconnect() {
    void* tag = nullptr;
    bool changed = false;
    while (reconnect_cq_.Next(&tag, &changed)) {
      bool stopping;
      {
        std::lock_guard lock(reconnect_mu_);
        stopping = stopping_;
      }
      if (stopping) {
        if (--armed_ == 0) reconnect_cq_.Shutdown();
        continue;
      }
      ArmWatch(static_cast<size_t>(reinterpret_cast<uintptr_t>(tag)) - 1);
    }
  }

  std::vector<Endpoint> endpoints_;
  std::chrono::milliseconds request_timeout_{5000};
  bool tls_ = false;
  std::atomic<size_t> preferred_{0};

  grpc::CompletionQueue reconnect_cq_;
  std::thread reconnector_;
  size_t armed_ = 0;  // watches outstanding once stopping; reconnector thread only
  std::mutex reconnect_mu_;
  bool stopping_ = false;  // guarded by reconnect_mu_
};

namespace {

// One etcd watch: a bidi stream on some endpoint and a reader thread that delivers events,
// resuming on the next endpoint from the last delivered revision + 1 when the stream breaks.
// The state is shared with the thread, so destroying the handle never strands the thread.
class EtcdWatch final : public Watch {
 public:
  struct State {
    std::shared_ptr<EtcdConnection> connection;
    std::string key;
    std::string range_end;
    WatchCallback callback;
    int64_t next_revision = 0;  // reader thread only: the first revision not yet delivered

    std::mutex mu;
    std::condition_variable cv;
    bool cancelled = false;                  // guarded by mu
    grpc::ClientContext* context = nullptr;  // the live stream's, for TryCancel; guarded by mu
    bool established = false;                // the first stream was created; guarded by mu
    bool setup_failed = false;               // no endpoint could create it; guarded by mu
    Status setup_error;                      // guarded by mu
  };

  explicit EtcdWatch(std::shared_ptr<State> state) : state_(std::move(state)) {}
  ~EtcdWatch() override { Cancel(); }

  // Starts the reader thread and waits until the watch exists on some member (so that every
  // change after this returns is delivered) or no endpoint could create it.
  Status Start() {
    try {
      thread_ = std::thread([state = state_] { Run(*state); });
    } catch (const std::system_error& e) {
      return Internal(std::string("etcd watch: cannot start thread: ") + e.what());
    }
    std::unique_lock lock(state_->mu);
    // The reader gives up by itself after the request timeout; the margin covers a member
    // that accepted the stream but never answered.
    auto limit = state_->connection->request_timeout() + std::chrono::seconds(1);
    bool done = state_->cv.wait_for(lock, limit,
                                    [&] { return state_->established || state_->setup_failed; });
    if (!done || state_->setup_failed) {
      Status error =
          done ? state_->setup_error
               : Unavailable("etcd unavailable: no endpoint of " +
                             state_->connection->EndpointList() + " accepted the watch in time");
      lock.unlock();
      Cancel();
      return error;
    }
    return Status::Ok();
  }

  void Cancel() override {
    {
      std::lock_guard lock(state_->mu);
      state_->cancelled = true;
      if (state_->context != nullptr) state_->context->TryCancel();
    }
    state_->cv.notify_all();
    if (!thread_.joinable()) return;
    if (thread_.get_id() == std::this_thread::get_id()) {
      // Called from our own callback (against the contract): joining would deadlock. The
      // thread holds the state and exits after the callback returns.
      thread_.detach();
      return;
    }
    thread_.join();
  }

 private:
  enum class StreamEnd {
    kOver,                // compacted, canceled by the server, or cancelled by us
    kUnreachable,         // no connection to the member could be made
    kBroken,              // the stream failed before the watch was created
    kBrokenAfterCreated,  // the stream worked, then broke (the member died)
  };
  static void Run(State& state);
  // Reads one stream until it breaks or the watch is over.
  static StreamEnd ReadStream(State& state, const EtcdConnection::Endpoint& ep);

  std::shared_ptr<State> state_;
  std::thread thread_;
};

void EtcdWatch::Run(State& state) {
  const auto setup_deadline = SteadyClock::now() + state.connection->request_timeout();
  int failures = 0;
  int unreachable = 0;  // consecutive endpoints that could not be connected to
  for (;;) {
    const size_t index = state.connection->Preferred();
    const EtcdConnection::Endpoint& ep = state.connection->endpoint(index);
    StreamEnd end = ReadStream(state, ep);
    std::unique_lock lock(state.mu);
    if (end == StreamEnd::kOver || state.cancelled) {
      if (!state.established && !state.setup_failed) state.established = true;
      state.cv.notify_all();
      return;
    }
    state.connection->MarkFailed(index);
    unreachable = end == StreamEnd::kUnreachable ? unreachable + 1 : 0;
    if (end == StreamEnd::kBrokenAfterCreated) {
      failures = 0;  // it was working: reconnect to the next endpoint at once
    } else if (!state.established && (SteadyClock::now() >= setup_deadline ||
                                      unreachable >= static_cast<int>(state.connection->size()))) {
      // Before the first creation, fail like any call: at once when nothing can be connected
      // to, else at the request timeout. Afterwards the watch retries until cancelled.
      state.setup_failed = true;
      state.setup_error = Unavailable("etcd unavailable: no endpoint of " +
                                      state.connection->EndpointList() + " accepted the watch");
      state.cv.notify_all();
      return;
    }
    // Back off a little once every endpoint has been tried; a cancel wakes us at once.
    ++failures;
    if (failures % static_cast<int>(state.connection->size()) == 0) {
      int rounds = failures / static_cast<int>(state.connection->size());
      auto pause = std::chrono::milliseconds(std::min(50 << std::min(rounds, 5), 1000));
      state.cv.wait_for(lock, pause, [&] { return state.cancelled; });
      if (state.cancelled) return;
    }
  }
}

EtcdWatch::StreamEnd EtcdWatch::ReadStream(State& state, const EtcdConnection::Endpoint& ep) {
  grpc::ClientContext context;
  {
    std::lock_guard lock(state.mu);
    if (state.cancelled) return StreamEnd::kOver;
    state.context = &context;
  }
  auto stream = ep.watch->Watch(&context);
  pb::WatchRequest request;
  pb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(state.key);
  create->set_range_end(state.range_end);
  create->set_start_revision(state.next_revision);

  bool over = false;
  bool created = false;
  if (stream->Write(request)) {
    pb::WatchResponse response;
    while (stream->Read(&response)) {
      {
        std::lock_guard lock(state.mu);
        if (state.cancelled) break;
      }
      if (response.compact_revision() > 0) {
        WatchResponse out;
        out.compact_revision = response.compact_revision();
        out.status = Compacted(
            "etcd " + ep.address + ": watch from revision " + std::to_string(state.next_revision) +
            " but history is compacted up to " + std::to_string(response.compact_revision()));
        state.callback(out);
        over = true;
        break;
      }
      if (response.canceled()) {
        WatchResponse out;
        out.status = Internal("etcd " + ep.address +
                              ": watch canceled by the server: " + response.cancel_reason());
        state.callback(out);
        over = true;
        break;
      }
      if (response.created()) {
        created = true;
        std::lock_guard lock(state.mu);
        state.established = true;
        state.cv.notify_all();
      }
      if (response.events_size() == 0) continue;
      WatchResponse out;
      out.events.reserve(static_cast<size_t>(response.events_size()));
      for (const pb::Event& ev : response.events()) {
        // Never deliver a revision twice, whatever a resumed stream replays.
        if (ev.kv().mod_revision() < state.next_revision) continue;
        Event event;
        event.type = ev.type() == pb::Event::DELETE ? Event::Type::kDelete : Event::Type::kPut;
        event.kv = FromPb(ev.kv());
        out.events.push_back(std::move(event));
      }
      if (out.events.empty()) continue;
      state.next_revision = out.events.back().kv.mod_revision + 1;
      state.callback(out);
    }
  }
  context.TryCancel();  // ends the stream if we stopped reading first
  grpc::Status finish = stream->Finish();
  std::lock_guard lock(state.mu);
  state.context = nullptr;
  if (over) return StreamEnd::kOver;
  if (created) return StreamEnd::kBrokenAfterCreated;
  return IsConnectFailure(finish) ? StreamEnd::kUnreachable : StreamEnd::kBroken;
}

}  // namespace

EtcdStore::EtcdStore(std::shared_ptr<EtcdConnection> connection)
    : connection_(std::move(connection)) {}

EtcdStore::~EtcdStore() = default;

Result<std::unique_ptr<EtcdStore>> EtcdStore::Open(const EtcdOptions& options) {
  BERTH_ASSIGN_OR_RETURN(auto connection, EtcdConnection::Open(options));
  return std::unique_ptr<EtcdStore>(new EtcdStore(std::move(connection)));
}

Result<StorePtr> OpenEtcdStore(const EtcdOptions& options) {
  BERTH_ASSIGN_OR_RETURN(auto store, EtcdStore::Open(options));
  return StorePtr(std::move(store));
}

std::string EtcdStore::Describe() const {
  return connection_->Describe();
}

Result<std::optional<KeyValue>> EtcdStore::Get(std::string_view key) {
  pb::RangeRequest request;
  request.set_key(std::string(key));
  pb::RangeResponse response;
  BERTH_RETURN_IF_ERROR(
      connection_->Call("get", EtcdConnection::Retry::kIdempotent,
                        [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
                          return ep.kv->Range(&context, request, &response);
                        }));
  if (response.kvs_size() == 0) return std::optional<KeyValue>();
  return std::optional<KeyValue>(FromPb(response.kvs(0)));
}

Result<RangeResult> EtcdStore::Range(std::string_view prefix, int64_t limit) {
  if (limit < 0) return InvalidArgument("range: negative limit");
  auto [key, end] = PrefixRange(prefix);
  pb::RangeRequest request;
  request.set_key(std::move(key));
  request.set_range_end(std::move(end));
  request.set_limit(limit);
  pb::RangeResponse response;
  BERTH_RETURN_IF_ERROR(
      connection_->Call("range", EtcdConnection::Retry::kIdempotent,
                        [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
                          return ep.kv->Range(&context, request, &response);
                        }));
  RangeResult result;
  result.kvs.reserve(static_cast<size_t>(response.kvs_size()));
  for (const pb::KeyValue& kv : response.kvs()) result.kvs.push_back(FromPb(kv));
  result.revision = response.header().revision();
  result.more = response.more();
  result.count = response.count();
  return result;
}

Result<int64_t> EtcdStore::Put(std::string_view key, std::string_view value, LeaseId lease) {
  pb::PutRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  request.set_lease(lease);
  pb::PutResponse response;
  BERTH_RETURN_IF_ERROR(
      connection_->Call("put", EtcdConnection::Retry::kAtMostOnce,
                        [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
                          return ep.kv->Put(&context, request, &response);
                        }));
  return response.header().revision();
}

Result<int64_t> EtcdStore::Delete(std::string_view key) {
  pb::DeleteRangeRequest request;
  request.set_key(std::string(key));
  pb::DeleteRangeResponse response;
  BERTH_RETURN_IF_ERROR(
      connection_->Call("delete", EtcdConnection::Retry::kAtMostOnce,
                        [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
                          return ep.kv->DeleteRange(&context, request, &response);
                        }));
  return response.deleted();
}

Result<int64_t> EtcdStore::DeletePrefix(std::string_view prefix) {
  auto [key, end] = PrefixRange(prefix);
  pb::DeleteRangeRequest request;
  request.set_key(std::move(key));
  request.set_range_end(std::move(end));
  pb::DeleteRangeResponse response;
  BERTH_RETURN_IF_ERROR(
      connection_->Call("delete prefix", EtcdConnection::Retry::kAtMostOnce,
                        [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
                          return ep.kv->DeleteRange(&context, request, &response);
                        }));
  return response.deleted();
}

Result<TxnResult> EtcdStore::Txn(const std::vector<Compare>& compares,
                                 const std::vector<TxnOp>& success,
                                 const std::vector<TxnOp>& failure) {
  pb::TxnRequest request;
  for (const Compare& c : compares) ToPb(c, request.add_compare());
  for (const TxnOp& op : success) ToPb(op, request.add_success());
  for (const TxnOp& op : failure) ToPb(op, request.add_failure());
  pb::TxnResponse response;
  BERTH_RETURN_IF_ERROR(
      connection_->Call("txn", EtcdConnection::Retry::kAtMostOnce,
                        [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
                          return ep.kv->Txn(&context, request, &response);
                        }));
  TxnResult result;
  result.succeeded = response.succeeded();
  result.revision = response.header().revision();
  return result;
}

Result<LeaseId> EtcdStore::GrantLease(std::chrono::seconds ttl) {
  if (ttl.count() <= 0) return InvalidArgument("grant lease: TTL must be positive");
  pb::LeaseGrantRequest request;
  request.set_ttl(ttl.count());
  pb::LeaseGrantResponse response;
  BERTH_RETURN_IF_ERROR(
      connection_->Call("grant lease", EtcdConnection::Retry::kAtMostOnce,
                        [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
                          return ep.lease->LeaseGrant(&context, request, &response);
                        }));
  if (!response.error().empty()) return Internal("grant lease: etcd: " + response.error());
  return LeaseId{response.id()};
}

Result<std::chrono::seconds> EtcdStore::KeepAlive(LeaseId lease) {
  pb::LeaseKeepAliveRequest request;
  request.set_id(lease);
  pb::LeaseKeepAliveResponse response;
  // A keep-alive is a bidi stream in etcd's API; one request and its answer is all we need.
  BERTH_RETURN_IF_ERROR(connection_->Call(
      "keep alive", EtcdConnection::Retry::kIdempotent,
      [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
        auto stream = ep.lease->LeaseKeepAlive(&context);
        bool answered = stream->Write(request) && stream->WritesDone() && stream->Read(&response);
        grpc::Status s = stream->Finish();
        if (answered && s.ok()) return s;
        if (!s.ok()) return s;
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream closed unanswered");
      }));
  if (response.ttl() <= 0) {
    return NotFound("keep alive: lease " + std::to_string(lease) +
                    " not found (expired or revoked)");
  }
  return std::chrono::seconds(response.ttl());
}

Status EtcdStore::RevokeLease(LeaseId lease) {
  pb::LeaseRevokeRequest request;
  request.set_id(lease);
  pb::LeaseRevokeResponse response;
  return connection_->Call("revoke lease", EtcdConnection::Retry::kAtMostOnce,
                           [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
                             return ep.lease->LeaseRevoke(&context, request, &response);
                           });
}

Status EtcdStore::Compact(int64_t revision) {
  if (revision <= 0) return InvalidArgument("compact: revision must be positive");
  pb::CompactionRequest request;
  request.set_revision(revision);
  request.set_physical(true);  // return once watches from older revisions are refused
  pb::CompactionResponse response;
  Status s =
      connection_->Call("compact", EtcdConnection::Retry::kIdempotent,
                        [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
                          return ep.kv->Compact(&context, request, &response);
                        });
  // Compacting at or below the current compaction point changes nothing: not an error.
  if (s.code() == Code::kCompacted) return Status::Ok();
  return s;
}

Result<WatchPtr> EtcdStore::Watch(std::string_view prefix, int64_t start_revision,
                                  WatchCallback callback) {
  if (!callback) return InvalidArgument("watch: no callback");
  auto state = std::make_shared<EtcdWatch::State>();
  state->connection = connection_;
  std::tie(state->key, state->range_end) = PrefixRange(prefix);
  state->callback = std::move(callback);
  if (start_revision <= 0) {
    // "From now" is pinned to an explicit revision read here, so that a resumed stream knows
    // where to start and no change made after Watch() returns can be missed.
    pb::RangeRequest request;
    request.set_key(state->key);
    request.set_count_only(true);
    request.set_limit(1);
    pb::RangeResponse response;
    BERTH_RETURN_IF_ERROR(
        connection_->Call("watch", EtcdConnection::Retry::kIdempotent,
                          [&](const EtcdConnection::Endpoint& ep, grpc::ClientContext& context) {
                            return ep.kv->Range(&context, request, &response);
                          }));
    start_revision = response.header().revision() + 1;
  }
  state->next_revision = start_revision;
  auto watch = std::make_unique<EtcdWatch>(std::move(state));
  BERTH_RETURN_IF_ERROR(watch->Start());
  return WatchPtr(std::move(watch));
}

}  // namespace berth::store
