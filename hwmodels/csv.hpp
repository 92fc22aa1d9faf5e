// One CSV line split into fields (RFC 4180: commas separate, double quotes enclose fields that
// hold commas or quotes, "" is a literal quote; a trailing CR is dropped).  Shared by the
// calibration measurements reader and the tabular-benchmark evaluator.
#pragma once

#include <string>
#include <vector>

namespace hwnas::hw {

std::vector<std::string> split_csv_line(const std::string& line);

}  // namespace hwnas::hw
