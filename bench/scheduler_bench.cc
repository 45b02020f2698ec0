// berth_scheduler_bench: placements/s of the scheduler library over 10,000 simulated machines.
//
// The cluster: 10,000 machines of three sizes (4 cores/8 GiB, 16/64, 64/256), 100 racks in 4
// zones, a few kernels and feature sets, 2% already drained. The workload: 100,000
// allocations in requests of 1 to 20 instances, of mixed sizes (100 to 2,000 cpu, 128 MiB to
// 4 GiB), 60% with constraints (==, !=, regexp, set_contains, version), 10% distinct_hosts, 5%
// static ports, 3% conflicts with other jobs, 2% affinity. Each iteration places the whole
// workload on a fresh cluster (building it is not timed) and reports placements/s. The
// exhaustive variant scores every feasible machine (candidate_limit -1) for comparison, over
// the first 5,000 allocations only (with the sampled default over the same 5,000 beside it).
// `machines_used` is how many machines ended with work: fewer is tighter packing. FromMachineRecord
// measures building the set from JSON records.
//
//   berth_scheduler_bench [--benchmark_filter=...] [--benchmark_repetitions=N]
//   BENCH_EXPLAIN=1 berth_scheduler_bench   # also prints each unplaced request and why
#include <benchmark/benchmark.h>

#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "scheduler/scheduler.h"

namespace berth::scheduler {
namespace {

constexpr int kMachines = 10'000;
constexpr int kAllocations = 100'000;

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

nlohmann::json MachineRecord(int i, std::mt19937_64& rng) {
  char id[32];
  std::snprintf(id, sizeof(id), "m-%05d", i);
  char host[32];
  std::snprintf(host, sizeof(host), "host-%05d", i);
  static const int kCores[] = {4, 16, 64};
  static const int64_t kMemoryGiB[] = {8, 64, 256};
  static const char* kKernels[] = {"5.10.0-28-amd64", "6.1.0-18-amd64", "6.6.13-fc-v1"};
  static const char* kFeatures[] = {"ssd", "ssd,gpu", "hdd", "ssd,nvme"};
  int size = static_cast<int>(rng() % 10);
  size = size < 3 ? 0 : size < 7 ? 1 : 2;
  int rack = i % 100;
  nlohmann::json meta = {{"rack", "r" + std::to_string(rack)},
                         {"zone", "z" + std::to_string(rack % 4 + 1)},
                         {"features", kFeatures[rng() % 4]}};
  return {{"id", id},
          {"hostname", host},
          {"os", std::string(rng() % 20 == 0 ? "FreeBSD " : "Linux ") + kKernels[rng() % 3]},
          {"cpus", kCores[size]},
          {"memory_bytes", kMemoryGiB[size] << 30},
          {"meta", meta},
          {"eligible", rng() % 50 != 0}};
}

const std::vector<nlohmann::json>& Records() {
  static const std::vector<nlohmann::json> records = [] {
    std::mt19937_64 rng(1);
    std::vector<nlohmann::json> out;
    for (int i = 0; i < kMachines; ++i) out.push_back(MachineRecord(i, rng));
    return out;
  }();
  return records;
}

MachineSet BuildSet() {
  MachineSet set;
  for (const nlohmann::json& r : Records()) {
    auto view = MachineView::FromMachineRecord(r);
    if (!view.ok() || !set.Add(std::move(*view)).ok()) std::abort();
  }
  return set;
}

// The workload, in requests; the strategy is filled in per benchmark.
std::vector<PlacementRequest> Workload(int allocations) {
  using spec::ConstraintOperator;
  std::mt19937_64 rng(2);
  std::vector<PlacementRequest> out;
  int total = 0;
  for (int j = 0; total < allocations; ++j) {
    PlacementRequest r;
    r.job = "job-" + std::to_string(j);
    r.group = "g";
    int shape = static_cast<int>(rng() % 10);
    r.count = shape < 4   ? 1
              : shape < 8 ? 2 + static_cast<int>(rng() % 4)
                          : 10 + static_cast<int>(rng() % 11);
    r.count = std::min(r.count, allocations - total);
    static const int64_t kCpu[] = {100, 250, 500, 1000, 2000};
    static const int64_t kMemMiB[] = {128, 256, 512, 1024, 4096};
    r.cpu = kCpu[rng() % 5];
    r.memory_bytes = kMemMiB[rng() % 5] << 20;
    int c = static_cast<int>(rng() % 20);
    switch (c) {
      case 0:
      case 1:
      case 2:
      case 3:
        r.constraints.push_back(
            {"meta.zone", ConstraintOperator::kEqual, "z" + std::to_string(rng() % 4 + 1)});
        break;
      case 4:
      case 5:
        r.constraints.push_back({"kernel.version", ConstraintOperator::kVersion, ">= 6.1, < 7"});
        break;
      case 6:
      case 7:
        r.constraints.push_back({"meta.features", ConstraintOperator::kSetContains, "ssd"});
        break;
      case 8:
        r.constraints.push_back({"hostname", ConstraintOperator::kRegexp, "^host-0[0-4]"});
        break;
      case 9:
      case 10:
        r.constraints.push_back({"os.name", ConstraintOperator::kNotEqual, "FreeBSD"});
        break;
      case 11:
        r.constraints.push_back(
            {"meta.rack", ConstraintOperator::kEqual, "r" + std::to_string(rng() % 100)});
        r.constraints.push_back({"meta.features", ConstraintOperator::kIsSet, ""});
        break;
      default:
        break;
    }
    if (rng() % 10 == 0) r.distinct_hosts = true;
    if (rng() % 20 == 0) r.ports.push_back(8000 + static_cast<int>(rng() % 50));
    if (j > 10 && rng() % 33 == 0) r.conflict_jobs.push_back("job-" + std::to_string(rng() % j));
    if (j > 10 && rng() % 50 == 0) r.affinity_jobs.push_back("job-" + std::to_string(rng() % j));
    total += r.count;
    out.push_back(std::move(r));
  }
  return out;
}

void RunPlacements(benchmark::State& state, const char* strategy, int allocations, int limit) {
  std::vector<PlacementRequest> requests = Workload(allocations);
  for (PlacementRequest& r : requests) {
    r.strategy = strategy;
    r.spread_attribute = "meta.rack";
    r.candidate_limit = limit;
  }
  int64_t placed = 0;
  int64_t unplaced = 0;
  int64_t visited = 0;
  int64_t used = 0;
  double cpu_seconds = 0;
  for (auto _ : state) {
    state.PauseTiming();
    MachineSet set = BuildSet();
    Scheduler scheduler;
    state.ResumeTiming();
    double cpu_start = ThreadCpuSeconds();
    for (const PlacementRequest& r : requests) {
      auto result = scheduler.Place(r, set);
      if (!result.ok()) std::abort();
      placed += static_cast<int64_t>(result->placed.size());
      unplaced += result->unplaced;
      if (std::getenv("BENCH_EXPLAIN") != nullptr && result->unplaced > 0) {
        std::fprintf(stderr, "%s x%d (aff %zu conf %zu ports %zu dh %d c %zu): %s\n", r.job.c_str(),
                     result->unplaced, r.affinity_jobs.size(), r.conflict_jobs.size(),
                     r.ports.size(), r.distinct_hosts ? 1 : 0, r.constraints.size(),
                     result->failure.ToString().c_str());
      }
      visited += result->machines_visited;
    }
    cpu_seconds += ThreadCpuSeconds() - cpu_start;
    state.PauseTiming();
    used = 0;
    for (const MachineView& m : set.machines()) used += m.allocs > 0 ? 1 : 0;
    state.ResumeTiming();
  }
  auto iterations = static_cast<double>(state.iterations());
  state.counters["placements/s"] =
      benchmark::Counter(static_cast<double>(placed), benchmark::Counter::kIsRate);
  // The same per second of this thread's CPU: steadier than wall time on a shared machine.
  state.counters["placements/cpu_s"] = static_cast<double>(placed) / cpu_seconds;
  state.counters["unplaced"] = static_cast<double>(unplaced) / iterations;
  state.counters["visited/placement"] =
      static_cast<double>(visited) / static_cast<double>(std::max<int64_t>(1, placed + unplaced));
  state.counters["requests"] = static_cast<double>(requests.size());
  state.counters["machines_used"] = static_cast<double>(used);
}

void BM_Binpack(benchmark::State& state) {
  RunPlacements(state, "binpack", kAllocations, 0);
}
void BM_Spread(benchmark::State& state) {
  RunPlacements(state, "spread", kAllocations, 0);
}
void BM_Random(benchmark::State& state) {
  RunPlacements(state, "random", kAllocations, 0);
}
void BM_BinpackSampled5k(benchmark::State& state) {
  RunPlacements(state, "binpack", 5'000, 0);
}
void BM_BinpackExhaustive5k(benchmark::State& state) {
  RunPlacements(state, "binpack", 5'000, -1);
}

void BM_FromMachineRecord(benchmark::State& state) {
  Records();
  for (auto _ : state) {
    MachineSet set = BuildSet();
    benchmark::DoNotOptimize(set.size());
  }
  state.counters["machines/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kMachines, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_Binpack)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_Spread)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_Random)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_BinpackSampled5k)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_BinpackExhaustive5k)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_FromMachineRecord)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

}  // namespace
}  // namespace berth::scheduler

BENCHMARK_MAIN();
