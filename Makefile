# The two commands a fresh Debian 12 machine needs: `make demo` and `make test`.
# Both install missing Debian packages (as root; otherwise they print the apt-get line and stop),
# configure with CMake, build and run. `make build` only builds.

BUILD_DIR ?= build
PRESET_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

# The Python side runs in venvs made from Debian's interpreter and PyPI pins (src/python/
# requirements*.txt): build/venv (torch, transformers, ...) and build/venv-nemo (NeMo Automodel on
# top of build/venv). Every build dir uses the same ones (build-asan only for scripts' torch).
# Wheels are kept in WHEELHOUSE, so a venv made again installs without the network.
# VENV=none builds against SYSTEM_PYTHON alone (the Python tests then skip what is missing).
SYSTEM_PYTHON ?= /usr/bin/python3
VENV ?= build/venv
NEMO_VENV ?= build/venv-nemo
WHEELHOUSE ?= $(HOME)/.cache/umload/wheels
REQUIREMENTS := src/python/requirements.txt
NEMO_REQUIREMENTS := src/python/requirements-nemo.txt
ifeq ($(VENV),none)
  PYTHON ?= $(SYSTEM_PYTHON)
  VENV_STAMPS :=
  PYTHON_FLAGS := -DPython3_EXECUTABLE=$(PYTHON)
else
  PYTHON ?= $(VENV)/bin/python
  VENV_STAMPS := $(VENV)/.umload-installed $(NEMO_VENV)/.umload-installed
  PYTHON_FLAGS := -DPython3_EXECUTABLE=$(abspath $(PYTHON)) -DUMLOAD_NEMO_PYTHON=$(abspath $(NEMO_VENV))/bin/python \
    -DUMLOAD_PYTHON_STACK=ON
endif

DEBIAN_PACKAGES := cmake ninja-build g++ pkg-config make \
  libgtest-dev libgmock-dev libbenchmark-dev libhwloc-dev hwloc nlohmann-json3-dev libcli11-dev \
  liburing-dev libssl-dev python3 python3-dev python3-venv python3-pyflakes python3-pybind11 pybind11-dev libdlpack-dev \
  clang clang-format libclang-rt-14-dev ccache g++-aarch64-linux-gnu qemu-user chromium fonts-dejavu-core

# nvcc is optional: use the toolkit where it is installed even when it is not on PATH.
ifeq ($(shell command -v nvcc 2>/dev/null),)
  ifneq ($(wildcard /usr/local/cuda/bin/nvcc),)
    export CUDACXX ?= /usr/local/cuda/bin/nvcc
  endif
endif

.PHONY: all deps venv configure build test pip-check demo bench asan fuzz gpu-dry-run clean

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

# pip install from the wheelhouse alone; where a wheel is missing, download the pinned set into it
# (no dependency resolution: the file pins every package) and install again.
define pip_install
  $(1)/bin/pip install -q --no-index --find-links $(WHEELHOUSE) $(3) -r $(2) 2>/dev/null || { \
    echo "downloading the wheels of $(2) into $(WHEELHOUSE)"; \
    $(1)/bin/pip download -q --no-deps -d $(WHEELHOUSE) -r $(2) && \
    $(1)/bin/pip install -q --no-index --find-links $(WHEELHOUSE) $(3) -r $(2); }
endef

venv: $(VENV_STAMPS)

$(VENV)/.umload-installed: $(REQUIREMENTS) | deps
	test -x $(VENV)/bin/pip || $(SYSTEM_PYTHON) -m venv $(VENV)
	mkdir -p $(WHEELHOUSE)
	$(call pip_install,$(VENV),$(REQUIREMENTS),)
	touch $@

# NeMo's venv sees build/venv's site-packages through a .pth file (src/python/requirements-nemo.txt).
$(NEMO_VENV)/.umload-installed: $(NEMO_REQUIREMENTS) $(VENV)/.umload-installed
	test -x $(NEMO_VENV)/bin/pip || $(SYSTEM_PYTHON) -m venv $(NEMO_VENV)
	$(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
	  > "$$($(NEMO_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/umload-base-venv.pth"
	$(call pip_install,$(NEMO_VENV),$(NEMO_REQUIREMENTS),--no-deps)
	touch $@

# Configured again when a venv changes, so the module is built for the interpreter the tests use.
$(BUILD_DIR)/build.ninja: $(VENV_STAMPS) | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(PYTHON_FLAGS) $(PRESET_FLAGS)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --no-tests=error

# `pip install .` from a fresh clone into a fresh venv, then import and load from outside it
# (minutes on 2 cores: not part of `make test`; .ci/run runs it).
pip-check: build
	bash tests/python/pip_install.sh $(BUILD_DIR)

demo: build
	./$(BUILD_DIR)/umload demo

bench: build
	bash bench/cpu_compare.sh

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (g++), CUDA off: nvcc
# objects and the CUDA runtime do not mix with ASan's allocator, and the Python module would need
# libasan preloaded into the interpreter.
# Peak-RSS tests are left to `make test`: ASan's shadow memory and quarantine inflate a process's
# resident size by design, so their bounds say nothing there (the small-budget convert test bounds RSS too).
# allocator_may_return_null: an allocation too large to satisfy is refused as new/malloc refuse it
# (std::bad_alloc, which the backends report as budget_error) instead of ASan aborting the process.
# Both sanitized builds (asan, fuzz) compile at -O1 with line tables only (-g1), as the ASan
# documentation suggests: reports keep their file:line stacks, and the build takes about half the
# time of -O2 -g (ASan instruments every inlined template of the JSON and CLI headers).
SANITIZED_FLAGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO='-O1 -g1 -DNDEBUG'
asan:
	$(MAKE) BUILD_DIR=build-asan PRESET_FLAGS="-DUMLOAD_SANITIZE=ON -DUMLOAD_ENABLE_CUDA=OFF -DUMLOAD_BUILD_BENCH=OFF -DUMLOAD_BUILD_PYTHON=OFF $(SANITIZED_FLAGS)" build
	cd build-asan && ASAN_OPTIONS=allocator_may_return_null=1 ctest --output-on-failure -j $(JOBS) --no-tests=error \
	  -E 'peak_rss|convert_at_a_small_budget'

# libFuzzer targets (clang 14, ASan+UBSan, CUDA off) and a short run of each; see docs/reliability.md.
FUZZ_SECONDS ?= 60
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja $(SANITIZED_FLAGS) \
	  -DUMLOAD_FUZZ=ON -DUMLOAD_ENABLE_CUDA=OFF -DUMLOAD_BUILD_BENCH=OFF -DUMLOAD_BUILD_PYTHON=OFF \
	  -DUMLOAD_TEST_AREAS=fuzz
	cmake --build build-fuzz -j $(JOBS) --target umload_fuzzers
	bash tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

# The GPU machine rehearsed: bench/gpu_check.sh --dry-run (unpack, configure for sm_90, build every
# target of the GPU run, the Python step's CPU half, the peers' imports, check every step) inside a
# bare Debian 12 root with PyPI's CMake first on PATH, python3 a venv without headers over
# build/venv's packages, the CUDA toolkit mounted read-only and the project's packages (and Python
# headers) only from .debs/; then the cases where the dry run must fail (tests/standin/failures.sh).
# Needs root; see docs/reliability.md. Without a registry, fetch_debs.sh refuses and leaves .debs/:
# the run goes on with the .debs there are (the deps step checks that none is missing).
gpu-dry-run: $(VENV_STAMPS)
	bash bench/fetch_debs.sh || { echo "going on with the .debs/ there are"; ls .debs/*.deb > /dev/null; }
	UMLOAD_STANDIN_VENV=$(abspath $(VENV)) bash tests/standin/run.sh
	UMLOAD_STANDIN_VENV=$(abspath $(VENV)) bash tests/standin/failures.sh

clean:
	rm -rf $(BUILD_DIR) build-asan build-fuzz $(VENV) $(NEMO_VENV)
