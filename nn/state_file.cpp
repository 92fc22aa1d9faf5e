#include "nn/state_file.hpp"

#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace hwnas::nn {
namespace {
// The payload is the in-memory representation; a big-endian port would swap here.
static_assert(std::endian::native == std::endian::little,
              "state files assume a little-endian host");

std::uint64_t fnv1a(const char* p, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

template <class T>
void put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

std::size_t element_size(RecordType t) {
  return t == RecordType::Bytes ? 1 : (t == RecordType::Int64 ? 8 : 4);
}

const char* type_name(RecordType t) {
  switch (t) {
    case RecordType::Float32:
      return "float32";
    case RecordType::Int64:
      return "int64";
    case RecordType::Bytes:
      return "bytes";
  }
  return "?";
}

class Reader {
 public:
  Reader(const std::string& bytes, std::size_t end, const std::string& source)
      : bytes_(bytes), end_(end), source_(source) {}
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string take(std::size_t n, const char* what) {
    need(n, what);
    std::string s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::size_t pos() const { return pos_; }

 private:
  void need(std::size_t n, const char* what) const {
    if (n > end_ - pos_)
      throw std::invalid_argument(source_ + ": truncated state file (" + what + " needs " +
                                  std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
                                  ", " + std::to_string(end_ - pos_) + " left)");
  }
  const std::string& bytes_;
  std::size_t end_, pos_ = 0;
  const std::string& source_;
};

std::string magic_text(std::string_view m) {
  std::string s;
  for (char c : m)
    s += (c >= 32 && c < 127) ? std::string(1, c)
                              : "\\" + std::to_string(static_cast<unsigned char>(c));
  return "'" + s + "'";
}
}  // namespace

StateRecord StateRecord::from_tensor(std::string name, const Tensor& t) {
  StateRecord r{std::move(name), RecordType::Float32, {}, {}};
  for (int d : t.shape().to_vector()) r.shape.push_back(d);
  if (!t.empty())
    r.data.assign(reinterpret_cast<const char*>(t.data()), static_cast<std::size_t>(t.numel()) * 4);
  return r;
}

StateRecord StateRecord::from_int(std::string name, std::int64_t v) {
  StateRecord r{std::move(name), RecordType::Int64, {}, {}};
  put(r.data, v);
  return r;
}

StateRecord StateRecord::from_bytes(std::string name, std::string bytes) {
  StateRecord r{std::move(name),
                RecordType::Bytes,
                {static_cast<std::int64_t>(bytes.size())},
                std::move(bytes)};
  return r;
}

Tensor StateRecord::to_tensor() const {
  if (type != RecordType::Float32)
    throw std::invalid_argument("state record '" + name + "' is " + type_name(type) +
                                ", expected float32");
  if (shape.size() > static_cast<std::size_t>(Shape::kMaxRank))
    throw std::invalid_argument("state record '" + name + "' has rank " +
                                std::to_string(shape.size()) + ", tensors allow at most " +
                                std::to_string(Shape::kMaxRank));
  std::vector<int> dims;
  for (std::int64_t d : shape) dims.push_back(static_cast<int>(d));
  Tensor t{Shape(dims)};
  if (!data.empty()) std::memcpy(t.data(), data.data(), data.size());
  return t;
}

std::int64_t StateRecord::to_int() const {
  if (type != RecordType::Int64 || data.size() != 8)
    throw std::invalid_argument("state record '" + name + "' is " + type_name(type) +
                                ", expected one int64");
  std::int64_t v;
  std::memcpy(&v, data.data(), 8);
  return v;
}

std::string encode_state_file(std::string_view magic, const std::vector<StateRecord>& records) {
  std::string out(magic);
  put<std::uint32_t>(out, kStateFileVersion);
  put<std::uint64_t>(out, records.size());
  for (const StateRecord& r : records) {
    std::int64_t numel = 1;
    for (std::int64_t d : r.shape) numel *= d;
    if (static_cast<std::size_t>(numel) * element_size(r.type) != r.data.size())
      throw std::logic_error(
          "encode_state_file: record '" + r.name + "' holds " + std::to_string(r.data.size()) +
          " bytes, its shape needs " +
          std::to_string(numel * static_cast<std::int64_t>(element_size(r.type))));
    put<std::uint32_t>(out, static_cast<std::uint32_t>(r.name.size()));
    out += r.name;
    put<std::uint8_t>(out, static_cast<std::uint8_t>(r.type));
    put<std::uint8_t>(out, static_cast<std::uint8_t>(r.shape.size()));
    for (std::int64_t d : r.shape) put<std::int64_t>(out, d);
    out += r.data;
  }
  put<std::uint64_t>(out, fnv1a(out.data(), out.size()));
  return out;
}

std::vector<StateRecord> decode_state_file(std::string_view magic, const std::string& bytes,
                                           const std::string& source) {
  const std::size_t header = magic.size() + 4 + 8;
  if (bytes.size() < magic.size() || bytes.compare(0, magic.size(), magic) != 0) {
    const std::string_view other = magic == kModelStateMagic ? kCheckpointMagic : kModelStateMagic;
    if (bytes.size() >= other.size() && bytes.compare(0, other.size(), other) == 0)
      throw std::invalid_argument(
          source + ": is a " +
          std::string(other == kCheckpointMagic ? "training checkpoint" : "model state") +
          " file, expected a " +
          std::string(magic == kCheckpointMagic ? "training checkpoint" : "model state"));
    throw std::invalid_argument(source + ": not an hwnas state file (magic " +
                                magic_text(std::string_view(bytes).substr(0, magic.size())) +
                                ", expected " + magic_text(magic) + ")");
  }
  if (bytes.size() < header + 8)
    throw std::invalid_argument(source + ": truncated state file (" + std::to_string(bytes.size()) +
                                " bytes, shorter than the header and checksum, " +
                                std::to_string(header + 8) + ")");
  Reader r(bytes, bytes.size() - 8, source);
  r.take(magic.size(), "magic");
  const auto version = r.get<std::uint32_t>("version");
  if (version != kStateFileVersion)
    throw std::invalid_argument(source + ": state file format version " + std::to_string(version) +
                                " is not supported (this build reads version " +
                                std::to_string(kStateFileVersion) + ")");
  const auto count = r.get<std::uint64_t>("record count");
  std::vector<StateRecord> out;
  for (std::uint64_t i = 0; i < count; ++i) {
    StateRecord rec;
    const auto name_len = r.get<std::uint32_t>("record name length");
    rec.name = r.take(name_len, "record name");
    const auto type = r.get<std::uint8_t>("record type");
    if (type < 1 || type > 3)
      throw std::invalid_argument(source + ": record '" + rec.name + "' has unknown type " +
                                  std::to_string(type));
    rec.type = static_cast<RecordType>(type);
    const auto rank = r.get<std::uint8_t>("record rank");
    std::uint64_t numel = 1;
    for (int d = 0; d < rank; ++d) {
      const auto dim = r.get<std::int64_t>("record shape");
      if (dim < 0 ||
          (dim > 0 && numel > (std::uint64_t{1} << 48) / static_cast<std::uint64_t>(dim)))
        throw std::invalid_argument(source + ": record '" + rec.name +
                                    "' has an invalid dimension " + std::to_string(dim));
      numel *= static_cast<std::uint64_t>(dim);
      rec.shape.push_back(dim);
    }
    rec.data = r.take(numel * element_size(rec.type), "record data");
    out.push_back(std::move(rec));
  }
  if (r.pos() != bytes.size() - 8)
    throw std::invalid_argument(source + ": " + std::to_string(bytes.size() - 8 - r.pos()) +
                                " unexpected bytes after the last record");
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (stored != fnv1a(bytes.data(), bytes.size() - 8))
    throw std::invalid_argument(source + ": checksum mismatch (the file is corrupted)");
  return out;
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  // A temporary name of this writer's own: two writers of one path (a worker given up that
  // still finishes, and the one re-running its candidate) must not interleave in one file;
  // the last rename wins with a whole file.
  static std::atomic<unsigned long> writes{0};
  const std::string tmp =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(writes.fetch_add(1));
  std::error_code ec;
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("cannot open '" + tmp + "' for writing");
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) {  // a full disk, a file-size limit: leave nothing behind
      std::filesystem::remove(tmp, ec);
      throw std::runtime_error("failed writing '" + path + "' (disk full or file too large?); " +
                               "nothing was written");
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
  }
}

std::string read_whole_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::invalid_argument("cannot open state file '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace hwnas::nn
