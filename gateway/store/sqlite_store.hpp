// The embedded Store: one SQLite file in WAL mode, `synchronous=FULL`, one writer thread that
// group-commits (many requests share one fsync), and a pool of read connections.
#pragma once

#include <memory>
#include <string>

#include "store/store.hpp"

namespace tayori::store {

struct SqliteOptions {
  std::string path;             // the database file; its folder must exist
  int max_group = 1024;         // operations per group commit at most
  bool synchronous_full = true; // FULL: a commit is on disk when it returns (the 202 promise)
};

// Opens (creating and migrating as needed). Throws std::runtime_error naming the file when it cannot.
std::unique_ptr<Store> open_sqlite(const SqliteOptions& options);

}  // namespace tayori::store
