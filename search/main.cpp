// The hwnas command line: one binary for search (local or under mpirun), queries and tools.
// Every user error ends with one line "error: ..." on stderr and exit code 2; anything else
// that goes wrong ends with exit code 1.  Results already stored are never lost: each
// evaluation is committed on arrival.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "nn/conv_spectral.hpp"
#include "nn/gemm.hpp"
#include "search/cli_checks.hpp"
#include "search/cmd_db.hpp"
#include "search/cmd_export.hpp"
#include "search/cmd_hw.hpp"
#include "search/cmd_report.hpp"
#include "search/cmd_search.hpp"
#include "search/cmd_space.hpp"
#include "search/cmd_strategies.hpp"
#include "search/cmd_tasks.hpp"
#include "search/cmd_train.hpp"
#include "search/config.hpp"
#include "search/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"hwnas: hardware-aware neural architecture search"};
  app.set_version_flag("--version", hwnas::version());
  app.require_subcommand(1);
  hwnas::search::add_search_commands(app);
  hwnas::search::add_db_commands(app);
  hwnas::search::add_report_command(app);
  hwnas::search::add_space_commands(app);
  hwnas::search::add_hw_commands(app);
  hwnas::search::add_strategy_commands(app);
  hwnas::search::add_tasks_commands(app);
  hwnas::search::add_train_command(app);
  hwnas::search::add_export_command(app);
  // A bad HWNAS_GEMM_ISA or HWNAS_CONV_ALGORITHM is one clear error before any work, not a
  // failure in every candidate.
  try {
    (void)hwnas::nn::detail::gemm_isa();
    (void)hwnas::nn::detail::conv_algorithm();
  } catch (const std::invalid_argument& e) {
    std::cerr << "error: " << e.what() << "\n";
    return hwnas::search::kUsageExitCode;
  }
  // A misspelt command gets its name and the list, not CLI11's "A subcommand is required".
  if (const std::string e = hwnas::search::unknown_command(app, argc, argv); !e.empty()) {
    std::cerr << "error: " << e << "\n";
    return hwnas::search::kUsageExitCode;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {  // subcommands report their exit code this way
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // One line, like every other usage error.
    std::cerr << "error: " << e.what() << " (--help lists the options)\n";
    return hwnas::search::kUsageExitCode;
  } catch (const std::invalid_argument& e) {  // ConfigError, GenomeError, bad device files, ...
    std::cerr << "error: " << e.what() << "\n";
    return hwnas::search::kUsageExitCode;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
