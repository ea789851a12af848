# Top-level driver. The two quick-start commands are `make demo` and `make test`.
JOBS    ?= $(shell nproc)
BUILD   ?= build
CMAKE_FLAGS ?=
# attn::distributed and its mpirun tests: on in the main build (`make deps` installs Open MPI);
# the sanitizer and CUDA builds leave it off, so the build without MPI is tested too.
# `make test MPI_FLAGS=-DATTN_WITH_MPI=OFF` builds and tests without it.
MPI_FLAGS ?= -DATTN_WITH_MPI=ON

.PHONY: deps configure build demo test asan tsan bench cuda-build clean

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(MPI_FLAGS) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Main job: train the sine-anomaly classifier at its default settings.
demo: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(MPI_FLAGS) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target sine_anomaly
	@./$(BUILD)/examples/sine_anomaly --out-dir out/sine_anomaly

# Whole test suite through CTest (with MPI: the distributed_* tests run mpirun -np 2; as root
# Open MPI needs OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1, set by the tests),
# then again with each other kernel path this CPU can run forced (ATTN_ISA; scripts/isa-paths.sh
# lists them): every op against the goldens on every path. The consumer builds compile attn anew
# and the MPI tests do not depend on the path, so they run once.
test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@for isa in $$(bash scripts/isa-paths.sh --forced); do \
	  echo "== ctest with ATTN_ISA=$$isa"; \
	  (cd $(BUILD) && ATTN_ISA=$$isa ctest --output-on-failure -j $(JOBS) -LE 'consumer|distributed') || exit 1; \
	done

# Test suite under AddressSanitizer + UndefinedBehaviorSanitizer (Debug, separate build dir).
# Header-only (ATTN_LINK_COMPILED=OFF), while `make test` links most tests against the compiled
# mode's library, so CI runs the suite in both modes. ASAN_FLAGS=-DATTN_LINK_COMPILED=ON: compiled.
ASAN_FLAGS ?= -DATTN_LINK_COMPILED=OFF
asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DATTN_SANITIZE=ON -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_BENCHMARKS=OFF $(ASAN_FLAGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

# ThreadSanitizer over the concurrency tests (tests/test_threads.cpp: the global generator, the
# anomaly flag, grad mode, a model shared by threads). g++ with OpenMP off: libgomp is not
# instrumented (docs/reliability.md has the clang + Archer recipe for the OpenMP kernels).
tsan: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_WITH_OPENMP=OFF -DATTN_NATIVE=OFF \
	  "-DCMAKE_CXX_FLAGS=-fsanitize=thread -Wno-free-nonheap-object" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
	  -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_BENCHMARKS=OFF >/dev/null
	@cmake --build build-tsan -j $(JOBS) --target test_threads
	@TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ./build-tsan/tests/test_threads

# The optional CUDA kernels: configure and compile with ATTN_WITH_CUDA=ON, run the parity tests
# (they report "SKIPPED: no CUDA device" and pass on machines without a GPU).
NVCC ?= /usr/local/cuda/bin/nvcc
cuda-build: deps
	@cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DATTN_WITH_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC) \
	  -DATTN_BUILD_BENCHMARKS=OFF -DATTN_BUILD_EXAMPLES=OFF >/dev/null
	@cmake --build build-cuda --target test_cuda_parity test_cuda_op_table -j $(JOBS)
	@cd build-cuda && ctest -R cuda --output-on-failure

bench: build
	@for b in $(BUILD)/bench/bench_*; do case $$b in *.json) continue;; esac; \
	  $$b --benchmark_out=$$b.json --benchmark_out_format=json; done

clean:
	@rm -rf $(BUILD) build-asan build-tsan build-cuda out
