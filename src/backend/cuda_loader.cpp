// Loads the CUDA backend from libmeshlm_cuda.so on first use, so that meshlm itself links no
// CUDA library and starts on any machine. The library is looked for at $MESHLM_CUDA_LIBRARY,
// beside the executable, in ../lib from it, then where the build put it. Every failure is one
// line: not built, cannot load (a missing CUDA library is named by the dynamic loader), built
// from another op list, or no usable device.
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/abi.h"
#include "core/error.h"

namespace meshlm {
namespace {

#ifdef MESHLM_CUDA_BUILT
constexpr bool kBuilt = true;
#else
constexpr bool kBuilt = false;
#endif

std::vector<std::string> candidates() {
  if (const char* env = std::getenv("MESHLM_CUDA_LIBRARY"); env && *env) return {env};
  std::vector<std::string> c;
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    const std::filesystem::path dir = std::filesystem::path(std::string(exe, size_t(n))).parent_path();
    c.push_back((dir / "libmeshlm_cuda.so").string());
    c.push_back((dir / ".." / "lib" / "libmeshlm_cuda.so").string());
  }
#ifdef MESHLM_CUDA_LIBRARY_DEFAULT
  c.push_back(MESHLM_CUDA_LIBRARY_DEFAULT);
#endif
  return c;
}

// The library's handle (never closed: the backend's code lives in it), or the reason it has none.
struct Library {
  void* handle = nullptr;
  std::string path, error;
  template <class F>
  F symbol(const char* name) const {
    return reinterpret_cast<F>(dlsym(handle, name));
  }
};

Library open_library() {
  Library lib;
  if (!kBuilt && !std::getenv("MESHLM_CUDA_LIBRARY")) {
    lib.error = "not built (configure with MESHLM_CUDA=ON, or AUTO where nvcc is found)";
    return lib;
  }
  const std::vector<std::string> paths = candidates();
  for (const std::string& p : paths) {
    if (!std::filesystem::exists(p)) continue;
    lib.path = p;
    lib.handle = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib.handle) {
      const char* e = dlerror();
      lib.error = std::string("cannot load ") + p + ": " + (e ? e : "?");
      return lib;
    }
    auto abi = lib.symbol<meshlm_cuda_abi_fn>("meshlm_cuda_abi");
    if (!abi || abi() != cuda::kAbiVersion) {
      lib.error = p + " was built from another version of meshlm (rebuild it)";
      lib.handle = nullptr;
    }
    return lib;
  }
  lib.error = "libmeshlm_cuda.so not found (looked in";
  for (const std::string& p : paths) lib.error += " " + p;
  lib.error += "; set MESHLM_CUDA_LIBRARY)";
  return lib;
}

}  // namespace

CudaStatus cuda_status() {
  CudaStatus st;
  st.built = kBuilt;
  const Library lib = open_library();
  st.library = lib.path;
  if (!lib.handle) {
    st.detail = lib.error;
    return st;
  }
  st.loaded = true;
  char buf[1024] = {};
  lib.symbol<meshlm_cuda_build_fn>("meshlm_cuda_build")(buf, sizeof(buf));
  st.build = buf;
  st.devices = lib.symbol<meshlm_cuda_probe_fn>("meshlm_cuda_probe")(buf, sizeof(buf));
  st.detail = buf;
  return st;
}

void* cuda_library_symbol(const char* name) {
  const Library lib = open_library();
  return lib.handle ? dlsym(lib.handle, name) : nullptr;
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
  const Library lib = open_library();
  if (!lib.handle) throw Error("cuda backend: " + lib.error);
  char buf[1024] = {};
  if (lib.symbol<meshlm_cuda_probe_fn>("meshlm_cuda_probe")(buf, sizeof(buf)) == 0)
    throw Error(std::string("cuda backend: ") + buf);
  Backend* be = lib.symbol<meshlm_cuda_create_fn>("meshlm_cuda_create")(device, buf, sizeof(buf));
  if (!be) throw Error(std::string("cuda backend: ") + buf);
  return std::unique_ptr<Backend>(be);
}

}  // namespace meshlm
