// The Store: everything Tayori must not forget, as one interface made of its aggregates: messages and
// their due queue (message_store.hpp), recipients with consent and cap slots (recipient_store.hpp),
// suppressions (suppression_store.hpp), the upstream feed and webhook cursors (feed_store.hpp), two-way
// writes (inbound_store.hpp) and the stats' counters (stats_store.hpp). The embedded implementation is
// SQLite (sqlite_store.hpp).
//
// Writes are group-committed: callers hand over an operation and a completion; one writer applies many
// operations in one transaction and runs each completion only after that transaction is durable. A
// completion handed a success is the promise behind an HTTP 202; one handed an Error learns what the writer
// knows of the failure: `conflict` when the data broke a rule of the schema (that operation alone failed),
// `unavailable` when the database could not commit (full, I/O, busy, lost, or the store stopping),
// `invalid` or `internal` for data an operation could not handle.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "store/feed_store.hpp"
#include "store/inbound_store.hpp"
#include "store/message_store.hpp"
#include "store/recipient_store.hpp"
#include "store/stats_store.hpp"
#include "store/suppression_store.hpp"

namespace tayori::store {

// What every store read throws when it cannot answer (the database busy, unreadable or gone): the data path's
// Error, thrown rather than returned because every caller's answer is the one its thread's top gives
// (docs/architecture.md §6 "Errors"). `what()` carries the engine's full text for the log; `error.message`
// the short reason an answer names.
struct ReadError : std::runtime_error {
  ReadError(tayori::Error e, const std::string& what) : std::runtime_error(what), error(std::move(e)) {}
  tayori::Error error;
};

// What the store's writes have cost since it opened: the bench divides these by messages to print the
// write amplification (pages and fsyncs per message), and /metrics exports them.
struct WriteStats {
  int64_t commits = 0;        // durable transactions: one fsync each (synchronous=FULL)
  int64_t statements = 0;     // SQL statements the writer ran
  int64_t pages_written = 0;  // database pages written (to the WAL), checkpoints not included
};

// How the decisions' reads were answered since the store opened (decision_state): /metrics exports them, and the
// bench prints the share answered from memory.
struct DecisionReads {
  int64_t from_database = 0;  // read from the tables
  int64_t from_memory = 0;    // the presence filter knew there was nothing to read
};

class Store : public MessageStore,
              public RecipientStore,
              public SuppressionStore,
              public FeedStore,
              public InboundStore,
              public StatsStore {
 public:
  ~Store() override = default;

  // The store answers reads (a liveness probe for /readyz).
  virtual bool healthy() = 0;
  // Why the most recent failed write failed ("database or disk is full", "disk I/O error"; "" before any
  // failure). Set before that write's completion runs, so a completion told !ok can say why.
  virtual std::string last_write_error() = 0;
  virtual WriteStats write_stats() = 0;
  virtual DecisionReads decision_reads() = 0;

  // What a decision about one recipient reads (policy::RecipientState): the current consent, the
  // suppressions among `contacts`, and, when `slots_since_ms` is set, the cap slots since then, held ones
  // included (slots_since). Asked as one question so that an engine can answer it from one moment of the
  // store, and at the cost of one read where reads have a fixed cost each (SQLite: a WAL read lock taken
  // and dropped per statement outside a transaction). Where the store is its database's only writer, a
  // recipient with no consent and no slot, at contact points with no suppression, is answered without a read
  // (store/presence_filter.hpp).
  virtual policy::RecipientState decision_state(const std::string& recipient_id,
                                                const std::vector<std::string>& contacts,
                                                std::optional<int64_t> slots_since_ms) = 0;
};

}  // namespace tayori::store
