// What lets a decision skip the store when there is nothing to read. Most messages go to recipients with no
// consent record and no cap slot, at contact points no one has suppressed (every transactional message to a
// new recipient), yet each decision read the three tables to learn that (SqlStore::decision_state), and that
// read was a fifth of a dispatcher worker. The filter answers "certainly no row" from memory.
//
// A counting Bloom filter over the rows' keys: a consent row counts under its recipient, a cap slot under its
// recipient, a suppression under its `contact` column (clear or erased form). A key whose counters are not all
// above zero has no row; one whose counters are may have one, and the store reads. Every change to a row
// passes through the writer (one process per SQLite file), which reports it here:
// - an insert counts at once, before its commit, so that from the commit on no reader can miss it (a reader
//   that looks before the commit may see either answer, as a read racing a commit may);
// - a delete counts down only after its commit, so that until then the row still counts;
// - a group that does not commit gives back what it counted (rolled_back), and an operation rolled back to its
//   savepoint what it counted since (mark / rolled_back_to_mark).
// The writer must tell it of every rollback: an operation that caught an engine error and carried on inside its
// transaction would leave the rolled-back statement's deletes to count down at the commit (store/ops/ catches
// nothing; docs/decisions.md, 2026-12-07).
// A counter that reaches its maximum stays there: it can no longer count down, so its keys read from then on.
// Answers are never wrong in the dangerous direction ("no row" when there is one); a crowded filter only means
// more reads.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace tayori::store {

class PresenceFilter {
 public:
  // The tables whose rows it counts, each keyed as above.
  enum class Table : uint8_t { consent, suppressions, cap_slots };

  // 2^log2_counters one-byte counters. 16 MiB by default; measured there, a key never stored is a false "maybe"
  // once in 210 with a million keys counted, once in 34 with two million, once in 6 with four. A decision asks
  // about four keys, so a false read is about four times as likely.
  explicit PresenceFilter(int log2_counters = 24);

  // Any thread. False: `table` certainly has no row under `key`.
  bool may_have(Table table, std::string_view key) const;

  // ---- The writer's side: one thread ----
  // A row under `key` was there when the store opened (before the writer's thread starts).
  void loaded(Table table, std::string_view key) { add(probe(table, key), +1); }
  // A row under `key` was inserted (the transaction is open): counts at once.
  void inserted(Table table, std::string_view key);
  // A row under `key` was deleted (the transaction is open): counts down at commit.
  void deleted(Table table, std::string_view key);
  // The group's transaction committed: the deletes count down.
  void committed();
  // The group's transaction was rolled back: its inserts are given back, its deletes forgotten.
  void rolled_back();
  // A savepoint began; rolled_back_to_mark gives back what was counted since.
  void mark();
  void rolled_back_to_mark();

 private:
  struct Probe {
    uint64_t h1, h2;
  };
  static Probe probe(Table table, std::string_view key);
  // Every probe of a key falls in one 64-byte block (a blocked Bloom filter): one cache miss per question
  // instead of one per probe, which on a filter of 16 MiB was most of its cost.
  size_t index(const Probe& p, int i) const {
    return static_cast<size_t>((p.h1 & mask_ & ~(kBlock - 1)) | ((p.h2 >> (6 * i)) & (kBlock - 1)));
  }
  void add(const Probe& p, int delta);

  static constexpr int kProbes = 4;
  static constexpr uint64_t kBlock = 64;  // counters per block: a cache line
  static constexpr uint8_t kStuck = 255;  // saturated: never counts down again
  uint64_t mask_;
  std::unique_ptr<std::atomic<uint8_t>[]> counters_;
  // The open transaction's changes not yet final: inserts (counted) and deletes (not yet counted).
  std::vector<Probe> inserts_, deletes_;
  size_t inserts_at_mark_ = 0, deletes_at_mark_ = 0;
};

}  // namespace tayori::store
