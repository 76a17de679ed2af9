// The upstream feed as SQL, once for SQLite and PostgreSQL: every timeline event in seq order for
// GET /v1/events and the webhooks (events/), and the cursor each webhook subscription has delivered up to.
// SqlStore (store/sql_store.cpp) runs the cursor writes in its group commit and the reads on its reader pool.
#include "store/ops/feed.hpp"

#include "store/ops/messages.hpp"
#include "store/ops/rows.hpp"

namespace tayori::store::ops {

std::vector<EventRecord> events_after(sql::Connection& c, int64_t after_seq, int64_t up_to_seq, int limit,
                                      const std::string& api_key) {
  // One key's events: each event's message looked up by its primary key, so the cost is the events scanned,
  // which the range's upper bound (a range of the primary key, not a filter) caps.
  return all_rows(c.prepare("SELECT seq, message_id, type, at, detail, recipient_id FROM events e WHERE seq > ?1 "
                            "AND seq <= ?4 AND (?3 = '' OR EXISTS (SELECT 1 FROM messages m WHERE m.id = e.message_id "
                            "AND m.api_key = ?3)) ORDER BY seq LIMIT ?2")
                      .bind(1, after_seq)
                      .bind(2, static_cast<int64_t>(limit))
                      .bind(3, api_key)
                      .bind(4, up_to_seq),
                  read_event);
}

int64_t last_event_seq(sql::Connection& c) {
  sql::Statement& s = c.prepare("SELECT COALESCE(MAX(seq), 0) FROM events");
  int64_t seq = s.step() ? s.int64(0) : 0;
  s.reset();
  return seq;
}

std::optional<int64_t> webhook_cursor(sql::Connection& c, const std::string& name) {
  return first_row(c.prepare("SELECT seq FROM webhook_cursors WHERE subscription = ?1").bind(1, name),
                   [](const sql::Statement& s) { return s.int64(0); });
}

void set_webhook_cursor(sql::Connection& c, const std::string& name, int64_t seq) {
  // The larger: a cursor never moves back (a late completion of an older send must not rewind it). The
  // stored value is named by its table, which both engines read as the row before the insert.
  c.prepare(
       "INSERT INTO webhook_cursors(subscription, seq) VALUES(?1, ?2) ON CONFLICT(subscription) DO UPDATE SET "
       "seq = CASE WHEN webhook_cursors.seq > ?2 THEN webhook_cursors.seq ELSE ?2 END")
      .bind(1, name)
      .bind(2, seq)
      .exec();
}

}  // namespace tayori::store::ops
