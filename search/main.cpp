// The hwnas command line: one binary for search (local or under mpirun), queries and tools.
#include <CLI/CLI.hpp>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"hwnas: hardware-aware neural architecture search"};
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
