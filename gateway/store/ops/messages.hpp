// The messages and their due queue (store/message_store.hpp) as SQL, written once for every engine. The
// writes run inside the store writer's group (a savepoint each) and record the state moves they make in
// the WriteContext; the reads run on a read connection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/message_store.hpp"
#include "store/ops/write_context.hpp"
#include "store/sql.hpp"

namespace tayori::store::ops {

// The columns read_message reads, in its order (for a RETURNING clause), and as "SELECT ... FROM messages":
// add the WHERE clause.
extern const char* const kMessageColumns;
extern const char* const kSelectMessage;
MessageRecord read_message(const sql::Statement& s);

// A partial index serves a query only when the query's own WHERE implies the index's: `col = ?1` does not
// imply `col != ''` (the parameter may be empty), so without the second term SQLite and a generic
// PostgreSQL plan scan the whole table. The queries on such columns repeat the index's condition; the
// tests read their plans from these texts.
// find_by_provider_id, by messages_provider_message (WHERE provider_message_id != '').
extern const char* const kSelectByProviderId;
// The scheduled follow-ups of a message, by messages_parent (WHERE parent_id != '').
extern const char* const kSelectPendingFollowUps;

// ---- Writes ----
AcceptResult accept_one(sql::Connection& c, WriteContext& w, const NewMessage& m, int64_t now_ms);
// The claim of a message accepted with NewMessage::claim: the row accept_one inserted (numbered `seq`), as
// read_message would read it back.
MessageRecord claimed_record(const NewMessage& m, int64_t seq, int64_t now_ms);
CancelResult cancel(sql::Connection& c, WriteContext& w, const std::string& id, int64_t now_ms);
// Cancels a message known to be scheduled, with a `cancelled` event of this detail.
void cancel_scheduled(sql::Connection& c, WriteContext& w, const std::string& id, const char* detail_json,
                      int64_t now_ms);
void apply(sql::Connection& c, WriteContext& w, const Transition& t, int64_t now_ms);
// Moves up to `limit` due scheduled messages to dispatched and returns them as claimed.
std::vector<MessageRecord> claim(sql::Connection& c, WriteContext& w, int64_t now_ms, int limit);
// The ids replayed.
std::vector<std::string> replay(sql::Connection& c, WriteContext& w, const MessageFilter& f, int64_t now_ms,
                                const std::string& by);
// Messages left dispatched go back to scheduled, due now; how many.
int requeue(sql::Connection& c, WriteContext& w, int64_t now_ms);
int64_t purge(sql::Connection& c, WriteContext& w, int64_t before_ms);

// The events of one message, in order. Their recipient and number are the message's: `recipient_id` and
// `message_seq` (MessageRecord::seq) when the caller knows them, else read in the same transaction, so every
// writer of events gets them without passing them.
void insert_events(sql::Connection& c, const std::string& message_id, int64_t message_seq,
                   const std::string& recipient_id, const std::vector<NewTimelineEvent>& events, int64_t now_ms);
void insert_event(sql::Connection& c, const std::string& message_id, const NewTimelineEvent& e, int64_t now_ms);

// ---- Reads ----
std::vector<MessageRecord> list(sql::Connection& c, const MessageFilter& f);
std::optional<MessageRecord> find(sql::Connection& c, const std::string& id);
std::optional<MessageRecord> find_by_provider_id(sql::Connection& c, const std::string& provider_message_id);
std::vector<TimelineEvent> events(sql::Connection& c, const std::string& id);
// A recipient's messages' delivered and clicked events in a time range (MessageStore::touches): the
// recipient's messages by messages_recipient, then each one's events by events_message.
std::vector<TimelineEvent> touches(sql::Connection& c, const std::string& recipient_id, int64_t since_ms,
                                   int64_t until_ms);
std::optional<int64_t> next_due(sql::Connection& c);
// Counts the rows: the store does it once, when it opens, and keeps the counts from there.
StateCounts count_by_state(sql::Connection& c);

// An events row read as "seq, message_id, type, at, detail, recipient_id".
TimelineEvent read_event(const sql::Statement& s);

}  // namespace tayori::store::ops
