// The versioned binary container behind saved model states and training checkpoints.
//
// Layout (all integers little-endian):
//   magic     8 bytes           "HWNASSD\0" (model state) or "HWNASCK\0" (training checkpoint)
//   version   u32               kStateFileVersion
//   count     u64               number of records
//   records   count times:
//     name_len u32, name (UTF-8 bytes)
//     type     u8               1 = float32, 2 = int64, 3 = raw bytes
//     rank     u8, then rank dims as i64   (raw bytes: rank 1, dim = length)
//     data     product(dims) * element size bytes
//   checksum  u64               FNV-1a 64 of every byte before it
// Readers refuse, with one std::invalid_argument naming the file, a wrong magic, an unknown
// version, a truncated file, a checksum mismatch or a malformed record.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nn/tensor.hpp"

namespace hwnas::nn {

inline constexpr std::uint32_t kStateFileVersion = 1;
inline constexpr std::string_view kModelStateMagic{"HWNASSD\0", 8};
inline constexpr std::string_view kCheckpointMagic{"HWNASCK\0", 8};

enum class RecordType : std::uint8_t { Float32 = 1, Int64 = 2, Bytes = 3 };

struct StateRecord {
  std::string name;
  RecordType type = RecordType::Float32;
  std::vector<std::int64_t> shape;
  std::string data;  // raw little-endian elements

  static StateRecord from_tensor(std::string name, const Tensor& t);
  static StateRecord from_int(std::string name, std::int64_t v);
  static StateRecord from_bytes(std::string name, std::string bytes);
  // Each throws std::invalid_argument naming the record if its type does not fit.
  Tensor to_tensor() const;
  std::int64_t to_int() const;
};

std::string encode_state_file(std::string_view magic, const std::vector<StateRecord>& records);
// `source` names the data in error messages (usually the path).
std::vector<StateRecord> decode_state_file(std::string_view magic, const std::string& bytes,
                                           const std::string& source);

// Writes `bytes` to a temporary sibling (path + ".tmp.<pid>.<n>", one per writer), then renames
// it over `path`: a crash mid-write never leaves a half-written state under the real name, and
// two writers of one path never mix their bytes.  Throws std::runtime_error on I/O failure.
void write_file_atomically(const std::string& path, const std::string& bytes);
// Throws std::invalid_argument if the file cannot be opened.
std::string read_whole_file(const std::string& path);

}  // namespace hwnas::nn
