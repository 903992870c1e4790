# Wraps the two commands; everything else is CMake (see README.md).
BUILD ?= build
JOBS ?= 2

.PHONY: demo test test-long build configure setup clean

setup:
	@bash scripts/install-deps.sh

configure: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null

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
