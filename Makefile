# berth: `make demo` and `make test` are the two commands a fresh machine needs.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all deps build demo test test-fast asan fuzz bench format format-check tidy clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# Build, start a single-node agent on the embedded store, deploy examples/web.yml.
demo: build
	@scripts/demo.sh

# Every test (unit, store conformance on real etcd clusters, end to end), all on one ASan+UBSan
# build (build-asan/), then a fuzz smoke run and the format check.
test: deps
	@scripts/test.sh

# The same tests on the same build, without the fuzz run and the format check.
test-fast: deps
	@BERTH_TEST_FAST=1 scripts/test.sh

bench: build
	@BUILD_DIR=$(CURDIR)/$(BUILD) bench/store_vs_etcd.sh
	@BUILD_DIR=$(CURDIR)/$(BUILD) bench/start_vs_docker.sh
	@BUILD_DIR=$(CURDIR)/$(BUILD) bench/agent_rss.sh
	@$(BUILD)/bench/berth_secrets_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
	@BUILD_DIR=$(CURDIR)/$(BUILD) bench/secrets_start.sh
	@$(BUILD)/bench/berth_scheduler_bench --benchmark_repetitions=7
	@BUILD_DIR=$(CURDIR)/$(BUILD) bench/router_vs_nginx.sh
	@BUILD_DIR=$(CURDIR)/$(BUILD) bench/failover.sh

fuzz: deps
	@scripts/fuzz.sh $(or $(SECONDS),60)

format:
	@git ls-files '*.h' '*.cc' | xargs clang-format -i

format-check:
	@git ls-files '*.h' '*.cc' | xargs clang-format --dry-run --Werror

clean:
	rm -rf build build-asan build-fuzz .testrun .demo
