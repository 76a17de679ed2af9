// The Store on PostgreSQL, for several gateway nodes sharing one database (docs/operator-guide.md §16).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "store/store.hpp"

namespace tayori::store {

struct PostgresOptions {
  std::string uri;               // libpq connection URI; a secret (the password may be in it)
  int pool_size = 8;             // connections: one writer, the rest readers, claims and cap decisions
  int64_t statement_timeout_ms = 5'000;
  int64_t lease_ms = 30'000;     // a claim's life without renewal
  std::string node_id;           // this node's name in claims; unique among live nodes
  int max_group = 1024;          // operations per group commit at most
};

// Connects, migrates (under an advisory lock) and registers the node. Throws std::runtime_error when the
// database cannot be reached, its schema is newer than this build's, or another live node uses node_id.
std::unique_ptr<Store> open_postgres(const PostgresOptions& options);

}  // namespace tayori::store
