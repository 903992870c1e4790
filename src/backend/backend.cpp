#include "backend/backend.h"

#include "backend/guarded.h"
#include "core/error.h"

namespace meshlm {

const char* backend_names() { return "cpu, reference, cuda, cpu-guarded, reference-guarded"; }

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "reference") return make_reference_backend();
  if (name == "cpu-guarded") return make_guarded_backend(make_cpu_backend());
  if (name == "reference-guarded") return make_guarded_backend(make_reference_backend());
  if (name == "cuda") return make_cuda_backend();
  throw Error("unknown backend '" + name + "' (expected " + backend_names() + ")");
}

}  // namespace meshlm
