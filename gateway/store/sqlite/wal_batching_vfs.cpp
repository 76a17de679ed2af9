// SQLite writes each WAL frame with two pwrite calls, its 24-byte header and then its page (wal.c,
// walWriteOneFrame), and a group commit appends all its frames one after the other: the store writer, the one
// thread every 202 waits for, made 4-5 such calls per delivered message (strace: 24 then 4096 bytes,
// alternating). This VFS gathers the writes SQLite makes to a WAL file while each continues the last, and hands
// them on as one write when anything else touches the file: the sync of the commit, a read, a truncate, a close.
//
// Why that changes nothing SQLite relies on (https://sqlite.org/wal.html, https://sqlite.org/vfs.html):
// - Order: a write that does not continue the gathered run sends the run first, and every other method sends
//   it before it runs, so the file sees the same writes in the same order, only fewer and larger.
// - Durability: with synchronous=FULL SQLite syncs the WAL at every commit, and the sync sends the run first;
//   a commit still returns only once its frames are written and synced. A crash before that loses frames
//   that were never synced, which SQLite's recovery discards anyway (their checksums do not close a commit).
// - Visibility: other connections (readers, the checkpointer) read frames through file handles of their own,
//   but only frames a commit has published in the WAL index, which SQLite updates after the sync
//   (sqlite3WalFrames). Under synchronous=NORMAL it publishes without a sync, so the store uses this VFS only
//   with FULL.
// - Errors: a write that fails when the run is sent fails the sync (or read) that sent it, and SQLite rolls the
//   transaction back as it would have for the write itself.
#include "store/sqlite/wal_batching_vfs.hpp"

#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "store/sqlite/sqlite_connection.hpp"

namespace tayori::store::sqlite {

namespace {

// The most one write to the VFS below may carry: the unix VFS masks a write's length to 17 bits
// (os_unix.c, seekAndWriteFd: nBuf &= 0x1ffff) and reports the short write as SQLITE_FULL. 31 frames of a
// 4 KiB page fit.
constexpr size_t kMaxRun = 0x1ffff;

std::atomic<int64_t> g_asked{0};
std::atomic<int64_t> g_issued{0};

// A WAL file: SQLite's handle of ours, the VFS below's handle right behind it in the same allocation.
struct WalFile {
  sqlite3_file base;
  sqlite3_file* below;
  std::vector<char>* run;  // the gathered writes, which start at run_at in the file
  sqlite3_int64 run_at;
};
constexpr int kWalFileSize = static_cast<int>((sizeof(WalFile) + 7) / 8 * 8);

WalFile* wal(sqlite3_file* f) { return reinterpret_cast<WalFile*>(f); }
const sqlite3_io_methods& below_methods(WalFile* w) { return *w->below->pMethods; }

int write_below(WalFile* w, const void* data, size_t amount, sqlite3_int64 offset) {
  g_issued.fetch_add(1, std::memory_order_relaxed);
  return below_methods(w).xWrite(w->below, data, static_cast<int>(amount), offset);
}

int send_run(WalFile* w) {
  if (w->run->empty()) return SQLITE_OK;
  int rc = write_below(w, w->run->data(), w->run->size(), w->run_at);
  w->run->clear();  // sent or failed: either way SQLite hears of it from the call that sent it
  return rc;
}

int wal_close(sqlite3_file* f) {
  WalFile* w = wal(f);
  int rc = send_run(w);
  int closed = below_methods(w).xClose(w->below);
  delete w->run;
  w->run = nullptr;
  return rc != SQLITE_OK ? rc : closed;
}

int wal_read(sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
  WalFile* w = wal(f);
  if (int rc = send_run(w); rc != SQLITE_OK) return rc;
  return below_methods(w).xRead(w->below, out, amount, offset);
}

int wal_write(sqlite3_file* f, const void* data, int amount, sqlite3_int64 offset) {
  WalFile* w = wal(f);
  g_asked.fetch_add(1, std::memory_order_relaxed);
  std::vector<char>& run = *w->run;
  const auto size = static_cast<size_t>(amount);
  if (!run.empty() && (offset != w->run_at + static_cast<sqlite3_int64>(run.size()) || run.size() + size > kMaxRun))
    if (int rc = send_run(w); rc != SQLITE_OK) return rc;
  if (size > kMaxRun) return write_below(w, data, size, offset);
  if (run.empty()) w->run_at = offset;
  try {
    const char* bytes = static_cast<const char*>(data);
    run.insert(run.end(), bytes, bytes + size);
  } catch (const std::bad_alloc&) {
    // No memory to gather in: send what is gathered, then this write, as SQLite would have.
    if (int rc = send_run(w); rc != SQLITE_OK) return rc;
    return write_below(w, data, size, offset);
  }
  return SQLITE_OK;
}

int wal_truncate(sqlite3_file* f, sqlite3_int64 size) {
  WalFile* w = wal(f);
  if (int rc = send_run(w); rc != SQLITE_OK) return rc;
  return below_methods(w).xTruncate(w->below, size);
}

int wal_sync(sqlite3_file* f, int flags) {
  WalFile* w = wal(f);
  if (int rc = send_run(w); rc != SQLITE_OK) return rc;
  return below_methods(w).xSync(w->below, flags);
}

int wal_file_size(sqlite3_file* f, sqlite3_int64* size) {
  WalFile* w = wal(f);
  if (int rc = send_run(w); rc != SQLITE_OK) return rc;
  return below_methods(w).xFileSize(w->below, size);
}

int wal_lock(sqlite3_file* f, int level) { return below_methods(wal(f)).xLock(wal(f)->below, level); }
int wal_unlock(sqlite3_file* f, int level) { return below_methods(wal(f)).xUnlock(wal(f)->below, level); }
int wal_check_reserved_lock(sqlite3_file* f, int* out) {
  return below_methods(wal(f)).xCheckReservedLock(wal(f)->below, out);
}

int wal_file_control(sqlite3_file* f, int op, void* arg) {
  WalFile* w = wal(f);
  if (int rc = send_run(w); rc != SQLITE_OK) return rc;
  return below_methods(w).xFileControl(w->below, op, arg);
}

int wal_sector_size(sqlite3_file* f) { return below_methods(wal(f)).xSectorSize(wal(f)->below); }
int wal_device_characteristics(sqlite3_file* f) { return below_methods(wal(f)).xDeviceCharacteristics(wal(f)->below); }

// Version 1: a WAL file is never memory-mapped and holds no shared memory (that is the database file's, which
// this VFS leaves to the one below).
const sqlite3_io_methods kWalMethods = {1,
                                        wal_close,
                                        wal_read,
                                        wal_write,
                                        wal_truncate,
                                        wal_sync,
                                        wal_file_size,
                                        wal_lock,
                                        wal_unlock,
                                        wal_check_reserved_lock,
                                        wal_file_control,
                                        wal_sector_size,
                                        wal_device_characteristics,
                                        nullptr,
                                        nullptr,
                                        nullptr,
                                        nullptr,
                                        nullptr,
                                        nullptr};

sqlite3_vfs* below(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }

int vfs_open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  sqlite3_vfs* b = below(vfs);
  // Everything but a WAL is the VFS below's own file, opened in place: SQLite calls its methods directly.
  if ((flags & SQLITE_OPEN_WAL) == 0) return b->xOpen(b, name, file, flags, out_flags);
  WalFile* w = wal(file);
  std::memset(w, 0, sizeof(WalFile));
  w->below = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kWalFileSize);
  std::memset(w->below, 0, static_cast<size_t>(b->szOsFile));
  if (int rc = b->xOpen(b, name, w->below, flags, out_flags); rc != SQLITE_OK) {
    if (w->below->pMethods) w->below->pMethods->xClose(w->below);
    return rc;
  }
  w->run = new (std::nothrow) std::vector<char>;
  if (!w->run) {
    w->below->pMethods->xClose(w->below);
    return SQLITE_NOMEM;
  }
  w->base.pMethods = &kWalMethods;
  return SQLITE_OK;
}

// The rest is the VFS below's, asked through it.
int vfs_delete(sqlite3_vfs* v, const char* n, int sync) { return below(v)->xDelete(below(v), n, sync); }
int vfs_access(sqlite3_vfs* v, const char* n, int flags, int* out) {
  return below(v)->xAccess(below(v), n, flags, out);
}
int vfs_full_pathname(sqlite3_vfs* v, const char* n, int size, char* out) {
  return below(v)->xFullPathname(below(v), n, size, out);
}
void* vfs_dl_open(sqlite3_vfs* v, const char* n) { return below(v)->xDlOpen(below(v), n); }
void vfs_dl_error(sqlite3_vfs* v, int size, char* out) { below(v)->xDlError(below(v), size, out); }
void (*vfs_dl_sym(sqlite3_vfs* v, void* h, const char* sym))(void) { return below(v)->xDlSym(below(v), h, sym); }
void vfs_dl_close(sqlite3_vfs* v, void* h) { below(v)->xDlClose(below(v), h); }
int vfs_randomness(sqlite3_vfs* v, int size, char* out) { return below(v)->xRandomness(below(v), size, out); }
int vfs_sleep(sqlite3_vfs* v, int us) { return below(v)->xSleep(below(v), us); }
int vfs_current_time(sqlite3_vfs* v, double* out) { return below(v)->xCurrentTime(below(v), out); }
int vfs_get_last_error(sqlite3_vfs* v, int size, char* out) { return below(v)->xGetLastError(below(v), size, out); }
int vfs_current_time_int64(sqlite3_vfs* v, sqlite3_int64* out) { return below(v)->xCurrentTimeInt64(below(v), out); }

}  // namespace

void register_wal_batching_vfs(const char* name, const char* below_name) {
  // Finding a VFS initialises SQLite, after which its configuration is fixed: configure it first.
  configure_sqlite_once();
  sqlite3_vfs* b = sqlite3_vfs_find(below_name);
  if (!b || sqlite3_vfs_find(name)) return;
  // Kept for the life of the process, as SQLite keeps a registered VFS.
  auto* v = new sqlite3_vfs{};
  v->iVersion = 2;
  v->szOsFile = kWalFileSize + b->szOsFile;
  v->mxPathname = b->mxPathname;
  v->zName = name;
  v->pAppData = b;
  v->xOpen = vfs_open;
  v->xDelete = vfs_delete;
  v->xAccess = vfs_access;
  v->xFullPathname = vfs_full_pathname;
  v->xDlOpen = vfs_dl_open;
  v->xDlError = vfs_dl_error;
  v->xDlSym = vfs_dl_sym;
  v->xDlClose = vfs_dl_close;
  v->xRandomness = vfs_randomness;
  v->xSleep = vfs_sleep;
  v->xCurrentTime = vfs_current_time;
  v->xGetLastError = vfs_get_last_error;
  v->xCurrentTimeInt64 = b->iVersion >= 2 && b->xCurrentTimeInt64 ? vfs_current_time_int64 : nullptr;
  sqlite3_vfs_register(v, 0);
}

const char* wal_batching_vfs() {
  static std::once_flag once;
  std::call_once(once, [] { register_wal_batching_vfs("tayori-wal-batching", nullptr); });
  return "tayori-wal-batching";
}

WalBatchingCounts wal_batching_counts() {
  return {g_asked.load(std::memory_order_relaxed), g_issued.load(std::memory_order_relaxed)};
}

}  // namespace tayori::store::sqlite
