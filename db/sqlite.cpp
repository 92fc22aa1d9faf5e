#include "db/sqlite.hpp"

#include <sqlite3.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

namespace hwnas::db {

namespace {

std::string with_context(std::string_view what, std::string_view context) {
  std::string msg(what);
  if (!context.empty()) {
    msg += " [";
    msg += context;
    msg += "]";
  }
  return msg;
}

// A file: URI naming `path` (RFC 3986: '%', '?' and '#' would end or escape the path).
std::string file_uri(const std::string& path) {
  std::string uri = "file:";
  for (unsigned char c : std::filesystem::absolute(path).string()) {
    if (c == '%' || c == '?' || c == '#' || c < 0x20 || c >= 0x7f) {
      static const char* hex = "0123456789ABCDEF";
      uri += '%';
      uri += hex[c >> 4];
      uri += hex[c & 15];
    } else {
      uri += static_cast<char>(c);
    }
  }
  return uri;
}

// Whether a read-only open is made immutable.  A reader of a WAL database needs the -shm index,
// which SQLite creates next to the file: in a directory this process may not write (a read-only
// mount, another user's results) it cannot, and every query fails with "attempt to write a
// readonly database"; next to a file it may not write, it would leave a -shm and an empty -wal
// owned by the reader, which the file's owner may then be unable to write or remove (sticky
// /tmp).  Where no -wal file exists the database file alone holds every commit (the last
// connection to close checkpoints the WAL into it and deletes it), so "immutable=1" reads it
// exactly, without -shm, -wal or locks.  Where a -wal exists (a writer is running, or one
// crashed) its commits are only in it: immutable would hide them, so the plain read-only open
// is kept; SQLite (>= 3.22) reads it through the existing -shm even when that is not writable.
// A writer able to start after this check (someone else may write the directory and the file)
// could make a query fail; the file is never written, so it cannot be damaged.
bool needs_immutable(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path + "-wal", ec)) return false;
  const auto dir = std::filesystem::absolute(path, ec).parent_path();
  return ::access(dir.c_str(), W_OK) != 0 || ::access(path.c_str(), W_OK) != 0;
}

}  // namespace

void Connection::Closer::operator()(sqlite3* db) const noexcept {
  // close_v2 defers the close until outstanding statements are finalized, so destruction order
  // between a Connection and its Statements cannot leak or crash.
  sqlite3_close_v2(db);
}

Connection::Connection(const std::string& path, bool read_only)
    : path_(path), read_only_(read_only) {
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  std::string name = path;
  if (read_only && needs_immutable(path)) {
    flags |= SQLITE_OPEN_URI;
    name = file_uri(path) + "?immutable=1";
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(name.c_str(), &raw, flags, nullptr);
  db_.reset(raw);  // sqlite hands back a handle even on failure; it must still be closed
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    throw DbError("cannot open database: " + msg);  // Store prefixes the path
  }
  sqlite3_extended_result_codes(raw, 1);
}

void Connection::check(int rc, std::string_view context) const {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return;
  std::string msg = db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
  throw DbError(with_context(msg, context));
}

void Connection::exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_.get(), s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw DbError(with_context(msg, sql));
  }
}

std::optional<std::string> Connection::query_text(std::string_view sql) {
  Statement st(*this, sql);
  if (!st.step() || st.is_null(0)) return std::nullopt;
  return st.get_text(0);
}

std::int64_t Connection::query_int(std::string_view sql) {
  Statement st(*this, sql);
  if (!st.step()) throw DbError(with_context("query returned no row", sql));
  return st.get_int(0);
}

std::int64_t Connection::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_.get()); }
int Connection::changes() const { return sqlite3_changes(db_.get()); }
bool Connection::in_transaction() const { return sqlite3_get_autocommit(db_.get()) == 0; }

void Statement::Finalizer::operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }

Statement::Statement(Connection& conn, std::string_view sql) : conn_(&conn), sql_(sql) {
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  int rc =
      sqlite3_prepare_v2(conn.db_.get(), sql_.c_str(), static_cast<int>(sql_.size()), &raw, &tail);
  stmt_.reset(raw);
  conn.check(rc, sql_);
  if (!raw) throw DbError(with_context("empty statement", sql_));
}

Statement& Statement::bind(int index, std::int64_t v) {
  conn_->check(sqlite3_bind_int64(stmt_.get(), index, v), sql_);
  return *this;
}

Statement& Statement::bind(int index, double v) {
  if (std::isnan(v)) return bind_null(index);
  conn_->check(sqlite3_bind_double(stmt_.get(), index, v), sql_);
  return *this;
}

Statement& Statement::bind(int index, std::string_view v) {
  conn_->check(
      sqlite3_bind_text64(stmt_.get(), index, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
      sql_);
  return *this;
}

Statement& Statement::bind_null(int index) {
  conn_->check(sqlite3_bind_null(stmt_.get(), index), sql_);
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  conn_->check(rc, sql_);
  return false;  // unreachable: check throws
}

void Statement::run() {
  if (step()) throw DbError(with_context("statement unexpectedly returned rows", sql_));
}

void Statement::reset() {
  // sqlite3_reset reports the error of the previous step again; that one was already thrown.
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
}

bool Statement::is_null(int col) const {
  return sqlite3_column_type(stmt_.get(), col) == SQLITE_NULL;
}

std::int64_t Statement::get_int(int col) const { return sqlite3_column_int64(stmt_.get(), col); }

double Statement::get_double(int col) const {
  if (is_null(col)) return std::numeric_limits<double>::quiet_NaN();
  return sqlite3_column_double(stmt_.get(), col);
}

std::string Statement::get_text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_.get(), col);
  if (!p) return {};
  int n = sqlite3_column_bytes(stmt_.get(), col);
  return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
}

Transaction::Transaction(Connection& conn, Mode mode) : conn_(conn) {
  conn_.exec(mode == Mode::Write ? "BEGIN IMMEDIATE" : "BEGIN");
}

Transaction::~Transaction() {
  if (done_) return;
  // A failed ROLLBACK (e.g. SQLite already rolled back after an I/O error) must not throw from a
  // destructor; the connection is back in autocommit either way.
  if (conn_.in_transaction()) {
    try {
      conn_.exec("ROLLBACK");
    } catch (...) {
    }
  }
}

void Transaction::commit() {
  conn_.exec("COMMIT");
  done_ = true;
}

}  // namespace hwnas::db
