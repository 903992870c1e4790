#!/usr/bin/env bash
# Prepares, on a build machine, what scripts/gpu_check.sh needs on a lent GPU machine that has
# the CUDA toolkit, CMake and ninja but none of meshlm's Debian libraries and no network:
# a portable build (MESHLM_NATIVE=OFF: no -march=native) of meshlm and the kernel tests, the shared
# libraries they load (this machine's glibc and loader too, for a host whose glibc is older),
# and a CUDA library for sm_90a, packed into build-gpu/bundle.tar.xz (about 15 MiB), which the
# device tool carries with the working tree: run(command="bash scripts/gpu_check.sh",
# carry=["build-gpu/bundle.tar.xz"]). Usage: scripts/gpu_bundle.sh   (JOBS=2 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
B=build-gpu
cmake -S . -B "$B/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMESHLM_NATIVE=OFF -DMESHLM_CUDA=ON \
  -DMESHLM_CUDA_ARCHS=90a -DMESHLM_BENCH=OFF >/dev/null
cmake --build "$B/build" -j "${JOBS:-2}" --target meshlm test_kernels test_fp8_gemm test_quantize meshlm_cuda
rm -rf "$B/bundle"
mkdir -p "$B/bundle/lib" "$B/bundle/glibc"
cp "$B/build/meshlm" "$B/build/test_kernels" "$B/build/test_fp8_gemm" "$B/build/test_quantize" "$B/build/libmeshlm_cuda.so" "$B/bundle/"
# Every library the programs load, but the GPU machine's own CUDA (driver, cuBLASLt, NCCL);
# glibc, the loader and the C++ runtime apart (used only where the machine's are too old).
for lib in $(ldd "$B/build/meshlm" "$B/build/test_kernels" "$B/build/test_fp8_gemm" "$B/build/test_quantize" | awk '/=> \//{print $3}' | sort -u); do
  case "$(basename "$lib")" in
    libcuda.so*|libcublas*|libnccl*|libcudart*) ;;
    libc.so*|libm.so*|libmvec.so*|libpthread.so*|libdl.so*|librt.so*|libstdc++.so*|libgcc_s.so*)
      cp -L "$lib" "$B/bundle/glibc/" ;;
    *) cp -L "$lib" "$B/bundle/lib/" ;;
  esac
done
cp -L /lib64/ld-linux-x86-64.so.2 "$B/bundle/glibc/"
strip --strip-unneeded "$B/bundle/meshlm" "$B/bundle/test_kernels" "$B/bundle/test_fp8_gemm" "$B/bundle/test_quantize" 2>/dev/null || true
tar -C "$B" -cJf "$B/bundle.tar.xz" bundle
echo "gpu_bundle: $B/bundle.tar.xz ($(du -h "$B/bundle.tar.xz" | cut -f1))"
