// Thin RAII wrappers over the SQLite C API, in the style of SQLiteCpp: a Connection owns the
// sqlite3* through unique_ptr with a deleter, a Statement owns its sqlite3_stmt*, and a
// Transaction rolls back in its destructor unless commit() was called.  Every failing call throws
// DbError carrying sqlite3_errmsg and the SQL or context that failed.  The raw handles never
// leave db/: only db/*.cpp include this header (tests may, to build adversarial fixtures).
//
// One Connection per thread; these classes are not meant to be shared between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "db/store.hpp"  // DbError

struct sqlite3;
struct sqlite3_stmt;

namespace hwnas::db {

class Connection {
 public:
  // Opens the file.  read_only opens with SQLITE_OPEN_READONLY and never creates the file (nor,
  // in a directory it may not write, a -shm or -wal file: see sqlite.cpp); otherwise the file
  // is created when missing.
  Connection(const std::string& path, bool read_only);

  // Runs one or more statements that return no rows we care about.
  void exec(std::string_view sql);
  // The first column of the first row of a single statement (e.g. a PRAGMA), as text / integer.
  std::optional<std::string> query_text(std::string_view sql);
  std::int64_t query_int(std::string_view sql);

  std::int64_t last_insert_rowid() const;
  int changes() const;
  bool in_transaction() const;
  const std::string& path() const { return path_; }
  bool read_only() const { return read_only_; }

  // Throws DbError with sqlite3_errmsg when rc is not SQLITE_OK/ROW/DONE.
  void check(int rc, std::string_view context) const;

 private:
  friend class Statement;
  struct Closer {
    void operator()(sqlite3* db) const noexcept;
  };
  std::unique_ptr<sqlite3, Closer> db_;
  std::string path_;
  bool read_only_ = false;
};

class Statement {
 public:
  Statement(Connection& conn, std::string_view sql);

  // 1-based parameter index, as in sqlite3_bind_*.  Strings are copied (SQLITE_TRANSIENT).
  Statement& bind(int index, std::int64_t v);
  Statement& bind(int index, int v) { return bind(index, static_cast<std::int64_t>(v)); }
  Statement& bind(int index, double v);  // NaN is stored as NULL (SQLite has no NaN)
  Statement& bind(int index, std::string_view v);
  Statement& bind(int index, const std::string& v) { return bind(index, std::string_view(v)); }
  Statement& bind(int index, const char* v) { return bind(index, std::string_view(v)); }
  Statement& bind_null(int index);

  // Advances: true when a row is available, false when done.
  bool step();
  // Steps a statement that must not return rows (INSERT/UPDATE/DELETE).
  void run();
  void reset();  // ready to run again; bindings are cleared too

  // 0-based column index, as in sqlite3_column_*.
  bool is_null(int col) const;
  std::int64_t get_int(int col) const;
  double get_double(int col) const;     // NULL reads as NaN (we store NaN as NULL)
  std::string get_text(int col) const;  // NULL reads as ""

  const std::string& sql() const { return sql_; }

 private:
  struct Finalizer {
    void operator()(sqlite3_stmt* s) const noexcept;
  };
  Connection* conn_;
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
  std::string sql_;
};

// Write mode: BEGIN IMMEDIATE on construction (takes the write lock up front, so a concurrent
// writer waits in busy_timeout instead of failing later with SQLITE_BUSY on lock upgrade).
// Read mode: plain BEGIN, so several SELECTs see one snapshot while a search keeps writing.
// ROLLBACK in the destructor unless commit() succeeded.
class Transaction {
 public:
  enum class Mode { Write, Read };
  explicit Transaction(Connection& conn, Mode mode = Mode::Write);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Connection& conn_;
  bool done_ = false;
};

}  // namespace hwnas::db
