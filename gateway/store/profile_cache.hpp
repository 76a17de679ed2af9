// The recipient profiles written or read most recently, so that a decision completes its message's recipient
// (core::Clearance::complete_recipient) without a read. That read was a fifth of a dispatcher worker once the
// presence filter (presence_filter.hpp) had taken the others away: each one a read transaction on a reader
// connection whose page cache SQLite empties whenever the WAL has moved.
//
// Kept where this process is the database's only writer (SQLite). The writer reports every row of the
// `recipients` table it writes (SQLite's preupdate hook, whichever operation wrote it: a message's merge, a PUT,
// an erasure) and the cache takes it once the transaction has committed, before any completion of that group
// runs, so whoever learns of a write (a PUT's 200, a handed-over message) finds it here. A reader that missed
// reads the table and offers what it read; the offer is taken only if no write to that shard was taken since
// the reader looked, so a read from before a commit never replaces what the commit wrote.
//
// Bounded: each shard forgets its oldest entry when full.
#pragma once

#include <array>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "store/recipient_store.hpp"
#include "store/transaction_follower.hpp"

namespace tayori::store {

class ProfileCache final : public TransactionFollower {
 public:
  // At most about `capacity` recipients (a profile is a few hundred bytes).
  explicit ProfileCache(size_t capacity = 65'536);

  struct Lookup {
    bool hit = false;
    std::optional<RecipientProfile> profile;  // on a hit: the profile, or none stored
    uint64_t generation = 0;                  // on a miss: what to hand offer()
  };
  // Any thread.
  Lookup find(const std::string& id) const;
  // Any thread: what a read after find() missed found in the table (nullopt: no profile).
  void offer(const std::string& id, const std::optional<RecipientProfile>& profile, uint64_t generation);

  // The writer's thread: the row of `id` as the open transaction leaves it (nullopt: deleted).
  void written(std::string id, std::optional<RecipientProfile> profile);
  void mark() override { staged_at_mark_ = staged_.size(); }
  void rolled_back_to_mark() override { staged_.resize(staged_at_mark_); }
  void committed() override;
  void rolled_back() override;

 private:
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::optional<RecipientProfile>> entries;
    std::deque<std::string> order;  // keys in the order they came in: the oldest goes first
    uint64_t generation = 0;        // writes taken
  };
  Shard& shard(const std::string& id) const;
  // With the shard locked.
  void put(Shard& s, const std::string& id, const std::optional<RecipientProfile>& profile);

  size_t per_shard_;
  mutable std::array<Shard, 64> shards_;
  std::vector<std::pair<std::string, std::optional<RecipientProfile>>> staged_;
  size_t staged_at_mark_ = 0;
};

}  // namespace tayori::store
