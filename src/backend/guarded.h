// The guarded backend: another backend (cpu, reference) whose tensor memory cannot be touched
// except by the backend itself. Its allocations come from one reserved address range that is
// PROT_NONE except while one of its ops runs or a declared client (the communicator, through
// begin/end_client_access) is inside a call. Any read or write of tensor memory from above the
// backend - a host loop in the model, a memcpy in the trainer - faults at once, and the fault
// handler names the address. It proves that code above the backend only asks the backend, so
// a device backend can replace it. Memory protection is per process: use it with one rank per
// process (mpirun), never with the in-process thread communicator; under OpenMPI set
// OMPI_MCA_btl_vader_single_copy_mechanism=none, or a peer's single-copy read of a buffer may
// land while this process has it closed. Slow (two mprotect calls per op): for tests.
#pragma once
#include <memory>

#include "backend/backend.h"

namespace meshlm {

std::unique_ptr<Backend> make_guarded_backend(std::unique_ptr<Backend> inner);

}  // namespace meshlm
