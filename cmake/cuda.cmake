# The CUDA backend library, libmeshlm_cuda.so (included by CMakeLists.txt when MESHLM_WITH_CUDA).
# It compiles its own copy of the few portable host sources it needs (core's formats, the
# reference kernels the host-side ops use), position independent and without -march=native,
# and links the CUDA runtime statically, so it needs only the driver, cuBLASLt and NCCL at run
# time. meshlm finds it beside the executable (backend/cuda_loader.cpp).
set(CMAKE_CUDA_ARCHITECTURES ${MESHLM_CUDA_ARCHS})
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
# CMake 3.25 predates nvcc's C++20 support; the flag is the compiler's own.
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()

set(root ${CMAKE_BINARY_DIR}/include_roots/cuda)
file(MAKE_DIRECTORY ${root})
foreach(part core backend parallel)
  if(NOT EXISTS ${root}/${part})
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/src/${part} ${root}/${part} SYMBOLIC)
  endif()
endforeach()

add_library(meshlm_cuda SHARED
  src/backend/cuda/elementwise.cu src/backend/cuda/reduce.cu src/backend/cuda/norm.cu src/backend/cuda/embedding.cu
  src/backend/cuda/crossentropy.cu src/backend/cuda/attention.cu src/backend/cuda/fp8.cu src/backend/cuda/attention_tc.cu
  src/backend/cuda/quantize.cu
  src/backend/cuda/cuda_backend.cpp src/backend/cuda/gemm_cublaslt.cpp src/backend/cuda/gemm_plan.cpp
  src/backend/cuda/caching_allocator.cpp src/backend/cuda/launch.cpp src/backend/cuda/bootstrap.cpp
  src/core/dtype.cpp src/core/formats.cpp src/core/rng.cpp src/core/tensor.cpp src/backend/ops.cpp)
target_include_directories(meshlm_cuda PRIVATE ${root})
# --fmad=false: the kernels' arithmetic rounds as device_math.h's host copy does (the CPU tests).
# --expt-relaxed-constexpr: core's constexpr functions (hadamard16) run on the device as they are.
target_compile_options(meshlm_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false --expt-relaxed-constexpr -Xcompiler=-Wall>
                       $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas>)
string(REPLACE ";" " " arch_list "${MESHLM_CUDA_ARCHS}")
target_compile_definitions(meshlm_cuda PRIVATE MESHLM_CUDA_ARCH_LIST="${arch_list}"
                           MESHLM_NVCC_VERSION="${CMAKE_CUDA_COMPILER_VERSION}")
set_target_properties(meshlm_cuda PROPERTIES CUDA_RUNTIME_LIBRARY Static POSITION_INDEPENDENT_CODE ON
                      LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
target_link_libraries(meshlm_cuda PRIVATE CUDA::cublasLt)
# NCCL (the CUDA 13 toolkit ships it under lib/; elsewhere a system package): the communicator.
find_library(MESHLM_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_ROOT}/lib ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_TARGET_DIR}/lib)
find_path(MESHLM_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
if(MESHLM_NCCL_LIBRARY AND MESHLM_NCCL_INCLUDE)
  target_sources(meshlm_cuda PRIVATE src/parallel/nccl_communicator.cpp src/parallel/communicator.cpp)
  target_include_directories(meshlm_cuda PRIVATE ${MESHLM_NCCL_INCLUDE})
  target_link_libraries(meshlm_cuda PRIVATE ${MESHLM_NCCL_LIBRARY})
  target_compile_definitions(meshlm_cuda PRIVATE MESHLM_WITH_NCCL=1)
  message(STATUS "meshlm: NCCL ${MESHLM_NCCL_LIBRARY}")
endif()
target_link_options(meshlm_cuda PRIVATE -Wl,--no-undefined -Wl,-Bsymbolic)
