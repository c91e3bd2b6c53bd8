# lmhost — the two commands: `make serve` and `make test`.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: all deps test-deps configure build test test-scale serve bench clean fuzz

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test-deps:
	@bash scripts/install-test-deps.sh

test: build test-deps
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# Scale-out proof only: Redis + two replicas + nginx (also part of `make test`).
test-scale: build test-deps
	@cd $(BUILD_DIR) && ctest --output-on-failure -R '^scale_out$$'

serve: build
	@$(BUILD_DIR)/lmhost serve --host $(HOST) --port $(PORT)

fuzz: deps
	@cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_COMPILER=clang++ -DLMHOST_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_gguf
	@mkdir -p build-fuzz/corpus && build-fuzz/tests/fuzz/fuzz_gguf -max_total_time=60 build-fuzz/corpus

clean:
	rm -rf $(BUILD_DIR) build-fuzz
