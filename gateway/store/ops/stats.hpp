// The stats (store/stats_store.hpp) as SQL, written once for every engine: one group's counts added to their
// buckets, and the reads behind GET /v1/stats.
#pragma once

#include <cstdint>
#include <vector>

#include "store/ops/write_context.hpp"
#include "store/sql.hpp"
#include "store/stats_store.hpp"

namespace tayori::store::ops {

// Adds the group's counts (WriteContext::counts) to the stats table, in key order: nodes sharing a database
// then lock the rows they both touch in one order and never deadlock on them.
void add_stats(sql::Connection& c, const StatTally& tally);
std::vector<StatRow> stat_totals(sql::Connection& c, StatDimension dimension, int64_t from_ms, int64_t to_ms);
std::vector<StatRow> stat_series(sql::Connection& c, StatPeriod period, StatDimension dimension, int64_t from_ms,
                                 int64_t to_ms);
std::vector<StatRow> waiting_by_hour(sql::Connection& c, int64_t after_ms);
int64_t purge_stat_minutes(sql::Connection& c, int64_t before_ms);

}  // namespace tayori::store::ops
