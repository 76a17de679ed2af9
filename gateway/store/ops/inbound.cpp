// Two-way as SQL, once for SQLite and PostgreSQL: everything one provider report (a reply, a tap, a
// receipt, an unfollow) or answer changes, as core/inbound.cpp decided it, written in one savepoint of the writer's
// group (de-duplication, consent, suppressions, events, follow-ups cancelled or scheduled), and the open
// questions a numbered SMS reply answers. SqlStore (store/sql_store.cpp, store/group_commit.cpp) runs these.
#include "store/ops/inbound.hpp"

#include <nlohmann/json.hpp>

#include "common/json.hpp"
#include "core/message.hpp"
#include "crypto/crypto.hpp"
#include "store/ops/erasure.hpp"
#include "store/ops/messages.hpp"
#include "store/ops/recipients.hpp"
#include "store/ops/rows.hpp"
#include "store/ops/suppressions.hpp"

namespace tayori::store::ops {

namespace {

bool message_exists(sql::Connection& c, const std::string& id) {
  return any_row(c.prepare("SELECT 1 FROM messages WHERE id = ?1").bind(1, id));
}

using InboundWrites = InboundStore::InboundWrites;

void cancel_follow_ups(sql::Connection& c, WriteContext& w, const std::string& parent_id, int64_t now_ms) {
  std::vector<std::string> pending = all_rows(
      c.prepare(kSelectPendingFollowUps).bind(1, parent_id),
      first_text);
  for (const auto& id : pending) {
    cancel_scheduled(c, w, id, R"({"reason":"answered"})", now_ms);
    insert_event(c, parent_id,
                 {"follow_up_cancelled", nlohmann::json{{"follow_up_id", id}, {"reason", "answered"}}.dump()}, now_ms);
  }
}

void schedule_follow_up(sql::Connection& c, WriteContext& w, const InboundStore::FollowUp& f, int64_t now_ms) {
  NewMessage m = f.message;
  std::string base = m.id;
  for (int n = 2; n < 100; ++n) {
    if (!message_exists(c, m.id)) break;
    m.id = base + "~" + std::to_string(n);
  }
  if (m.id != base) {
    // The payload names the message: keep it the stored id (the dispatcher reads it from there).
    auto payload = parse_json_or_discarded(m.payload);
    if (!payload.is_object()) return;
    payload["id"] = m.id;
    m.payload = core::canonical_json(payload);
    m.payload_hash = crypto::sha256_hex(m.payload);
  }
  if (accept_one(c, w, m, now_ms).status != AcceptStatus::accepted) return;
  c.prepare("UPDATE messages SET parent_id = ?2 WHERE id = ?1").bind(1, m.id).bind(2, f.parent_id).exec();
  nlohmann::json detail = {{"option", f.option}, {"follow_up_id", m.id}};
  // The payload's send_at is the instant core/inbound.cpp formatted (now + after).
  auto payload = parse_json_or_discarded(m.payload);
  if (payload.is_object() && payload.contains("send_at")) detail["send_at"] = payload["send_at"];
  insert_event(c, f.parent_id, {"follow_up_scheduled", detail.dump()}, now_ms);
}

}  // namespace

bool apply_inbound_one(sql::Connection& c, WriteContext& w, const InboundWrites& writes, int64_t now_ms) {
  if (!writes.seen_report_id.empty()) {
    c.prepare("INSERT INTO inbound_seen(source, event_id, at) VALUES(?1, ?2, ?3) ON CONFLICT DO NOTHING")
        .bind(1, writes.seen_source)
        .bind(2, writes.seen_report_id)
        .bind(3, now_ms)
        .exec();
    if (c.changes() == 0) return false;
  }
  w.count(writes.counts);
  for (const auto& [recipient_id, r] : writes.consent)
    insert_consent(c, recipient_id, r, r.at_ms != 0 ? r.at_ms : now_ms);
  for (const auto& sup : writes.suppress) put_suppression(c, sup, sup.at_ms != 0 ? sup.at_ms : now_ms);
  for (const auto& sup : writes.unsuppress) remove_suppression_from(c, sup.contact, sup.source);
  for (const auto& e : writes.events) {
    if (!e.message_id.empty() && message_exists(c, e.message_id)) {
      insert_events(c, e.message_id, 0, e.recipient_id, {e.event}, now_ms);
      continue;
    }
    // On the recipient alone, also when its message is gone (purged meanwhile): erasure finds the
    // recipient's message-less events by recipient (index events_unowned), never by a message it lost.
    insert_events(c, "", 0, e.recipient_id, {e.event}, now_ms);
  }
  if (!writes.cancel_follow_ups_of.empty()) cancel_follow_ups(c, w, writes.cancel_follow_ups_of, now_ms);
  for (const auto& f : writes.follow_ups) schedule_follow_up(c, w, f, now_ms);
  return true;
}

std::optional<InboundStore::Question> open_question(sql::Connection& c, const std::string& contact,
                                                    const std::string& channel) {
  return first_row(c.prepare("SELECT message_id, options, at FROM questions WHERE contact = ?1 AND channel = ?2")
                       .bind(1, contact)
                       .bind(2, channel),
                   [](const sql::Statement& s) {
                     return InboundStore::Question{s.text(0), s.text(1), s.int64(2)};
                   });
}

void put_question(sql::Connection& c, const std::string& contact, const std::string& channel,
                  const InboundStore::Question& q) {
  // Not for a message whose recipient was erased while it was in flight: the row would name the contact
  // point again.
  if (is_erased_message(c, q.message_id)) return;
  c.prepare(
       "INSERT INTO questions(contact, channel, message_id, options, at) VALUES(?1, ?2, ?3, ?4, ?5) "
       "ON CONFLICT(contact, channel) DO UPDATE SET message_id = ?3, options = ?4, at = ?5")
      .bind(1, contact)
      .bind(2, channel)
      .bind(3, q.message_id)
      .bind(4, q.options_json)
      .bind(5, q.at_ms)
      .exec();
}

}  // namespace tayori::store::ops
