// Reading the JSON files the CLI is given (config, space, device, LUT, genome, architecture).
// Every bad file gets one error that names the file, the line and, where it can, the field:
// nlohmann::json answers a number beyond the double range (1e400) with an out_of_range error
// "number overflow parsing '1e400'" that names neither, and callers that catch only parse_error
// let it escape unexplained.  One reader, so every file is checked the same way.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace hwnas {

// Thrown for a file that cannot be read or is not valid JSON.  The message starts with the
// quoted path, e.g. "'dev.json' line 3, field 'table.conv.latency_us': number 1e400 is out of
// the range of a double (largest magnitude 1.8e308)".
struct JsonFileError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Parses `text` read from the file `source` ("": text the caller names itself, e.g. a line of
// stdin); throws JsonFileError.
nlohmann::json parse_json_text(const std::string& text, const std::string& source);

// Reads and parses the file at `path`; throws JsonFileError ("cannot open", "is a directory",
// "is not valid JSON", a number out of range).
nlohmann::json read_json_file(const std::string& path);

}  // namespace hwnas
