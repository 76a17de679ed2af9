// What one group commit carries besides its connection: the writer hands it to every operation of the
// group (store/sql_store.hpp) and reads it back once the group has committed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "store/message_store.hpp"
#include "store/stats_store.hpp"

namespace tayori::store {

using StateCounts = std::array<int64_t, std::size(kAllStates)>;

// The node that holds a claim made in a write, and for how long, where several nodes share the store.
struct Claimant {
  std::string node_id;
  int64_t lease_ms = 0;
};

// One group's stat counts, added up per bucket: the writer adds each bucket to the table once, however many
// messages of the group it counts.
struct StatBucket {
  StatPeriod period;
  int64_t bucket_ms;
  StatDimension dimension;
  std::string key;
  StatCounter counter;
  std::string detail;
  auto tie() const { return std::tie(period, bucket_ms, dimension, key, counter, detail); }
  bool operator<(const StatBucket& o) const { return tie() < o.tie(); }
};
struct StatSum {
  int64_t n = 0;
  int64_t sum_milli = 0;
};
using StatTally = std::map<StatBucket, StatSum>;

struct WriteContext {
  // Set where nodes share the store: a message stored already claimed (NewMessage::claim) is stamped with
  // this node and its lease, as a claim of the due queue is. nullptr on one node.
  const Claimant* claimant = nullptr;

  // How many messages the writer's operations moved into (+) and out of (-) each state since the group
  // began: the store keeps its per-state counts from these once the group commits, instead of counting
  // rows (count_by_state is read by every /metrics scrape, and the queue may hold millions).
  StateCounts moved{};
  void move(std::optional<State> from, std::optional<State> to, int64_t n = 1) {
    if (from) moved[static_cast<size_t>(*from)] -= n;
    if (to) moved[static_cast<size_t>(*to)] += n;
  }

  // The stat counts of the writes that took effect, added before the group commits (ops/stats.hpp).
  StatTally counts;
  void count(const std::vector<StatCount>& add) {
    for (const StatCount& s : add) {
      StatSum& sum = counts[{s.period, s.bucket_ms, s.dimension, s.key, s.counter, s.detail}];
      sum.n += s.n;
      sum.sum_milli += s.sum_milli;
    }
  }
};

}  // namespace tayori::store
