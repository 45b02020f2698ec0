// Secrets: seal and open operations per second for 1 KiB values (Google Benchmark).
//
// Seal: a fresh data key, XChaCha20-Poly1305 of the value, the data key wrapped to each
// recipient (crypto_box_seal: one X25519 key agreement each), one Ed25519 signature. Open: the
// checks (path, version, trusted writer, signature), one unwrap, one decryption. Verify: what
// the API server does before it stores a value (everything but the unwrap and decryption).
// The argument is the number of recipients: 5 is the case, 100 and 1000 show how
// sealing grows with a cluster's machines (each is a recipient).
//   build/bench/berth_secrets_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "secrets/keys.h"
#include "secrets/sealed_value.h"

namespace {

using berth::secrets::KeyPair;
using berth::secrets::PublicKey;

struct Setup {
  explicit Setup(int n) : writer(KeyPair::Generate("op")), value(1024, 'v') {
    for (int i = 0; i < n; ++i) {
      readers.push_back(KeyPair::Generate("machine:m" + std::to_string(i)));
      to.push_back(readers.back().public_key());
    }
    sealed = *berth::secrets::Seal(value, "bench/value", 1, to, writer);
  }
  KeyPair writer;
  std::vector<KeyPair> readers;
  std::vector<PublicKey> to;
  std::string value;
  std::string sealed;
};

void BM_Seal(benchmark::State& state) {
  Setup s(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto sealed = berth::secrets::Seal(s.value, "bench/value", 1, s.to, s.writer);
    benchmark::DoNotOptimize(sealed);
  }
  state.counters["ops/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["sealed_bytes"] = static_cast<double>(s.sealed.size());
}

void BM_Open(benchmark::State& state) {
  Setup s(static_cast<int>(state.range(0)));
  // The last recipient: its wrapped key is found after every other one.
  const KeyPair& reader = s.readers.back();
  berth::secrets::OpenExpectations e{"bench/value", 1, {s.writer.public_key().sign}};
  for (auto _ : state) {
    auto open = berth::secrets::OpenSealed(s.sealed, e, reader);
    if (!open.ok()) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(open);
  }
  state.counters["ops/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Verify(benchmark::State& state) {
  Setup s(static_cast<int>(state.range(0)));
  berth::secrets::OpenExpectations e{"bench/value", 1, {s.writer.public_key().sign}};
  for (auto _ : state) {
    auto v = berth::secrets::VerifySealed(s.sealed, e);
    if (!v.ok()) state.SkipWithError("verify failed");
    benchmark::DoNotOptimize(v);
  }
  state.counters["ops/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_Seal)->Arg(5)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Open)->Arg(5)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Verify)->Arg(5)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
