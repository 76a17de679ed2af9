// The stats table (store/stats_store.hpp) as SQL, once for SQLite and PostgreSQL. Its rows are buckets:
// (period, dimension, bucket, name, counter, detail) -> n, sum_milli. The names are written as text so that
// an operator reading the table with sqlite3 or psql reads words.
#include "store/ops/stats.hpp"

#include "store/ops/rows.hpp"

namespace tayori::store {

const char* to_string(StatPeriod p) { return p == StatPeriod::minute ? "minute" : "hour"; }

const char* to_string(StatDimension d) {
  switch (d) {
    case StatDimension::category:
      return "category";
    case StatDimension::channel:
      return "channel";
    case StatDimension::template_name:
      return "template";
  }
  return "unknown";
}

const char* to_string(StatCounter c) {
  switch (c) {
    case StatCounter::accepted:
      return "accepted";
    case StatCounter::sent:
      return "sent";
    case StatCounter::delivered:
      return "delivered";
    case StatCounter::failed:
      return "failed";
    case StatCounter::dead:
      return "dead";
    case StatCounter::suppressed:
      return "suppressed";
    case StatCounter::deferred:
      return "deferred";
    case StatCounter::responded:
      return "responded";
    case StatCounter::opened:
      return "opened";
    case StatCounter::clicked:
      return "clicked";
    case StatCounter::converted:
      return "converted";
    case StatCounter::receipt_delivered:
      return "receipt_delivered";
    case StatCounter::receipt_failed:
      return "receipt_failed";
    case StatCounter::latency:
      return "latency";
  }
  return "unknown";
}

namespace ops {

namespace {

// A counter this build does not know (a newer node's, on a shared database) is left out of the answer.
std::optional<StatCounter> parse_counter(const std::string& s) {
  for (StatCounter c : kAllStatCounters)
    if (s == to_string(c)) return c;
  return std::nullopt;
}

std::vector<StatRow> known_rows(sql::Statement& s, bool with_bucket) {
  std::vector<StatRow> out;
  int col = with_bucket ? 1 : 0;
  while (s.step()) {
    auto counter = parse_counter(s.text(col + 1));
    if (!counter) continue;
    out.push_back({with_bucket ? s.int64(0) : 0, s.text(col), *counter, s.text(col + 2), s.int64(col + 3),
                   s.int64(col + 4)});
  }
  s.reset();
  return out;
}

}  // namespace

void add_stats(sql::Connection& c, const StatTally& tally) {
  for (const auto& [b, sum] : tally)
    c.prepare(
         "INSERT INTO stats(period, dimension, bucket, name, counter, detail, n, sum_milli) "
         "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
         "ON CONFLICT(period, dimension, bucket, name, counter, detail) "
         "DO UPDATE SET n = stats.n + excluded.n, sum_milli = stats.sum_milli + excluded.sum_milli")
        .bind(1, to_string(b.period))
        .bind(2, to_string(b.dimension))
        .bind(3, b.bucket_ms)
        .bind(4, b.key)
        .bind(5, to_string(b.counter))
        .bind(6, b.detail)
        .bind(7, sum.n)
        .bind(8, sum.sum_milli)
        .send();
}

std::vector<StatRow> stat_totals(sql::Connection& c, StatDimension dimension, int64_t from_ms, int64_t to_ms) {
  sql::Statement& s =
      c.prepare(
           "SELECT name, counter, detail, SUM(n), SUM(sum_milli) FROM stats "
           "WHERE period = 'hour' AND dimension = ?1 AND bucket >= ?2 AND bucket < ?3 "
           "GROUP BY name, counter, detail ORDER BY name, counter, detail")
          .bind(1, to_string(dimension))
          .bind(2, from_ms)
          .bind(3, to_ms);
  return known_rows(s, false);
}

std::vector<StatRow> stat_series(sql::Connection& c, StatPeriod period, StatDimension dimension, int64_t from_ms,
                                 int64_t to_ms) {
  sql::Statement& s =
      c.prepare(
           "SELECT bucket, name, counter, detail, n, sum_milli FROM stats "
           "WHERE period = ?1 AND dimension = ?2 AND bucket >= ?3 AND bucket < ?4 "
           "ORDER BY bucket, name, counter, detail")
          .bind(1, to_string(period))
          .bind(2, to_string(dimension))
          .bind(3, from_ms)
          .bind(4, to_ms);
  return known_rows(s, true);
}

std::vector<StatRow> waiting_by_hour(sql::Connection& c, int64_t after_ms) {
  // Integer division on both engines (BIGINT / BIGINT truncates): due_at >= after_ms > 0.
  return all_rows(c.prepare("SELECT (due_at / 3600000) * 3600000 AS hour, COUNT(*) FROM messages "
                            "WHERE state = 'scheduled' AND due_at > ?1 GROUP BY hour ORDER BY hour")
                      .bind(1, after_ms),
                  [](const sql::Statement& s) {
                    StatRow r;
                    r.bucket_ms = s.int64(0);
                    r.n = s.int64(1);
                    return r;
                  });
}

int64_t purge_stat_minutes(sql::Connection& c, int64_t before_ms) {
  c.prepare("DELETE FROM stats WHERE period = 'minute' AND bucket < ?1").bind(1, before_ms).exec();
  return c.changes();
}

}  // namespace ops
}  // namespace tayori::store
