// The collectives check of test_communicator, through MPI: run under mpirun -np N.
#include <cstdio>

#include "parallel/collectives_check.h"
#include "parallel/communicator.h"
#include "parallel/mesh.h"

int main() {
  auto world = meshlm::make_world_communicator(true);
  const std::string failure = meshlm::test::check_collectives(*world);
  int bad = failure.empty() ? 0 : 1;
  double total = bad;
  world->all_reduce(&total, 1, meshlm::DType::fp64);
  if (bad) std::fprintf(stderr, "rank %d: %s\n", world->rank(), failure.c_str());
  if (world->rank() == 0) std::printf("%s: %d ranks\n", total == 0 ? "all collectives pass" : "FAILED", world->size());
  world.reset();
  meshlm::finalize_world();
  return total == 0 ? 0 : 1;
}
