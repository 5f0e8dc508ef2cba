# The two commands a fresh Debian 12 machine needs: `make demo` and `make test`.
# Both install missing Debian packages (as root; otherwise they print the apt-get line and stop),
# configure with CMake, build and run. `make build` only builds.

BUILD_DIR ?= build
PRESET_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON ?= /usr/bin/python3

DEBIAN_PACKAGES := cmake ninja-build g++ pkg-config make \
  libgtest-dev libgmock-dev libbenchmark-dev libhwloc-dev hwloc nlohmann-json3-dev libcli11-dev \
  liburing-dev libssl-dev python3 python3-dev python3-pybind11 pybind11-dev python3-numpy python3-torch libdlpack-dev \
  clang clang-format libclang-rt-14-dev g++-aarch64-linux-gnu qemu-user

# nvcc is optional: use the toolkit where it is installed even when it is not on PATH.
ifeq ($(shell command -v nvcc 2>/dev/null),)
  ifneq ($(wildcard /usr/local/cuda/bin/nvcc),)
    export CUDACXX ?= /usr/local/cuda/bin/nvcc
  endif
endif

.PHONY: all deps configure build test demo bench asan fuzz gpu-dry-run clean

all: build

deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  else \
	    echo "missing Debian packages; run:"; echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE=$(PYTHON) $(PRESET_FLAGS)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --no-tests=error

demo: build
	./$(BUILD_DIR)/umload demo

bench: build
	bash bench/cpu_compare.sh

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (g++), CUDA off: nvcc
# objects and the CUDA runtime do not mix with ASan's allocator, and the Python module would need
# libasan preloaded into the interpreter.
# Peak-RSS tests are left to `make test`: ASan's shadow memory and quarantine inflate a process's
# resident size by design, so their bounds say nothing there.
asan:
	$(MAKE) BUILD_DIR=build-asan PRESET_FLAGS="-DUMLOAD_SANITIZE=ON -DUMLOAD_ENABLE_CUDA=OFF -DUMLOAD_BUILD_BENCH=OFF -DUMLOAD_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo" build
	cd build-asan && ctest --output-on-failure -j $(JOBS) --no-tests=error -E 'peak_rss'

# libFuzzer targets (clang 14, ASan+UBSan, CUDA off) and a short run of each; see docs/reliability.md.
FUZZ_SECONDS ?= 60
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DUMLOAD_FUZZ=ON -DUMLOAD_ENABLE_CUDA=OFF -DUMLOAD_BUILD_BENCH=OFF -DUMLOAD_BUILD_PYTHON=OFF \
	  -DUMLOAD_TEST_AREAS=fuzz
	cmake --build build-fuzz -j $(JOBS) --target umload_fuzzers
	bash tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

# The GPU machine rehearsed: bench/gpu_check.sh --dry-run (unpack, configure for sm_90, build every
# target of the GPU run, check every step) inside a bare Debian 12 root with the CUDA toolkit
# mounted read-only and the project's packages only from .debs/. Needs root; see docs/reliability.md.
gpu-dry-run:
	bash bench/fetch_debs.sh
	bash tests/standin/run.sh

clean:
	rm -rf $(BUILD_DIR) build-asan build-fuzz
