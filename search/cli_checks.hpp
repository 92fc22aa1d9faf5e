// Validators of numeric flags with readable ranges.  CLI11's NonNegativeNumber / PositiveNumber
// answer a bad value with a range up to DBL_MAX (a 300-digit number); these name the real one.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace hwnas::search {

// A stored run's id: 1 or more (0 and negative ids never mean "the latest").
inline CLI::Range run_id_range() { return CLI::Range(1LL, 999'999'999'999LL); }
// Seeds of searches and training: what the config accepts.
inline CLI::Range seed_range() { return CLI::Range(0LL, 4'294'967'295LL); }
// Evaluations of one search.
inline CLI::Range budget_range() { return CLI::Range(1, 100'000'000); }
// Concurrent local evaluations (0 = one per core).
inline CLI::Range workers_range() { return CLI::Range(0, 4096); }
// Seconds between rewrites of a watched report (0 = write once).
inline CLI::Range seconds_range() { return CLI::Range(0.0, 86'400.0); }

// --db of the commands that read a results database: an empty path would otherwise reach the
// store and come back as ": no such database file".
inline CLI::Validator db_path() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        return s.empty() ? "the path is empty; give the SQLite file `hwnas search` wrote, e.g. "
                           "--db hwnas.db"
                         : "";
      },
      "FILE", "db_path");
}

// A misspelt or missing command at any depth ("hwnas frobnicate", "hwnas hw predcit", "hwnas
// hw"), with the commands it could have been; "" when the command line names known commands
// down to one that takes arguments.  CLI11 itself says only "A subcommand is required".
inline std::string unknown_command(CLI::App& app, int argc, char** argv) {
  CLI::App* at = &app;
  std::string path;
  auto names_of = [](CLI::App* a) {
    std::string names;
    for (auto* s : a->get_subcommands({})) names += (names.empty() ? "" : ", ") + s->get_name();
    return names;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    const auto subs = at->get_subcommands({});
    if (subs.empty() || word.empty() || word[0] == '-') return "";
    CLI::App* next = nullptr;
    for (auto* s : subs)
      if (s->get_name() == word) next = s;
    const std::string names = names_of(at);
    if (!next) {
      // A command with optional subcommands may take the word as its argument.
      if (at != &app && at->get_require_subcommand_min() == 0) return "";
      return "unknown command '" + path + word + "' (commands: " + names + "; hwnas " + path +
             "--help describes them)";
    }
    path += word + " ";
    at = next;
  }
  if (at->get_require_subcommand_min() > 0 && !at->get_subcommands({}).empty())
    return "'hwnas" + (path.empty() ? "" : " " + path.substr(0, path.size() - 1)) +
           "' needs a command (commands: " + names_of(at) + "; hwnas " + path +
           "--help describes them)";
  return "";
}

}  // namespace hwnas::search
