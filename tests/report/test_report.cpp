// `hwnas report`: the report's data (fronts, hypervolume history, cross-device agreement) from a
// database written here, the self-contained page, its atomic write, and the page rendered in a
// real headless browser (Debian's chromium): each device's plot holds the expected points and
// front members.  The browser test saves a screenshot to the build folder.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "db/store.hpp"
#include "report/html_report.hpp"
#include "report/report_data.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() /
               ("hwnas_report_" + name + "_" + std::to_string(static_cast<long>(::getpid())));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A finished run: 10 evaluations on devices "gpu" and "mcu"; evaluation 9 failed, evaluations 7
// and 8 are infeasible on the mcu.  Accuracy rises with latency on the gpu, so the gpu front is
// the evaluations that improve on every cheaper one.
struct Fixture {
  fs::path dir;
  std::string db;
  std::int64_t run = 0;
  std::vector<std::int64_t> ids;
};

Fixture make_db(const std::string& name) {
  Fixture f;
  f.dir = temp_dir(name);
  f.db = (f.dir / "r.db").string();
  db::Store s(f.db);
  f.run = s.create_run("report-test",
                       {{"objectives", {"val_accuracy:max", "latency_ms:min"}}, {"seed", 1}}, 1);
  const double acc[] = {0.70, 0.80, 0.75, 0.85, 0.82, 0.90, 0.60, 0.95, 0.97, 0.0};
  const double lat[] = {1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 0.5, 8.0, 9.0, 1.0};
  for (int i = 0; i < 10; ++i) {
    const std::string hash = "a" + std::to_string(1000 + i);
    const std::int64_t arch =
        s.upsert_architecture(hash, json::object(), i == 0 ? "x</script><b>" : "arch " + hash);
    db::EvaluationRecord e;
    e.run_id = f.run;
    e.arch_id = arch;
    e.status = i == 9 ? "failed" : "ok";
    if (i == 9)
      e.error = "out of memory";
    else
      e.metrics = {{"val_accuracy", acc[i]}};
    if (i != 9) {
      db::CostRecord gpu{"gpu",         true,           "",    lat[i], 10 * lat[i],
                         1e6 * (i + 1), json::object(), "none"};
      db::CostRecord mcu{"mcu",          i < 7,       i < 7 ? "" : "does not fit in SRAM",
                         100 * lat[i],   50 * lat[i], 2e6 * (i + 1),
                         json::object(), "measured"};
      e.costs = {gpu, mcu};
    }
    f.ids.push_back(s.add_evaluation(e));
  }
  // Fronts as a search would store them (gpu: 6, 0, 1, 3, 5, 7, 8; mcu: 6, 0, 1, 3, 5).
  auto pick = [&](std::initializer_list<int> idx) {
    std::vector<std::int64_t> out;
    for (int i : idx) out.push_back(f.ids[static_cast<std::size_t>(i)]);
    return out;
  };
  s.set_pareto(f.run, "gpu", pick({6, 0, 1, 3, 5, 7, 8}));
  s.set_pareto(f.run, "mcu", pick({6, 0, 1, 3, 5}));
  s.finish_run(f.run, "finished");
  return f;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST(ReportMath, HypervolumeByHand) {
  // Points (metric, cost): (0.5, 1), (0.8, 3); reference (0, 4):
  // [1,3) x 0.5 + [3,4) x 0.8 = 1.0 + 0.8.
  EXPECT_DOUBLE_EQ(report::hypervolume_2d({{0.5, 1}, {0.8, 3}}, 0, 4), 1.8);
  // A dominated point adds nothing; points beyond the reference add nothing.
  EXPECT_DOUBLE_EQ(report::hypervolume_2d({{0.5, 1}, {0.8, 3}, {0.4, 2}, {0.9, 5}}, 0, 4), 1.8);
  EXPECT_DOUBLE_EQ(report::hypervolume_2d({}, 0, 4), 0.0);
}

TEST(ReportMath, KendallTauByHand) {
  EXPECT_DOUBLE_EQ(report::kendall_tau({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(report::kendall_tau({1, 2, 3, 4}, {40, 30, 20, 10}), -1.0);
  // One swapped pair of 6: (5 - 1) / 6.
  EXPECT_NEAR(report::kendall_tau({1, 2, 3, 4}, {1, 3, 2, 4}), 4.0 / 6.0, 1e-12);
  EXPECT_TRUE(std::isnan(report::kendall_tau({1}, {1})));
}

TEST(ReportData, FrontsHistoryAndAgreement) {
  Fixture f = make_db("data");
  db::Store s(f.db, true);
  const json d = report::collect_run(s, f.run);
  EXPECT_EQ(d["metric"]["name"], "val_accuracy");
  EXPECT_TRUE(d["metric"]["maximize"].get<bool>());
  EXPECT_EQ(d["cost"], "latency_ms");
  EXPECT_EQ(d["devices"], json({"gpu", "mcu"}));
  EXPECT_EQ(d["evaluations"].size(), 10u);
  EXPECT_EQ(d["fronts"]["gpu"].size(), 7u);
  EXPECT_EQ(d["evaluations"][7]["costs"]["mcu"]["feasible"], false);
  EXPECT_EQ(d["evaluations"][9]["status"], "failed");
  // History: one entry per evaluation; hypervolume never falls and grows with a better point.
  const json& hv = d["history"]["gpu"]["hypervolume"];
  ASSERT_EQ(hv.size(), 10u);
  for (std::size_t i = 1; i < hv.size(); ++i)
    EXPECT_GE(hv[i].get<double>(), hv[i - 1].get<double>());
  EXPECT_GT(hv[8].get<double>(), hv[7].get<double>());
  EXPECT_DOUBLE_EQ(d["history"]["gpu"]["best"][8].get<double>(), 0.97);
  // The mcu's latency is 100x the gpu's on the same architectures: identical rankings.
  EXPECT_DOUBLE_EQ(d["agreement"]["kendall_tau"][0][1].get<double>(), 1.0);
  EXPECT_THROW(report::collect_run(s, f.run + 5), std::invalid_argument);
  fs::remove_all(f.dir);
}

TEST(ReportHtml, SelfContainedAndSafe) {
  Fixture f = make_db("html");
  db::Store s(f.db, true);
  const std::string html = report::render_html(report::collect_run(s, f.run));
  EXPECT_NE(html.find("Chart.js v3"), std::string::npos);  // inlined, not linked
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  // Stored text cannot close the data script early.
  EXPECT_EQ(html.find("x</script><b>"), std::string::npos);
  EXPECT_NE(html.find("x<\\/script><b>"), std::string::npos);

  report::ReportOptions bad;
  bad.chartjs_path = (f.dir / "missing.js").string();
  try {
    report::render_html(report::collect_run(s, f.run), bad);
    FAIL() << "no error for a missing Chart.js";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("install Debian's libjs-chart.js"), std::string::npos);
  }
  fs::remove_all(f.dir);
}

TEST(ReportHtml, FailedWriteLeavesNoFile) {
  // A path under a plain file cannot be written, even by root.
  Fixture f = make_db("write");
  db::Store s(f.db, true);
  const fs::path not_a_dir = f.dir / "plain_file";
  std::ofstream(not_a_dir) << "x";
  EXPECT_THROW(report::write_report(s, f.run, (not_a_dir / "r.html").string()), std::runtime_error);
  const fs::path out = f.dir / "r.html";
  report::write_report(s, f.run, out.string());
  EXPECT_TRUE(fs::exists(out));
  for (const auto& entry : fs::directory_iterator(f.dir))  // no temporary left behind
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  fs::remove_all(f.dir);
}

// The page as a person sees it: rendered by headless chromium, the DOM after the scripts ran.
TEST(ReportBrowser, PlotsHoldTheExpectedPoints) {
  if (std::system("command -v chromium >/dev/null 2>&1") != 0)
    FAIL() << "chromium is not installed; scripts/setup.sh installs it (Debian package chromium)";
  Fixture f = make_db("browser");
  const fs::path page = f.dir / "report.html";
  {
    db::Store s(f.db, true);
    report::write_report(s, f.run, page.string());
  }
  const fs::path dom = f.dir / "dom.html";
  const fs::path shot = fs::path(HWNAS_BINARY_DIR) / "report_screenshot.png";
  const std::string flags =
      "--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run "
      "--user-data-dir=" +
      (f.dir / "profile").string() + " --virtual-time-budget=10000 ";
  ASSERT_EQ(std::system(("chromium " + flags + "--dump-dom file://" + page.string() + " > " +
                         dom.string() + " 2>/dev/null")
                            .c_str()),
            0);
  const std::string html = slurp(dom);
  ASSERT_NE(html.find("data-rendered=\"1\""), std::string::npos) << "the page's script failed";
  // gpu: 9 ok evaluations plotted, 7 of them on the front, none infeasible;
  // mcu: 9 plotted, 5 on the front, 2 infeasible (7 and 8).
  for (const auto& [dev, points, front, infeasible] :
       std::vector<std::tuple<std::string, int, int, int>>{{"gpu", 9, 7, 0}, {"mcu", 9, 5, 2}}) {
    const std::regex re(
        "<div class=\"chart scatter\" data-device=\"" + dev +
        "\" data-points=\"(\\d+)\" data-front=\"(\\d+)\" data-infeasible=\"(\\d+)\"");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(html, m, re)) << dev;
    EXPECT_EQ(std::stoi(m[1]), points) << dev;
    EXPECT_EQ(std::stoi(m[2]), front) << dev;
    EXPECT_EQ(std::stoi(m[3]), infeasible) << dev;
  }
  EXPECT_NE(html.find("<canvas"), std::string::npos);
  EXPECT_NE(html.find("id=\"kendall\""), std::string::npos);
  // A screenshot of the rendered page, for people (build/report_screenshot.png).
  std::system(("chromium " + flags + "--window-size=1280,2400 --screenshot=" + shot.string() +
               " file://" + page.string() + " >/dev/null 2>&1")
                  .c_str());
  EXPECT_TRUE(fs::exists(shot));
  fs::remove_all(f.dir);
}

// The command: exit 0 and a page; a bad database or run is one error line and exit 2.
TEST(ReportCli, WritesThePageOrOneErrorLine) {
  Fixture f = make_db("cli");
  const std::string bin = std::string(HWNAS_BINARY_DIR) + "/hwnas";
  auto run = [&](const std::string& args, std::string& err) {
    const fs::path e = f.dir / "stderr.txt";
    const int rc = std::system((bin + " report " + args + " >/dev/null 2>" + e.string()).c_str());
    err = slurp(e);
    return WEXITSTATUS(rc);
  };
  std::string err;
  const fs::path out = f.dir / "cli.html";
  EXPECT_EQ(run("--db " + f.db + " --out " + out.string(), err), 0) << err;
  EXPECT_TRUE(fs::exists(out));
  EXPECT_EQ(run("--db " + (f.dir / "none.db").string() + " --out " + out.string(), err), 2);
  EXPECT_NE(err.find("error: "), std::string::npos);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(run("--db " + f.db + " --run 99 --out " + out.string(), err), 2);
  EXPECT_EQ(err, "error: no run 99 in " + f.db + "\n");
  fs::remove_all(f.dir);
}
