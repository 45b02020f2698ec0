// Secrets: what opening a task's secrets adds to each start of the task, measured apart from
// the noise of a whole start (bench/secrets_start.sh measures the whole start; docs/benchmarks.md
// "Secrets" has both). Google Benchmark.
//
// The agent's work per start of a task with N file secrets, as AllocRunner does it: N opens
// through StoreSecretSource (a store read, the writer's signature checked, the data key unwrapped
// with the machine key, the value decrypted) and one SecretsDir::Write of N files (a fresh 0700
// directory, N files 0400 created O_EXCL|O_NOFOLLOW on tmpfs, the buffers wiped), then the
// removal of the directory when the run ends. Values are 1 KiB, sealed to 2 recipients (the
// machine and the operator who wrote them), stored in the embedded store (SQLite WAL, what
// `berth agent --dev` uses) or in memory; the files go to /dev/shm. The argument is N.
//   build/bench/berth_secrets_start_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "agent/secrets_dir.h"
#include "secrets/keys.h"
#include "secrets/sealed_value.h"
#include "secrets/secret_store.h"
#include "store/store_factory.h"

namespace {

namespace fs = std::filesystem;
using namespace berth;

constexpr int kMaxSecrets = 10;

struct Setup {
  explicit Setup(const std::string& store_kind)
      : dir("/tmp/berth-secrets-start-bench-" + std::to_string(getpid()) + "-" + store_kind),
        files_root("/dev/shm/berth-secrets-start-bench-" + std::to_string(getpid())) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    store =
        std::move(store::OpenStore(store_kind == "memory" ? "memory:" : "embedded:" + dir)).value();
    secrets::KeyPair writer = secrets::KeyPair::Generate("ops");
    secrets::KeyPair machine = secrets::KeyPair::Generate("machine:bench");
    secrets::SecretStore ss(*store, keys);
    secrets::Recipient w;
    w.key = writer.public_key();
    w.writer = true;
    secrets::Recipient m;
    m.key = machine.public_key();
    m.kind = "machine";
    if (!ss.PutRecipient(w).ok() || !ss.PutRecipient(m).ok()) std::abort();
    std::string value(1024, 'v');
    for (int i = 0; i < kMaxSecrets; ++i) {
      std::string path = "bench/s" + std::to_string(i);
      auto sealed = secrets::Seal(value, path, 1, {w.key, m.key}, writer);
      if (!sealed.ok() || !ss.Put(path, secrets::Base64Encode(*sealed)).ok()) std::abort();
    }
    source = std::make_unique<secrets::StoreSecretSource>(*store, keys, std::move(machine),
                                                          std::vector<secrets::SignPublic>{});
    files = std::make_unique<agent::SecretsDir>(agent::SecretsDirOptions{files_root, false});
    if (!files->Ready().ok()) std::abort();
  }
  ~Setup() {
    source.reset();
    store.reset();
    fs::remove_all(dir);
    fs::remove_all(files_root);
  }

  std::string dir;
  std::string files_root;
  store::Keys keys;
  store::StorePtr store;
  std::unique_ptr<secrets::StoreSecretSource> source;
  std::unique_ptr<agent::SecretsDir> files;
};

// Opens N secrets, writes them as files, removes them: the agent's work per start and stop.
void StartPath(benchmark::State& state, const std::string& store_kind) {
  Setup s(store_kind);
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::vector<agent::SecretFile> files;
    for (int i = 0; i < n; ++i) {
      auto v = s.source->Open("bench/s" + std::to_string(i));
      if (!v.ok()) {
        state.SkipWithError(v.status().message().c_str());
        return;
      }
      files.push_back({"s" + std::to_string(i), 0400, std::move(*v)});
    }
    auto written = s.files->Write("a1", "t", files);
    if (!written.ok()) {
      state.SkipWithError(written.status().message().c_str());
      return;
    }
    s.files->RemoveTask("a1", "t");
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// Only the opens (store read and cryptography), no files.
void OpenOnly(benchmark::State& state, const std::string& store_kind) {
  Setup s(store_kind);
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    for (int i = 0; i < n; ++i) {
      auto v = s.source->Open("bench/s" + std::to_string(i));
      benchmark::DoNotOptimize(v);
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// Only the files: N buffers of 1 KiB written to a fresh directory on tmpfs, then removed.
void FilesOnly(benchmark::State& state) {
  Setup s("memory");
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::vector<agent::SecretFile> files;
    for (int i = 0; i < n; ++i) {
      files.push_back(
          {"s" + std::to_string(i), 0400, secrets::SecretBuffer(std::string(1024, 'v'))});
    }
    if (!s.files->Write("a1", "t", files).ok()) std::abort();
    s.files->RemoveTask("a1", "t");
  }
  state.SetItemsProcessed(state.iterations() * n);
}

BENCHMARK_CAPTURE(StartPath, embedded, std::string("embedded"))
    ->Arg(1)
    ->Arg(10)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(StartPath, memory, std::string("memory"))
    ->Arg(1)
    ->Arg(10)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(OpenOnly, embedded, std::string("embedded"))
    ->Arg(10)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(FilesOnly)->Arg(10)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
