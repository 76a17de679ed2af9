// The SQLite store's schema, as migrations from an empty file to the current tables and indexes. open_sqlite
// (sqlite_store.cpp) runs migrate() on the writer's connection before the store takes any operation.
#include "store/sqlite/sqlite_schema.hpp"

#include <iterator>
#include <stdexcept>

namespace tayori::store::sqlite {

namespace {

// Schema migrations, applied in order; PRAGMA user_version records how far a file has come.
// PostgreSQL repeats each one from 6 on in its own words (postgres/pg_schema.cpp), on purpose: the two
// engines' types, JSON functions and collations differ, the ops of store/ops/ need the same tables on both,
// and a shipped migration is frozen, so no shared text could serve both and stay unedited.
const char* const kMigrations[] = {
    R"sql(
    CREATE TABLE messages (
      id TEXT PRIMARY KEY,
      api_key TEXT NOT NULL,
      payload_hash TEXT NOT NULL,
      payload TEXT NOT NULL,
      state TEXT NOT NULL,
      channel_index INTEGER NOT NULL DEFAULT 0,
      channel TEXT NOT NULL DEFAULT '',
      attempts INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      due_at INTEGER NOT NULL,
      send_at INTEGER,
      expires_at INTEGER,
      last_reason TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    CREATE INDEX messages_due ON messages(state, due_at);
    CREATE INDEX messages_finished ON messages(updated_at) WHERE state IN ('delivered', 'failed', 'cancelled');
    CREATE TABLE events (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      message_id TEXT NOT NULL,
      type TEXT NOT NULL,
      at INTEGER NOT NULL,
      detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_message ON events(message_id, seq);
    )sql",
    // 2: the policy engine's state.
    R"sql(
    ALTER TABLE messages ADD COLUMN recipient_id TEXT NOT NULL DEFAULT '';
    CREATE INDEX messages_recipient ON messages(recipient_id, state);
    DROP INDEX messages_finished;
    CREATE INDEX messages_finished ON messages(updated_at)
      WHERE state IN ('delivered', 'failed', 'cancelled', 'suppressed');
    CREATE TABLE recipients (
      id TEXT PRIMARY KEY,
      timezone TEXT NOT NULL DEFAULT '',
      locale TEXT NOT NULL DEFAULT '',
      contacts TEXT NOT NULL DEFAULT '{}',
      updated_at INTEGER NOT NULL,
      erased_at INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE consent (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      recipient_id TEXT NOT NULL,
      channel TEXT NOT NULL,
      purpose TEXT NOT NULL,
      state TEXT NOT NULL,
      source TEXT NOT NULL,
      evidence TEXT NOT NULL DEFAULT '',
      at INTEGER NOT NULL
    );
    CREATE INDEX consent_recipient ON consent(recipient_id, channel, purpose, seq);
    CREATE TABLE suppressions (
      contact TEXT PRIMARY KEY,
      reason TEXT NOT NULL,
      source TEXT NOT NULL,
      at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE cap_slots (
      recipient_id TEXT NOT NULL,
      message_id TEXT NOT NULL,
      channel TEXT NOT NULL,
      purpose TEXT NOT NULL,
      category TEXT NOT NULL DEFAULT '',
      at INTEGER NOT NULL,
      PRIMARY KEY (recipient_id, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX cap_slots_at ON cap_slots(at);
    )sql",
    // 3: delivery that survives: a retry budget per channel, dead letters listed by state and channel.
    R"sql(
    ALTER TABLE messages ADD COLUMN channel_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN channel_since INTEGER;
    DROP INDEX messages_finished;
    CREATE INDEX messages_finished ON messages(updated_at)
      WHERE state IN ('delivered', 'failed', 'cancelled', 'suppressed', 'dead');
    CREATE INDEX messages_state_channel ON messages(state, channel, id);
    )sql",
    // 4: two-way communication. Events carry their recipient (consent changes belong to no message, and
    // the upstream feed reads events by seq); receipts find a message by the provider's id; follow-ups
    // name the message they follow; provider webhooks are de-duplicated by their event ids; the latest
    // open question per contact point maps a numbered SMS reply; each webhook subscription keeps a cursor.
    R"sql(
    ALTER TABLE events ADD COLUMN recipient_id TEXT NOT NULL DEFAULT '';
    CREATE INDEX events_recipient ON events(recipient_id, seq) WHERE recipient_id != '';
    ALTER TABLE messages ADD COLUMN provider_message_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
    CREATE INDEX messages_provider_message ON messages(provider_message_id) WHERE provider_message_id != '';
    CREATE INDEX messages_parent ON messages(parent_id, state) WHERE parent_id != '';
    CREATE TABLE inbound_seen (
      source TEXT NOT NULL,
      event_id TEXT NOT NULL,
      at INTEGER NOT NULL,
      PRIMARY KEY (source, event_id)
    ) WITHOUT ROWID;
    CREATE TABLE questions (
      contact TEXT NOT NULL,
      channel TEXT NOT NULL,
      message_id TEXT NOT NULL,
      options TEXT NOT NULL,
      at INTEGER NOT NULL,
      PRIMARY KEY (contact, channel)
    ) WITHOUT ROWID;
    CREATE TABLE webhook_cursors (
      subscription TEXT PRIMARY KEY,
      seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    )sql",
    // 5: fewer index pages per state change (the throughput issue measured ~40 page writes per message).
    // An index that holds the state moves an entry at every transition; these hold only the rows their
    // queries look for: the due queue (scheduled), the messages in flight (requeued at start), and the
    // replayable dead letters. A recipient's messages are few, so their index needs no state. Nothing reads
    // events by recipient (the feed reads by seq, erasure by message).
    R"sql(
    DROP INDEX messages_due;
    CREATE INDEX messages_due ON messages(due_at) WHERE state = 'scheduled';
    CREATE INDEX messages_in_flight ON messages(id) WHERE state = 'dispatched';
    DROP INDEX messages_state_channel;
    CREATE INDEX messages_replayable ON messages(state, channel, id) WHERE state IN ('dead', 'failed');
    DROP INDEX messages_recipient;
    CREATE INDEX messages_recipient ON messages(recipient_id);
    DROP INDEX events_recipient;
    )sql",
    // 6: every recipient of a contact point, by index (an inbound STOP or unfollow reaches all who share
    // it), kept in step with recipients.contacts by ops/recipients.cpp; filled from the profiles stored.
    R"sql(
    CREATE TABLE contact_points (
      contact TEXT NOT NULL,
      recipient_id TEXT NOT NULL,
      PRIMARY KEY (contact, recipient_id)
    ) WITHOUT ROWID;
    CREATE INDEX contact_points_recipient ON contact_points(recipient_id);
    INSERT OR IGNORE INTO contact_points(contact, recipient_id)
      SELECT j.value, r.id FROM recipients r, json_each(r.contacts) j
      WHERE r.erased_at IS NULL AND j.type = 'text' AND j.value != '';
    )sql",
    // 7: erasure finds a recipient's events that belong to no message by index (only those: an index of every
    // event by recipient would cost each event's write a second entry). An event whose message is gone is
    // such an event from now on (ops/inbound.cpp); those stored before become one. Then what erasures before
    // this version left behind and SQL alone can find: the open questions of erased messages, and the reply
    // text and contact points in the events of erased messages and erased recipients (ops/erasure.cpp
    // scrubs free text too, which needs the contact points those erasures already cleared).
    R"sql(
    CREATE INDEX IF NOT EXISTS events_unowned ON events(recipient_id) WHERE message_id = '';
    UPDATE events SET message_id = ''
      WHERE message_id != '' AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = events.message_id);
    DELETE FROM questions WHERE message_id IN (SELECT id FROM messages WHERE payload = '{"erased":true}');
    UPDATE events SET detail = json_remove(detail, '$.text', '$.contact')
      WHERE json_valid(detail) AND (json_type(detail, '$.text') IS NOT NULL OR json_type(detail, '$.contact') IS NOT NULL)
        AND (message_id IN (SELECT id FROM messages WHERE payload = '{"erased":true}')
             OR (message_id = '' AND recipient_id IN (SELECT id FROM recipients WHERE erased_at IS NOT NULL)));
    )sql",
    // 8: the finished messages' index names the two states it leaves out instead of the five it holds. SQLite
    // evaluates a partial index's WHERE on every write of a row, and codes an IN list of more than two values
    // with a temporary b-tree it builds and drops each time: every insert and state change of a message paid
    // for that (seen in `perf` as sqlite3BtreeOpen under each UPDATE). Purge (ops/messages.cpp) asks with the
    // same words, so the planner still uses the index.
    R"sql(
    DROP INDEX messages_finished;
    CREATE INDEX messages_finished ON messages(updated_at) WHERE state NOT IN ('scheduled', 'dispatched');
    )sql",
    // 9: the stats' buckets (store/stats_store.hpp): a question over a range reads its hours, never the messages.
    R"sql(
    CREATE TABLE IF NOT EXISTS stats (
      period TEXT NOT NULL,
      dimension TEXT NOT NULL,
      bucket INTEGER NOT NULL,
      name TEXT NOT NULL,
      counter TEXT NOT NULL,
      detail TEXT NOT NULL,
      n INTEGER NOT NULL,
      sum_milli INTEGER NOT NULL,
      PRIMARY KEY (period, dimension, bucket, name, counter, detail)
    ) WITHOUT ROWID;
    )sql",
    // 10: messages in a rowid table, in the order they arrive, with their id in a unique index, where they were
    // a WITHOUT ROWID table ordered by id. An id is the upstream's (often a UUID), so each insert landed on a
    // random leaf of a b-tree of ~600-byte rows, splitting it, and each claim and verdict rewrote a row on a
    // page of its own; in arrival order the inserts append, and the rows a claim takes (the oldest due) share
    // pages. The statements of a message's life timed alone (docs/decisions.md 2026-12-07): with random ids
    // the insert 11.2-12.7 us -> 5.6-6.1, with the bench's ordered ones 4.6 -> 3.6-4.0. Same columns and
    // indexes, but the messages in flight are found by the time of their claim (a claim sets updated_at), which
    // grows, where their id put each claim and verdict on a random leaf of that index too.
    R"sql(
    CREATE TABLE messages_by_arrival (
      id TEXT NOT NULL PRIMARY KEY,
      api_key TEXT NOT NULL,
      payload_hash TEXT NOT NULL,
      payload TEXT NOT NULL,
      state TEXT NOT NULL,
      channel_index INTEGER NOT NULL DEFAULT 0,
      channel TEXT NOT NULL DEFAULT '',
      attempts INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      due_at INTEGER NOT NULL,
      send_at INTEGER,
      expires_at INTEGER,
      last_reason TEXT NOT NULL DEFAULT '',
      recipient_id TEXT NOT NULL DEFAULT '',
      channel_attempts INTEGER NOT NULL DEFAULT 0,
      channel_since INTEGER,
      provider_message_id TEXT NOT NULL DEFAULT '',
      parent_id TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO messages_by_arrival(id, api_key, payload_hash, payload, state, channel_index, channel, attempts,
      created_at, updated_at, due_at, send_at, expires_at, last_reason, recipient_id, channel_attempts,
      channel_since, provider_message_id, parent_id)
    SELECT id, api_key, payload_hash, payload, state, channel_index, channel, attempts, created_at, updated_at,
      due_at, send_at, expires_at, last_reason, recipient_id, channel_attempts, channel_since, provider_message_id,
      parent_id
    FROM messages ORDER BY created_at, id;
    DROP TABLE messages;
    ALTER TABLE messages_by_arrival RENAME TO messages;
    CREATE INDEX messages_due ON messages(due_at) WHERE state = 'scheduled';
    CREATE INDEX messages_in_flight ON messages(updated_at) WHERE state = 'dispatched';
    CREATE INDEX messages_replayable ON messages(state, channel, id) WHERE state IN ('dead', 'failed');
    CREATE INDEX messages_recipient ON messages(recipient_id);
    CREATE INDEX messages_finished ON messages(updated_at) WHERE state NOT IN ('scheduled', 'dispatched');
    CREATE INDEX messages_provider_message ON messages(provider_message_id) WHERE provider_message_id != '';
    CREATE INDEX messages_parent ON messages(parent_id, state) WHERE parent_id != '';
    )sql",
    // 11: a message's events indexed by its number in arrival order (messages.seq, the rowid 10 kept in order),
    // not by its id: each of a message's three events entered events_message at the id, on a random leaf when
    // ids come in no order (a quarter of the writer's samples with random ids, docs/decisions.md 2026-12-07).
    // The rowid needs a name both engines share, which only a new table gives it (an INTEGER PRIMARY KEY column
    // is the rowid); the numbers are carried over. A number freed by a purge may be reused by the next message
    // (no AUTOINCREMENT): purge deletes a message's events with it, in one transaction, so none is left to point
    // at the new one.
    R"sql(
    CREATE TABLE messages_numbered (
      seq INTEGER PRIMARY KEY,
      id TEXT NOT NULL UNIQUE,
      api_key TEXT NOT NULL,
      payload_hash TEXT NOT NULL,
      payload TEXT NOT NULL,
      state TEXT NOT NULL,
      channel_index INTEGER NOT NULL DEFAULT 0,
      channel TEXT NOT NULL DEFAULT '',
      attempts INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      due_at INTEGER NOT NULL,
      send_at INTEGER,
      expires_at INTEGER,
      last_reason TEXT NOT NULL DEFAULT '',
      recipient_id TEXT NOT NULL DEFAULT '',
      channel_attempts INTEGER NOT NULL DEFAULT 0,
      channel_since INTEGER,
      provider_message_id TEXT NOT NULL DEFAULT '',
      parent_id TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO messages_numbered(seq, id, api_key, payload_hash, payload, state, channel_index, channel, attempts,
      created_at, updated_at, due_at, send_at, expires_at, last_reason, recipient_id, channel_attempts,
      channel_since, provider_message_id, parent_id)
    SELECT rowid, id, api_key, payload_hash, payload, state, channel_index, channel, attempts, created_at,
      updated_at, due_at, send_at, expires_at, last_reason, recipient_id, channel_attempts, channel_since,
      provider_message_id, parent_id
    FROM messages ORDER BY rowid;
    DROP TABLE messages;
    ALTER TABLE messages_numbered RENAME TO messages;
    CREATE INDEX messages_due ON messages(due_at) WHERE state = 'scheduled';
    CREATE INDEX messages_in_flight ON messages(updated_at) WHERE state = 'dispatched';
    CREATE INDEX messages_replayable ON messages(state, channel, id) WHERE state IN ('dead', 'failed');
    CREATE INDEX messages_recipient ON messages(recipient_id);
    CREATE INDEX messages_finished ON messages(updated_at) WHERE state NOT IN ('scheduled', 'dispatched');
    CREATE INDEX messages_provider_message ON messages(provider_message_id) WHERE provider_message_id != '';
    CREATE INDEX messages_parent ON messages(parent_id, state) WHERE parent_id != '';
    ALTER TABLE events ADD COLUMN message_seq INTEGER NOT NULL DEFAULT 0;
    UPDATE events SET message_seq = COALESCE((SELECT seq FROM messages WHERE messages.id = events.message_id), 0)
      WHERE message_id != '';
    DROP INDEX events_message;
    CREATE INDEX events_message ON events(message_seq, seq);
    )sql",
    // 12: events numbered by the store's writer (SqliteBackend, next_event_seq()) instead of AUTOINCREMENT, which
    // read and rewrote the events row of sqlite_sequence in every insert: 0.55 us of the writer's time per event,
    // three events per message (docs/decisions.md, 2026-12-07, "the store's writer numbers events"). The feed's readers
    // keep their place by an event's number, so a number must never be given twice, also after purge deleted the events
    // that had the last ones: numbers_given keeps the last number purge saw, the writer starts above it and above every
    // event stored, and the last number AUTOINCREMENT gave is carried over. The table is rebuilt (AUTOINCREMENT is part
    // of its definition), the numbers kept. IF NOT EXISTS and the MAX: a test that puts a store back to an older
    // version runs this again.
    R"sql(
    CREATE TABLE IF NOT EXISTS numbers_given (
      name TEXT PRIMARY KEY,
      last INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO numbers_given(name, last) SELECT 'events', seq FROM sqlite_sequence WHERE name = 'events'
      ON CONFLICT(name) DO UPDATE SET last = MAX(last, excluded.last);
    CREATE TABLE events_numbered (
      seq INTEGER PRIMARY KEY,
      message_id TEXT NOT NULL,
      type TEXT NOT NULL,
      at INTEGER NOT NULL,
      detail TEXT NOT NULL DEFAULT '{}',
      recipient_id TEXT NOT NULL DEFAULT '',
      message_seq INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO events_numbered(seq, message_id, type, at, detail, recipient_id, message_seq)
      SELECT seq, message_id, type, at, detail, recipient_id, message_seq FROM events ORDER BY seq;
    DROP TABLE events;
    ALTER TABLE events_numbered RENAME TO events;
    CREATE INDEX events_message ON events(message_seq, seq);
    CREATE INDEX events_unowned ON events(recipient_id) WHERE message_id = '';
    )sql",
    // 13: no index of contact_points by recipient. A recipient's rows are always those its stored contacts name
    // (6 filled them so, and every write since changes both together), so the contacts replaced say which rows to
    // delete (ops/recipients.cpp). Its entry cost each new recipient a b-tree insert: a tenth of the store writer's
    // time at intake (docs/decisions.md, 2026-12-07, "contact points without an index by recipient").
    R"sql(
    DROP INDEX IF EXISTS contact_points_recipient;
    )sql",
};

}  // namespace

void migrate(SqliteConnection& c, const std::string& path) {
  int64_t current = 0;
  {
    // Finalised before migrating: an open statement would lock the schema against DROP INDEX.
    SqliteStatement version(c.raw(), "PRAGMA user_version");
    version.step();
    current = version.int64(0);
  }
  int64_t target = static_cast<int64_t>(std::size(kMigrations));
  if (current > target)
    throw std::runtime_error("the store \"" + path + "\" has schema version " + std::to_string(current) +
                             ", newer than this gateway's " + std::to_string(target));
  for (int64_t v = current; v < target; ++v) {
    c.exec("BEGIN IMMEDIATE");
    c.exec(kMigrations[v]);
    c.exec(("PRAGMA user_version = " + std::to_string(v + 1)).c_str());
    c.exec("COMMIT");
  }
}

}  // namespace tayori::store::sqlite
