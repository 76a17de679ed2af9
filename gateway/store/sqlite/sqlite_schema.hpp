// The SQLite store's schema: its migrations, and how a file is brought up to date.
#pragma once

#include <string>

#include "store/sqlite/sqlite_connection.hpp"

namespace tayori::store::sqlite {

// Applies the migrations the file has not had yet, each in its own transaction; PRAGMA user_version records
// how far a file has come. Throws std::runtime_error naming `path` for a file newer than this gateway.
void migrate(SqliteConnection& c, const std::string& path);

}  // namespace tayori::store::sqlite
