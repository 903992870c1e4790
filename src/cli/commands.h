// The `meshlm` subcommands, each registered on a CLI11 app and run after parsing; each lives in
// its own file (src/cli/<subcommand>.cpp), sharing cli/common.h.
#pragma once
#include <CLI/CLI.hpp>

namespace meshlm::cli {

// Each add_* registers the subcommand and its options; the returned callback runs it and
// returns the process exit code.
void add_train(CLI::App& app);
void add_eval(CLI::App& app);
void add_sample(CLI::App& app);
void add_prepare(CLI::App& app);
void add_bench(CLI::App& app);
void add_report(CLI::App& app);
void add_info(CLI::App& app);
void add_tokenizer(CLI::App& app);
void add_export(CLI::App& app);  // and import
void add_plot(CLI::App& app);
void add_plan(CLI::App& app);
void add_ladder(CLI::App& app);

}  // namespace meshlm::cli
