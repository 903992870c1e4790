// `meshlm info`: the build, the machine, or a checkpoint.
#include "cli/commands.h"

#include <omp.h>
#include <fstream>
#include <iostream>

#include "cli/common.h"
#include "core/error.h"
#include "parallel/communicator.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace meshlm::cli {

namespace {

}  // namespace

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show the build, the machine, or a checkpoint");
  auto checkpoint = std::make_shared<std::string>();
  cmd->add_option("--checkpoint", *checkpoint, "describe this checkpoint instead");
  cmd->callback([checkpoint]() {
    if (!checkpoint->empty()) {
      // Everything resume checks before it reads a value: the marker and every checksum,
      // trainer.json's fields, the config, every tensor's name, dtype and shape.
      nlohmann::json trainer = verify_checkpoint(*checkpoint);
      TrainConfig cfg = checkpoint_config(trainer, *checkpoint);
      verify_checkpoint_tensors(*checkpoint, cfg.model(), true);
      std::cout << "checkpoint " << *checkpoint << " (verified: checksums, fields, tensors; resumable)\n"
                << "model      " << cfg.model().describe() << "\n"
                << "step       " << trainer["step"] << "\n"
                << "config     " << trainer["config"].dump() << "\n";
      return;
    }
    // The build as its parts report it: the backends, and the world communicator (MPI under a
    // launcher, or a single rank; mpi_always asks MPI for its library even then).
    const std::unique_ptr<Backend> cpu = make_cpu_backend(), ref = make_reference_backend();
    std::cout << "meshlm     0.1.0 (C++20)\n"
              << "backends   " << cpu->describe() << ", " << ref->describe() << ", cuda (below), and cpu or reference -guarded (names: " << backend_names()
              << ")\n"
              << "cpu        " << cpu_summary() << "\n"
              << "threads    " << omp_get_max_threads() << " (OpenMP)\n"
              << "precision  fp32, bf16, fp16 (mixed, dynamic loss scaling), fp16-pure, fp8 (simulated on the cpu "
                 "backend; real fp8 GEMMs on cuda devices with fp8 tensor cores)\n";
    const CudaStatus cuda = cuda_status();
    if (!cuda.loaded)
      std::cout << "cuda       " << (cuda.built ? "built, unusable: " : "") << cuda.detail << "\n";
    else
      std::cout << "cuda       " << cuda.build << " (" << cuda.library << "); "
                << (cuda.devices > 0 ? "usable: " : "") << cuda.detail << "\n";
    std::unique_ptr<Communicator> world;
    try {
      world = make_world_communicator(true);
    } catch (const Error&) {
      std::cout << "mpi        not built (MESHLM_MPI=OFF)\n";
      return;
    }
    if (world->rank() == 0)
      std::cout << "mpi        " << world->library_version() << ", world size " << world->size() << "\n";
    world.reset();
    finalize_world();
  });
}

}  // namespace meshlm::cli
