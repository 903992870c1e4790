// meshlm: trains GPT-style language models. This file only wires the subcommands; each lives
// in its own file of src/cli/ (train.cpp, eval.cpp, ...). User errors (meshlm::Error) print one line and exit 1.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"
#include "core/stop_signals.h"

namespace {

// OpenMP's wait policy, set before libgomp reads its environment (it does so in its own
// initializer, before main): this function sits in the executable's .preinit_array, which the
// dynamic loader runs before any shared library's initializer. libgomp's default spins a
// waiting thread for ~300k iterations; on a machine shared with other work a descheduled
// thread then costs every barrier a time slice (an eval ran 3-4x slower than on one thread).
// Spinning 1000 iterations, then sleeping, loses nothing measurable alone and degrades
// gracefully when shared (docs/reliability.md). A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
void openmp_wait_policy(int, char**, char**) {
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT")) ::setenv("GOMP_SPINCOUNT", "1000", 0);
}
[[gnu::section(".preinit_array"), gnu::used]] void (*const preinit_openmp)(int, char**, char**) = openmp_wait_policy;

}  // namespace

int main(int argc, char** argv) {
  // First, before any thread exists: stop signals go to one waiting thread (core/stop_signals.h).
  meshlm::StopSignals::install();
  CLI::App app{
      "meshlm: trains GPT-2 and Llama language models on CPUs (and NVIDIA GPUs: --backend cuda), in\n"
      "fp32, bf16, fp16 or fp8 (simulated on CPUs, fp8 tensor cores on GPUs that have them),\n"
      "data-, tensor- and pipeline-parallel over MPI (mpirun -np dp*tp*pp meshlm train --dp ...).\n\n"
      "Quick start:\n"
      "  meshlm tokenizer train --vocab-size 4096 --input data/tinyshakespeare.txt --output tok.json\n  meshlm prepare --tokenizer tok.json --input data/tinyshakespeare.txt --output data/shakespeare\n"
      "  meshlm train --data data/shakespeare --vocab-size 4096 --out runs/demo --steps 200\n"
      "  meshlm sample --checkpoint runs/demo/step_000200 --prompt 'ROMEO:'\n"
      "  meshlm plot runs/demo --out runs/demo.png        (runs also draw their own loss.png)\n"
      "  meshlm export --checkpoint runs/demo/step_000200 --out hf/   (transformers' from_pretrained)\n"
      "Each command has its own --help.\n",
      "meshlm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "meshlm 0.1.0");
  meshlm::cli::add_train(app);
  meshlm::cli::add_eval(app);
  meshlm::cli::add_sample(app);
  meshlm::cli::add_prepare(app);
  meshlm::cli::add_tokenizer(app);
  meshlm::cli::add_bench(app);
  meshlm::cli::add_report(app);
  meshlm::cli::add_info(app);
  meshlm::cli::add_export(app);
  meshlm::cli::add_plot(app);
  meshlm::cli::add_plan(app);
  meshlm::cli::add_ladder(app);
  // An unknown command is one line, not the top-level help (CLI11 would take it for an argument).
  if (argc > 1 && argv[1][0] != '-') {
    std::string known;
    bool found = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known += (known.empty() ? "" : ", ") + sub->get_name();
      found = found || sub->get_name() == argv[1];
    }
    if (!found) {
      std::fprintf(stderr, "meshlm: error: unknown command '%s' (commands: %s; meshlm --help)\n", argv[1], known.c_str());
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {  // a bad flag or value: one line, as every other error
    std::fprintf(stderr, "meshlm: error: %s (see meshlm %s --help)\n", e.what(), argc > 1 && argv[1][0] != '-' ? argv[1] : "");
    return e.get_exit_code();
  } catch (const meshlm::Error& e) {
    std::fprintf(stderr, "meshlm: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "meshlm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
