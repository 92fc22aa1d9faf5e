#include "common/json_file.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace hwnas {
namespace {

using json = nlohmann::json;

// Replays a failed parse only to learn where it failed: the field path ("a.b[2].c") of the
// value the parser was at.  Parsing with it builds nothing, so the good path pays nothing.
class FieldTracker final : public nlohmann::json_sax<json> {
 public:
  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override { return open(false); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(true); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    levels_.back().key = k;
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception&) override {
    field_ = path();
    position_ = position;
    return false;
  }

  const std::string& field() const { return field_; }
  std::size_t position() const { return position_; }

 private:
  struct Level {
    bool array = false;
    std::size_t index = 0;
    std::string key;
  };
  bool value() {
    if (!levels_.empty() && levels_.back().array) ++levels_.back().index;
    return true;
  }
  bool open(bool array) {
    levels_.push_back({array, 0, {}});
    return true;
  }
  bool close() {
    levels_.pop_back();
    return value();
  }
  std::string path() const {
    std::string p;
    for (const auto& l : levels_) {
      if (l.array)
        p += "[" + std::to_string(l.index) + "]";
      else if (!l.key.empty())
        p += (p.empty() ? "" : ".") + l.key;
    }
    return p;
  }

  std::vector<Level> levels_;
  std::string field_;
  std::size_t position_ = 0;
};

// "line L, column C" of byte offset `pos` (1-based, as editors count).
std::string where_in(const std::string& text, std::size_t pos) {
  pos = std::min(pos, text.size());
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < pos; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

// nlohmann's own text without its "[json.exception.parse_error.101] parse error at line 1,
// column 5: " prefix, which repeats what the caller says better.
std::string bare(const std::string& what) {
  auto p = what.find("]: ");
  if (p == std::string::npos) p = what.find("] ");
  std::string s = p == std::string::npos ? what : what.substr(p + (what[p + 1] == ':' ? 3 : 2));
  if (auto c = s.find(": "); s.rfind("parse error", 0) == 0 && c != std::string::npos)
    s = s.substr(c + 2);
  return s;
}

}  // namespace

json parse_json_text(const std::string& text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    // Only parse_error (syntax) and out_of_range 406 (a number beyond the double range) come
    // out of parse; replay the text to name the field, and find the line of the failure.
    FieldTracker tracker;
    json::sax_parse(text, &tracker);
    const std::string at = where_in(text, tracker.position()) +
                           (tracker.field().empty() ? "" : ", field '" + tracker.field() + "'");
    if (e.id == 406) {
      // out_of_range 406: "number overflow parsing '1e400'"; the quoted token is the number.
      const std::string what = e.what();
      const auto q = what.find('\'');
      const std::string number =
          q == std::string::npos ? "a number" : "the number " + what.substr(q);
      throw JsonFileError((source.empty() ? at : "'" + source + "' (" + at + ")") + ": " + number +
                          " is beyond the range of a double (magnitudes up to about 1.8e308)");
    }
    throw JsonFileError((source.empty() ? "" : "'" + source + "' ") + "is not valid JSON (" + at +
                        "): " + bare(e.what()));
  }
}

json read_json_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw JsonFileError("'" + path + "' is a directory, not a JSON file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw JsonFileError("cannot open '" + path + "': " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw JsonFileError("cannot read '" + path + "': " + std::strerror(errno));
  return parse_json_text(buf.str(), path);
}

}  // namespace hwnas
