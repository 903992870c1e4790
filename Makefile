# Wraps the two commands; everything else is CMake (see README.md).
BUILD ?= build
JOBS ?= 2

.PHONY: demo test build setup clean

setup:
	@bash scripts/install-deps.sh

build: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@bash scripts/demo.sh $(BUILD)/meshlm

test: build
	@cd $(BUILD) && ctest --output-on-failure -j 1

clean:
	rm -rf $(BUILD)
