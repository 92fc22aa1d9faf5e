// What the store tests share.  The fixture: a fresh folder per test (named after the suite, the
// test and the process) holding the database path `path_`, removed afterwards.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "db/store.hpp"

namespace hwnas::db::testing {

class TempStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("hwnas_test_db_" + std::string(info->test_suite_name()) + "_" +
            std::to_string(::getpid()) + "_" + info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "results.db").string();
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::filesystem::path dir_;
  std::string path_;
};

// An ok evaluation of `arch` in `run` with one metric, as proposal `proposal`.
inline EvaluationRecord evaluation(std::int64_t run, std::int64_t arch, std::int64_t proposal) {
  EvaluationRecord e;
  e.run_id = run;
  e.arch_id = arch;
  e.metrics = {{"val_accuracy", 0.5}};
  e.proposal_id = proposal;
  return e;
}

}  // namespace hwnas::db::testing
