// Bad command lines get one line "error: ..." that names the flag or file and a readable range
// or fix, and exit code 2 (issue 13 item 7): empty --db, out-of-range and non-numeric numbers
// (never CLI11's 300-digit DBL_MAX range), negative or zero run ids (never "the latest run"),
// a directory given as the config, a misspelt command.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "cli_util.hpp"

using hwnas::test::run_hwnas;

namespace {

const std::string kQuickstart = std::string(HWNAS_SOURCE_DIR) + "/examples/quickstart.json";

void expect_one_error(const std::string& args, const std::string& what) {
  const auto r = run_hwnas(args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
  EXPECT_EQ(r.output.rfind("error: ", 0), 0u) << args << "\n" << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << "one line: " << r.output;
  EXPECT_NE(r.output.find(what), std::string::npos) << args << "\n" << r.output;
  EXPECT_EQ(r.output.find("179769313486231570"), std::string::npos) << r.output;
}

}  // namespace

TEST(CliBadInput, NumbersAreCheckedAgainstReadableRanges) {
  expect_one_error("search " + kQuickstart + " --budget 0", "--budget: Value 0 not in range 1 to");
  expect_one_error("search " + kQuickstart + " --budget ten", "--budget: Value ten");
  expect_one_error("search " + kQuickstart + " --seed -1", "--seed: Value -1 not in range 0 to");
  expect_one_error("search " + kQuickstart + " --seed 123456789012345678901",
                   "not in range 0 to 4294967295");
  expect_one_error("search " + kQuickstart + " --workers 5000", "not in range 0 to 4096");
}

TEST(CliBadInput, RunIdsAreOneOrMore) {
  for (const std::string cmd : {"pareto --db x.db", "report --db x.db",
                                "rescore --db x.db "
                                "--device rpi4_a72"})
    for (const std::string id : {"-1", "0"})
      expect_one_error(cmd + " --run " + id, "--run: Value " + id + " not in range 1 to");
  expect_one_error("search " + kQuickstart + " --resume --run -2", "--run: Value -2");
}

TEST(CliBadInput, EmptyDbDirectoryConfigAndUnknownCommand) {
  expect_one_error("search " + kQuickstart + " --db ''", "--db: the path is empty");
  expect_one_error("search " + std::string(HWNAS_SOURCE_DIR) + "/examples",
                   "is a directory; give a JSON file");
  expect_one_error("frobnicate", "unknown command 'frobnicate' (commands: search,");
  expect_one_error("search", "config is required");
}

// Every command that takes a seed checks it like `search --seed` does: CLI11 alone read -1 and a
// 21-digit seed as 2^64 - 1, so different seeds silently gave the same samples.
TEST(CliBadInput, EverySeedIsCheckedAgainstItsRange) {
  const std::string space = std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json";
  const std::vector<std::string> commands = {
      "space sample " + space,
      "hw measure --space " + space + " --out m.csv",
      "hw calibrate --device rpi4_a72 -m m.csv --out t.json",
      "hw predict --device rpi4_a72 --space " + space + " --sample 2",
      "export --genome g.json --format onnx --out m.onnx",
      "train --db x.db --arch 1"};
  for (const std::string& cmd : commands) {
    expect_one_error(cmd + " --seed -1", "--seed: Value -1 not in range 0 to 4294967295");
    expect_one_error(cmd + " --seed 123456789012345678901",
                     "--seed: Value 123456789012345678901 not in range 0 to 4294967295");
  }
}

TEST(CliBadInput, AnEmptyDbIsRefusedByEveryCommandThatReadsOne) {
  for (const std::string cmd : {"runs", "pareto", "show 1", "report", "rescore --device rpi4_a72",
                                "export --arch 1 --format onnx --out m.onnx", "train --arch 1"})
    expect_one_error(cmd + " --db ''", "--db: the path is empty; give the SQLite file");
}

TEST(CliBadInput, MisspeltAndMissingSubcommandsAreNamed) {
  expect_one_error("hw predcit --device rpi4_a72 x",
                   "unknown command 'hw predcit' (commands: list, families, show, predict,");
  expect_one_error("space smaple x", "unknown command 'space smaple' (commands: blocks, types,");
  expect_one_error("hw", "'hwnas hw' needs a command (commands: list,");
  expect_one_error("", "'hwnas' needs a command (commands: search,");
}

// A file the CLI writes is whole or absent: with a file-size limit standing in for a full disk,
// `hw measure` fails with a message and a nonzero exit and leaves neither its CSV nor a partial
// genome or temporary file behind.
TEST(CliBadInput, AFullDiskLeavesNoPartialFile) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("hwnas_cli_full_disk_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string out = (dir / "m.csv").string();
  // 1 KiB at most per file, and SIGXFSZ ignored so that writes fail with EFBIG instead.
  const std::string cmd = "sh -c 'ulimit -f 1; trap \"\" XFSZ; exec " + hwnas::test::kHwnasBinary +
                          " hw measure --space " + std::string(HWNAS_SOURCE_DIR) +
                          "/examples/spaces/cnn.json --n 2 --reps 1 --warmup 0 --out " + out +
                          "' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string output;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) output.append(buf, n);
  const int status = ::pclose(p);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0) << output;
  EXPECT_NE(output.find("error: failed writing"), std::string::npos) << output;
  EXPECT_FALSE(std::filesystem::exists(out));
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) ADD_FAILURE() << "left behind: " << e.path();
  std::filesystem::remove_all(dir);
}

// `hwnas search quickstart` with `env` (VAR=value) in front, through the shell: its exit status
// and its stdout + stderr.
std::pair<int, std::string> search_with_env(const std::string& env) {
  const std::string cmd =
      env + " " + hwnas::test::kHwnasBinary + " search " + kQuickstart + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A misspelt or unsupported GEMM kernel family is one error before any work starts.
TEST(CliBadInput, GemmKernelOverrideIsChecked) {
  const auto r = run_hwnas("--version");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto [code, out] = search_with_env("HWNAS_GEMM_ISA=avx1024");
  EXPECT_EQ(code, 2) << out;
  EXPECT_EQ(out.rfind("error: HWNAS_GEMM_ISA: unknown kernel family 'avx1024' (use avx512, avx2 or "
                      "eigen",
                      0),
            0u)
      << out;
  EXPECT_EQ(out.find('\n'), out.size() - 1) << "one line: " << out;
}

// So is an unknown convolution formulation (nn/conv_spectral.hpp).
TEST(CliBadInput, ConvAlgorithmOverrideIsChecked) {
  const auto [code, out] = search_with_env("HWNAS_CONV_ALGORITHM=fft");
  EXPECT_EQ(code, 2) << out;
  EXPECT_EQ(out,
            "error: HWNAS_CONV_ALGORITHM: unknown value 'fft' (use auto, direct or spectral, "
            "or unset it)\n");
}
