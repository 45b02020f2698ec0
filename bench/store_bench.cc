// berth_store_bench: one workload against the embedded store and a real etcd, side by side.
//
// Measures puts/s (one writer, then many concurrent writers), gets/s (one reader, then many)
// and watch delivery latency: the time from issuing a Put to the watch callback receiving its
// event, over a run of sequential puts (reported with the Put latency itself, since on disk
// most of it is the commit's fsync). Prints a markdown table on stdout.
//
//   berth_store_bench --embedded=/tmp/x/store.db|memory: [--etcd=127.0.0.1:2379] [--sync=1]
//                     [--puts=2000] [--threads=16] [--concurrent-puts=8000] [--gets=20000]
//                     [--watch-puts=2000] [--value-size=128] [--rounds=1]
//
// Single-threaded driver; the stores' own threads do the rest.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "store/embedded_store.h"
#include "store/etcd_store.h"

namespace berth::store {
namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::string embedded_path;
  std::string etcd_endpoints;
  bool sync = true;
  int puts = 2000;
  int threads = 16;
  int concurrent_puts = 8000;
  int gets = 20000;
  int watch_puts = 2000;
  int value_size = 128;
  int rounds = 1;  // backends alternate round by round; each figure is the median
};

struct Figures {
  double seq_puts = 0;
  double conc_puts = 0;
  double seq_gets = 0;
  double conc_gets = 0;
  double put_p50_us = 0;
  double put_p99_us = 0;
  double watch_p50_us = 0;
  double watch_p99_us = 0;
  double after_ack_p50_us = 0;
  double after_ack_p99_us = 0;
};

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

std::string Key(const std::string& prefix, int i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%06d", i);
  return prefix + buf;
}

// Runs `per_thread(t)` on `threads` threads and returns the wall time.
template <typename Fn>
Clock::duration RunThreads(int threads, Fn per_thread) {
  std::vector<std::thread> ts;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { per_thread(t); });
  for (auto& th : ts) th.join();
  return Clock::now() - start;
}

Result<Figures> RunWorkload(Store& store, const Config& cfg) {
  Figures f;
  const std::string value(static_cast<size_t>(cfg.value_size), 'v');
  const std::string prefix = "/bench/" + std::to_string(Clock::now().time_since_epoch().count());
  // Puts cycle over this many keys (updates, as a cluster does); gets read the ones written.
  const int kKeys = std::min(1000, cfg.puts);
  std::atomic<int> errors{0};

  // Warm up connections and caches.
  for (int i = 0; i < 50; ++i) {
    if (!store.Put(Key(prefix + "/seq/", i % kKeys), value).ok()) ++errors;
  }

  {
    const auto start = Clock::now();
    for (int i = 0; i < cfg.puts; ++i) {
      auto r = store.Put(Key(prefix + "/seq/", i % kKeys), value);
      if (!r.ok()) return r.status().Annotate("sequential put");
    }
    f.seq_puts = cfg.puts / Seconds(Clock::now() - start);
  }
  {
    const int per = cfg.concurrent_puts / cfg.threads;
    const auto took = RunThreads(cfg.threads, [&](int t) {
      for (int i = 0; i < per; ++i) {
        if (!store.Put(Key(prefix + "/conc/" + std::to_string(t) + "/", i % kKeys), value).ok()) {
          ++errors;
        }
      }
    });
    f.conc_puts = per * cfg.threads / Seconds(took);
  }
  {
    std::mt19937 rng(42);
    const auto start = Clock::now();
    for (int i = 0; i < cfg.gets; ++i) {
      auto r = store.Get(Key(prefix + "/seq/", static_cast<int>(rng() % kKeys)));
      if (!r.ok() || !r->has_value()) return Internal("get failed: " + r.status().ToString());
    }
    f.seq_gets = cfg.gets / Seconds(Clock::now() - start);
  }
  {
    const int per = cfg.gets / cfg.threads;
    const auto took = RunThreads(cfg.threads, [&](int t) {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < per; ++i) {
        auto r = store.Get(Key(prefix + "/seq/", static_cast<int>(rng() % kKeys)));
        if (!r.ok() || !r->has_value()) ++errors;
      }
    });
    f.conc_gets = per * cfg.threads / Seconds(took);
  }
  {
    const int n = cfg.watch_puts;
    std::vector<Clock::time_point> sent(static_cast<size_t>(n));
    std::vector<Clock::time_point> acked(static_cast<size_t>(n));
    std::vector<Clock::time_point> received(static_cast<size_t>(n));
    std::mutex mu;
    std::condition_variable cv;
    int got = 0;
    const std::string wprefix = prefix + "/watch/";
    auto watch = store.Watch(wprefix, 0, [&](const WatchResponse& r) {
      const auto now = Clock::now();
      std::lock_guard lk(mu);
      for (const Event& e : r.events) {
        const int i = std::stoi(e.kv.value.substr(0, e.kv.value.find(' ')));
        if (i >= 0 && i < n) received[static_cast<size_t>(i)] = now;
        ++got;
      }
      cv.notify_all();
    });
    if (!watch.ok()) return watch.status().Annotate("watch");
    // etcd's watch stream is established asynchronously: wait until a probe write arrives.
    {
      const std::string probe = std::to_string(n) + " probe";
      if (!store.Put(wprefix + "probe", probe).ok()) ++errors;
      std::unique_lock lk(mu);
      if (!cv.wait_for(lk, std::chrono::seconds(30), [&] { return got >= 1; })) {
        return DeadlineExceeded("watch never delivered the probe");
      }
      got = 0;
    }
    for (int i = 0; i < n; ++i) {
      const std::string v = std::to_string(i) + " " + value;
      sent[static_cast<size_t>(i)] = Clock::now();
      if (!store.Put(Key(wprefix, i % kKeys), v).ok()) ++errors;
      acked[static_cast<size_t>(i)] = Clock::now();
    }
    {
      std::unique_lock lk(mu);
      if (!cv.wait_for(lk, std::chrono::seconds(60), [&] { return got >= n; })) {
        return DeadlineExceeded("watch lost events: " + std::to_string(got) + " of " +
                                std::to_string(n));
      }
    }
    (*watch)->Cancel();
    std::vector<double> put_us, watch_us;
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      put_us.push_back(Micros(acked[i] - sent[i]));
      watch_us.push_back(Micros(received[i] - sent[i]));
    }
    f.put_p50_us = Percentile(put_us, 0.50);
    f.put_p99_us = Percentile(put_us, 0.99);
    f.watch_p50_us = Percentile(watch_us, 0.50);
    f.watch_p99_us = Percentile(watch_us, 0.99);
    // The notification path alone: how long after the put was acknowledged its event
    // arrived (0 when it arrived before the acknowledgement).
    std::vector<double> after_ack;
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      after_ack.push_back(std::max(0.0, Micros(received[i] - acked[i])));
    }
    f.after_ack_p50_us = Percentile(after_ack, 0.50);
    f.after_ack_p99_us = Percentile(after_ack, 0.99);
  }
  if (errors.load() > 0) return Internal(std::to_string(errors.load()) + " operations failed");
  return f;
}

std::optional<Config> ParseFlags(int argc, char** argv) {
  Config c;
  std::map<std::string, int*> ints = {{"--puts", &c.puts},
                                      {"--threads", &c.threads},
                                      {"--concurrent-puts", &c.concurrent_puts},
                                      {"--gets", &c.gets},
                                      {"--watch-puts", &c.watch_puts},
                                      {"--value-size", &c.value_size},
                                      {"--rounds", &c.rounds}};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (eq == std::string::npos) return std::nullopt;
    const std::string name = arg.substr(0, eq);
    const std::string val = arg.substr(eq + 1);
    if (name == "--embedded") {
      c.embedded_path = val;
    } else if (name == "--etcd") {
      c.etcd_endpoints = val;
    } else if (name == "--sync") {
      c.sync = val != "0";
    } else if (ints.count(name) != 0) {
      char* end = nullptr;
      const long v = std::strtol(val.c_str(), &end, 10);
      if (end == val.c_str() || *end != '\0' || v <= 0) return std::nullopt;
      *ints[name] = static_cast<int>(v);
    } else {
      return std::nullopt;
    }
  }
  if (c.embedded_path.empty() && c.etcd_endpoints.empty()) return std::nullopt;
  if (c.threads > c.concurrent_puts || c.threads > c.gets) return std::nullopt;
  return c;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const size_t end = comma == std::string::npos ? s.size() : comma;
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

int Main(int argc, char** argv) {
  const std::optional<Config> cfg = ParseFlags(argc, argv);
  if (!cfg) {
    std::fprintf(stderr,
                 "usage: berth_store_bench [--embedded=FILE] [--etcd=HOST:PORT,...] [--sync=0|1]"
                 " [--puts=N] [--threads=N] [--concurrent-puts=N] [--gets=N] [--watch-puts=N]"
                 " [--value-size=BYTES] [--rounds=N]\n");
    return 2;
  }
  // Each backend opened once; rounds alternate between them so that a burst of load on a
  // shared machine does not land on one backend only.
  struct Column {
    std::string name;
    std::unique_ptr<Store> store;
    std::vector<Figures> runs;
  };
  std::vector<Column> columns;
  if (!cfg->embedded_path.empty()) {
    // "memory:" runs the in-memory store, whose reads share the writer's connection.
    const bool memory = cfg->embedded_path == "memory:";
    auto opened = EmbeddedStore::Open(
        EmbeddedOptions{memory ? "" : cfg->embedded_path, SystemClock::Shared(), true, cfg->sync});
    if (!opened.ok()) {
      std::fprintf(stderr, "embedded: %s\n", opened.status().ToString().c_str());
      return 1;
    }
    columns.push_back({memory      ? std::string("embedded (in memory)")
                       : cfg->sync ? std::string("embedded (SQLite WAL, fsync)")
                                   : std::string("embedded (SQLite WAL, no fsync)"),
                       std::move(opened).value(),
                       {}});
  }
  if (!cfg->etcd_endpoints.empty()) {
    EtcdOptions o;
    o.endpoints = Split(cfg->etcd_endpoints);
    auto opened = EtcdStore::Open(o);
    if (!opened.ok()) {
      std::fprintf(stderr, "etcd: %s\n", opened.status().ToString().c_str());
      return 1;
    }
    columns.push_back({"etcd (via EtcdStore)", std::move(opened).value(), {}});
  }
  for (int round = 0; round < cfg->rounds; ++round) {
    for (Column& c : columns) {
      auto f = RunWorkload(*c.store, *cfg);
      if (!f.ok()) {
        std::fprintf(stderr, "%s: %s\n", c.name.c_str(), f.status().ToString().c_str());
        return 1;
      }
      c.runs.push_back(*f);
    }
  }

  struct Row {
    std::string name;
    double Figures::*field;
    const char* format;
  };
  const std::string t = std::to_string(cfg->threads);
  const std::vector<Row> rows = {
      {"puts/s, 1 writer", &Figures::seq_puts, "%.0f"},
      {"puts/s, " + t + " writers", &Figures::conc_puts, "%.0f"},
      {"gets/s, 1 reader", &Figures::seq_gets, "%.0f"},
      {"gets/s, " + t + " readers", &Figures::conc_gets, "%.0f"},
      {"put latency p50 (µs)", &Figures::put_p50_us, "%.0f"},
      {"put latency p99 (µs)", &Figures::put_p99_us, "%.0f"},
      {"watch delivery p50, put issued → callback (µs)", &Figures::watch_p50_us, "%.0f"},
      {"watch delivery p99, put issued → callback (µs)", &Figures::watch_p99_us, "%.0f"},
      {"watch event after the put's ack, p50 (µs; 0 = before)", &Figures::after_ack_p50_us, "%.0f"},
      {"watch event after the put's ack, p99 (µs; 0 = before)", &Figures::after_ack_p99_us, "%.0f"},
  };
  std::printf("| metric |");
  for (const auto& c : columns) std::printf(" %s |", c.name.c_str());
  std::printf("\n|---|");
  for (size_t i = 0; i < columns.size(); ++i) std::printf("---:|");
  std::printf("\n");
  for (const Row& r : rows) {
    std::printf("| %s |", r.name.c_str());
    for (const auto& c : columns) {
      std::vector<double> values;
      for (const Figures& f : c.runs) values.push_back(f.*r.field);
      std::printf(" ");
      std::printf(r.format, Percentile(values, 0.5));  // the median of the rounds
      std::printf(" |");
    }
    std::printf("\n");
  }
  return 0;
}

}  // namespace
}  // namespace berth::store

int main(int argc, char** argv) {
  return berth::store::Main(argc, argv);
}
