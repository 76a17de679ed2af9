// The embedded Store: one SQLite file in WAL mode, `synchronous=FULL`, one writer thread that
// group-commits (many requests share one fsync), and a pool of read connections. It is SqlStore
// (sql_store.hpp) with SQLite's backend (sqlite/sqlite_store.cpp).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "store/store.hpp"

namespace tayori::store {

struct SqliteOptions {
  std::string path;             // the database file; its folder must exist
  int max_group = 1024;         // operations per group commit at most
  bool synchronous_full = true; // FULL: a commit is on disk when it returns (the 202 promise)
  // The largest the database may grow (PRAGMA max_page_count); 0: no limit but the disk. A write past it
  // fails exactly like a full disk (SQLITE_FULL), so the operator can keep the gateway from filling the
  // volume it shares, and the full-disk path is testable.
  int64_t max_bytes = 0;
  // Told after each checkpoint the checkpointer thread runs, on that thread: SQLite's result code, the WAL's
  // length in frames and how many of them are now in the database (sqlite3_wal_checkpoint_v2). Checkpoints
  // happen on a thread of their own, so a test waits for this instead of for time to pass. Must not throw.
  std::function<void(int rc, int wal_frames, int checkpointed_frames)> on_checkpoint{};
  // The WAL's length in frames (pages) at which the writer starts it over, between two groups, rather than
  // let it grow for as long as writes come without a pause (sqlite_store.cpp, between_groups). 32 MiB. A WAL that
  // grew past twice this meanwhile (a long reader) is cut back to twice this once it starts over.
  int wal_restart_frames = 8192;
  // Told after each attempt to start the WAL over, on the writer's thread: SQLite's result code (SQLITE_OK: the
  // next commit writes from the WAL's start; SQLITE_BUSY: a reader or a checkpoint was in the way). Must not throw.
  std::function<void(int rc)> on_wal_restart{};
};

// Opens (creating and migrating as needed). Throws std::runtime_error naming the file when it cannot.
std::unique_ptr<Store> open_sqlite(const SqliteOptions& options);

}  // namespace tayori::store
