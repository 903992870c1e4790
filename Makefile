# Wraps the two commands; everything else is CMake (see README.md).
BUILD ?= build
JOBS ?= 2
# One CUDA architecture keeps make test's build short (Hopper: the GPU scripts/gpu_check.sh targets);
# releases configure MESHLM_CUDA_ARCHS="90a;80" (the CMake default).
CUDA_ARCHS ?= 90a

.PHONY: demo test test-long build configure setup clean

setup:
	@bash scripts/install-deps.sh

configure: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DMESHLM_CUDA_ARCHS="$(CUDA_ARCHS)" >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# The demo needs only the meshlm binary, not the tests and benchmarks.
demo: configure
	@cmake --build $(BUILD) -j $(JOBS) --target meshlm
	@bash scripts/demo.sh $(BUILD)/meshlm

# The long campaigns (ctest label `long`) are left to `make test-long`.
test: build
	@cd $(BUILD) && ctest --output-on-failure -j 1 -LE long

test-long: build
	@cd $(BUILD) && ctest --output-on-failure -j 1 -L long

clean:
	rm -rf $(BUILD)
