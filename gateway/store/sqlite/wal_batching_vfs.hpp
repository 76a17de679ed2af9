// The store writer's SQLite VFS: the default one, except that the frames a commit appends to the WAL reach the
// file in a few large writes instead of two per page (wal_batching_vfs.cpp says why and when that is safe).
#pragma once

#include <cstdint>

namespace tayori::store::sqlite {

// The name to open the writer's connection with (sqlite3_open_v2's zVfs). Registered on first use, over the
// process's default VFS.
const char* wal_batching_vfs();

// The same shim over the VFS named `below`, registered as `name` (a string that lives as long as the process;
// tests put a VFS that fails below it).
void register_wal_batching_vfs(const char* name, const char* below);

// What the shim has done since the process started, for tests: writes SQLite asked of WAL files, and the writes
// that reached the VFS below.
struct WalBatchingCounts {
  int64_t asked = 0;
  int64_t issued = 0;
};
WalBatchingCounts wal_batching_counts();

}  // namespace tayori::store::sqlite
