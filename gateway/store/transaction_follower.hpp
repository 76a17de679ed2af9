// What keeps a copy in memory in step with the store writer's transactions (store/presence_filter.hpp,
// store/profile_cache.hpp): told, on the writer's thread, where each operation's savepoint begins, when one is
// rolled back to, and how each group's transaction ended. What it learnt of a row in between (SQLite's preupdate
// hook) belongs to the open transaction until then.
#pragma once

namespace tayori::store {

class TransactionFollower {
 public:
  virtual ~TransactionFollower() = default;
  // A savepoint began; rolled_back_to_mark forgets what was learnt since.
  virtual void mark() = 0;
  virtual void rolled_back_to_mark() = 0;
  // The transaction committed: what it wrote is now what every reader sees.
  virtual void committed() = 0;
  // The transaction was rolled back: nothing it wrote happened.
  virtual void rolled_back() = 0;
};

}  // namespace tayori::store
