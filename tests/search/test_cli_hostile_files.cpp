// Hostile input files and read-only use (issue 13 items 5 and 7): a number beyond the double
// range in any JSON file the CLI reads gets one error naming the file, line and field; misspelt
// keys in device and lookup-table files are refused with the known ones; genome paths in a
// measurements CSV are relative to the CSV; the query commands read a database in a directory
// and file they may not write.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_util.hpp"
#include "tests/temp_files.hpp"

namespace fs = std::filesystem;
using hwnas::test::kHwnasBinary;
using hwnas::test::run_hwnas;
using hwnas::test::TempDir;
using nlohmann::json;

namespace {

const std::string kSource = HWNAS_SOURCE_DIR;

json read(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

// One line "error: ..." containing every `what`, exit code 2.
void expect_one_error(const std::string& args, const std::vector<std::string>& what) {
  const auto r = run_hwnas(args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
  EXPECT_EQ(r.output.rfind("error: ", 0), 0u) << args << "\n" << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << "one line: " << r.output;
  for (const auto& w : what)
    EXPECT_NE(r.output.find(w), std::string::npos) << w << "\n" << r.output;
  EXPECT_EQ(r.output.find("json.exception"), std::string::npos) << r.output;
}

const char* kOverflow = "is beyond the range of a double";

}  // namespace

TEST(HostileFiles, ANumberBeyondTheDoubleRangeNamesFileLineAndField) {
  TempDir d("overflow");
  // Search config, and the space file it names.
  json cfg = read(kSource + "/examples/quickstart.json");
  std::string text = cfg.dump(2);
  text.replace(text.find("\"budget\": {"), 11, "\"budget\": {\"max_seconds\": 1e400, ");
  const std::string config = d.file("config.json", text);
  expect_one_error("search " + config, {"config: '" + config + "'", "field 'budget.max_seconds'",
                                        "the number '1e400' " + std::string(kOverflow)});
  const std::string space = d.file("space.json", "{\"type\": \"nb201\",\n \"outputs\": -1e999}");
  cfg["space"] = space;
  expect_one_error("search " + d.file("config2.json", cfg.dump()),
                   {"config.space: '" + space + "' (line 2, column", "field 'outputs'",
                    "'-1e999' " + std::string(kOverflow)});
  expect_one_error("space sample " + space, {"space file: '" + space + "'", "field 'outputs'"});
  // A device of an analytic family, and a lookup-table device.
  json gpu = read(kSource + "/hwmodels/devices/h100_sxm.json");
  text = gpu.dump(1);
  const auto mem = text.find("\"mem_bw\": ");
  text.replace(mem, text.find(',', mem) - mem, "\"mem_bw\": 2e308");
  const std::string dev = d.file("gpu.json", text);
  expect_one_error(
      "hw predict --device " + dev + " x",
      {"device file: '" + dev + "'", "field 'mem_bw'", "'2e308' " + std::string(kOverflow)});
  const std::string lut = d.file(
      "lut.json",
      R"({"name": "l", "family": "lut", "table": {"conv": {"latency_us": 5}, "dense": {"macs": 1e400}}})");
  expect_one_error(
      "hw predict --device " + lut + " x",
      {"device file: '" + lut + "' (line 1, column", "field 'table.dense.macs'", kOverflow});
  // A genome file (export) and a workload architecture file (hw predict).
  const std::string genome =
      d.file("genome.json", "{\"nodes\": [{\"params\": {\"units\": [1, 1e400]}}]}");
  expect_one_error(
      "export --genome " + genome + " --format onnx --out " + (d.path / "m.onnx").string(),
      {"--genome: '" + genome + "'", "field 'nodes[0].params.units[1]'", kOverflow});
  const std::string arch =
      d.file("arch.json", "{\"nodes\": [{\"category\": \"dense\", \"macs\": 1e400}]}");
  expect_one_error("hw predict --device rpi4_a72 " + arch,
                   {"architecture file: '" + arch + "'", "field 'nodes[0].macs'", kOverflow});
  // Syntax errors keep naming the file, now with the line and field too.
  const std::string broken = d.file("broken.json", "{\"a\": {\"b\": [1, 2,, 3]}}");
  expect_one_error("search " + broken,
                   {"config: '" + broken + "' is not valid JSON (line 1, column", "field 'a.b[2]'",
                    "syntax error"});
}

TEST(HostileFiles, MisspeltKeysInDeviceAndLookupTableFilesAreRefused) {
  TempDir d("misspelt");
  json gpu = read(kSource + "/hwmodels/devices/h100_sxm.json");
  gpu["mem_bww"] = 1;
  const std::string dev = d.file("gpu.json", gpu.dump());
  expect_one_error("hw predict --device " + dev + " x",
                   {"unknown field 'mem_bww' (known: ", "mem_bw,", dev});
  json lut = read(kSource + "/examples/devices/my_npu_lut.json");
  lut["table"]["conv"]["energy_uJ"] = 0.4;  // would silently fall back to power_w x latency
  const std::string l = d.file("lut.json", lut.dump());
  expect_one_error("hw predict --device " + l + " x",
                   {"device 'my_npu_lut': table.conv.energy_uJ: unknown parameter (known: "
                    "latency_us, energy_uj, macs)",
                    l});
}

// `hw measure` names each genome relative to the CSV, and `hw calibrate` resolves the names from
// the CSV's folder: the pair is moved to another folder and calibrated from a third cwd.
// (--force: two held-out rows of real timings may rank either way; the paths are under test.)
TEST(HostileFiles, CalibrationCsvGenomePathsAreRelativeToTheCsv) {
  TempDir d("calib_cwd");
  const fs::path made = d.path / "made", moved = d.path / "moved", elsewhere = d.path / "cwd";
  fs::create_directories(made);
  fs::create_directories(elsewhere);
  auto r = run_hwnas("hw measure --space " + kSource +
                     "/examples/spaces/mlp.json --n 8 --reps 1 "
                     "--warmup 0 --seed 4 --out " +
                     (made / "m.csv").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(made / "m.csv");
  std::string header, row;
  std::getline(in, header);
  std::getline(in, row);
  EXPECT_EQ(row.rfind("m.csv.genomes/", 0), 0u) << row;
  fs::rename(made, moved);
  const std::string cmd =
      "cd " + elsewhere.string() + " && " + kHwnasBinary +
      " hw calibrate --device rpi4_a72 --scales-only --holdout 0.25 --force -m " +
      (moved / "m.csv").string() + " --out tuned.json 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_NE(out.find("calibrated"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(elsewhere / "tuned.json"));
}

// The query commands open the database read-only and work where they may write nothing: the
// database file 0444 in a directory 0555, run as the unprivileged user nobody (as root,
// permission bits do not bite, so the child drops to uid/gid 65534 before exec).
TEST(ReadOnlyUse, QueryCommandsReadADatabaseTheyMayNotWrite) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop to another user (uid 65534)";
  TempDir d("readonly");
  fs::permissions(d.path, fs::perms::all);  // the report goes here, written as nobody
  const fs::path ro = d.path / "ro";
  fs::create_directories(ro);
  json cfg = {{"name", "ro"},
              {"seed", 3},
              {"space",
               {{"type", "nb201"},
                {"input", {{"kind", "image"}, {"shape", {3, 32, 32}}}},
                {"outputs", 10}}},
              {"task", {{"name", "synthetic"}}},
              {"evaluator", {{"type", "synthetic"}, {"seconds", 0.0}}},
              {"budget", {{"evaluations", 4}}},
              {"devices", {"jetson_orin_nano"}},
              {"objectives", {"val_accuracy:max", "latency_ms:min"}},
              {"workers", 1},
              {"db", (ro / "r.db").string()}};
  auto r = run_hwnas("search " + d.file("c.json", cfg.dump()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_FALSE(fs::exists(ro / "r.db-wal"));  // closed cleanly: every commit is in the file
  fs::permissions(ro / "r.db",
                  fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                          fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  const auto before = fs::last_write_time(ro / "r.db");

  auto as_nobody = [&](std::vector<std::string> args) {
    int pipefd[2];
    EXPECT_EQ(::pipe(pipefd), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(pipefd[1], 1);
      ::dup2(pipefd[1], 2);
      ::close(pipefd[0]);
      // Groups first: after setuid the process may no longer change them.
      if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) {
        std::perror("dropping to uid 65534");
        ::_exit(125);
      }
      std::vector<char*> argv{const_cast<char*>(kHwnasBinary.c_str())};
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(kHwnasBinary.c_str(), argv.data());
      std::perror("exec as uid 65534");
      ::_exit(126);
    }
    ::close(pipefd[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return hwnas::test::CommandResult{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
  };
  const std::string db = (ro / "r.db").string();
  auto probe = as_nobody({"--version"});
  if (probe.exit_code == 125 || probe.exit_code == 126)
    GTEST_SKIP() << "cannot run the binary as uid 65534: " << probe.output;
  // Nobody may indeed not write there (else the test proves nothing).
  auto write = as_nobody({"search", d.file("c2.json", cfg.dump())});
  EXPECT_NE(write.exit_code, 0) << write.output;

  r = as_nobody({"runs", "--db", db});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ro"), std::string::npos) << r.output;
  r = as_nobody({"pareto", "--db", db, "--device", "jetson_orin_nano", "--format", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("val_accuracy"), std::string::npos) << r.output;
  r = as_nobody({"show", "--db", db, "1"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string html = (d.path / "report.html").string();
  r = as_nobody({"report", "--db", db, "--out", html});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(html));
  // Nothing was written next to the database, and the database is unchanged.
  EXPECT_FALSE(fs::exists(ro / "r.db-wal"));
  EXPECT_FALSE(fs::exists(ro / "r.db-shm"));
  EXPECT_EQ(fs::last_write_time(ro / "r.db"), before);

  // A read-only file in a directory anyone may write: read, and no -shm / -wal owned by nobody
  // is left for the owner to trip over.
  const fs::path shared = d.path / "shared.db";
  fs::copy_file(ro / "r.db", shared);
  fs::permissions(shared, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  r = as_nobody({"runs", "--db", shared.string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(shared.string() + "-wal"));
  EXPECT_FALSE(fs::exists(shared.string() + "-shm"));
}
