// The store's schema on PostgreSQL: versioned migrations, run at start by every node.
//
// Migration 1 is where SQLite's migrations 1–5 end (same tables, columns, indexes and names; BIGINT for
// times and counters, identity columns for events.seq and consent.seq, JSON kept as TEXT, every TEXT
// COLLATE "C" so that comparisons and ORDER BY are byte order as in SQLite), plus what several nodes need:
// the claim's holder and lease on `messages`, and the `nodes` table.
//
// `schema_version` has a row per migration applied. migrate() runs in one transaction under a
// transaction-level advisory lock, so nodes starting together apply each migration once: the others wait
// for the lock, then find nothing to do.
#pragma once

#include <cstdint>

namespace tayori::store::postgres {

class PgConnection;

// pg_advisory_xact_lock's key while migrating: "tayori" in ASCII, then 0x0001.
inline constexpr int64_t kMigrationLockKey = 0x7461796f72690001;

// The version this build brings a database to.
int latest_schema_version();

// The database's version, 0 when it has none yet (no schema_version table).
int schema_version(PgConnection& connection);

// Brings the database to latest_schema_version(); returns the version it found. Throws std::runtime_error
// naming both versions when the database is newer than this build, and sql::Error when a migration fails
// (nothing of it stays). Must be called outside a transaction.
int migrate(PgConnection& connection);

}  // namespace tayori::store::postgres
