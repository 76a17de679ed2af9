// Recipients as SQL, once for SQLite and PostgreSQL: profiles (PUT, the merge of each accepted message's
// recipient object, erasure, lookup by contact point), the append-only consent history, and the cap slots
// the policy counts. SqlStore (store/sql_store.cpp, store/group_commit.cpp) runs the writes in its group commit and the
// reads on its reader pool; accept (ops/messages.cpp) and inbound writes (ops/inbound.cpp) call in here too.
#include "store/ops/recipients.hpp"

#include <algorithm>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/json.hpp"
#include "store/ops/erasure.hpp"
#include "store/ops/messages.hpp"
#include "store/ops/rows.hpp"

namespace tayori::store::ops {

namespace {

// The contact points the index holds: string values only (push tokens are lists, never reported back as one
// contact). Erasure scrubs more (ops::contact_points_in, push tokens included).
std::vector<std::string> indexed_contact_points(const nlohmann::json& contacts) {
  std::vector<std::string> points;
  if (!contacts.is_object()) return points;
  for (const auto& [kind, value] : contacts.items())
    if (value.is_string() && !value.get_ref<const std::string&>().empty()) points.push_back(value.get<std::string>());
  return points;
}

policy::Purpose parse_purpose(const std::string& s) {
  return s == "marketing" ? policy::Purpose::marketing : policy::Purpose::transactional;
}

policy::ConsentRecord consent_row(const sql::Statement& s) {
  policy::ConsentRecord r;
  r.channel = s.text(0);
  r.purpose = parse_purpose(s.text(1));
  r.state = policy::parse_consent_state(s.text(2)).value_or(policy::ConsentState::opted_out);
  r.source = s.text(3);
  r.evidence = s.text(4);
  r.at_ms = s.int64(5);
  return r;
}

}  // namespace

std::optional<RecipientProfile> recipient(sql::Connection& c, const std::string& id) {
  return first_row(
      c.prepare("SELECT id, timezone, locale, contacts, updated_at, erased_at FROM recipients WHERE id = ?1")
          .bind(1, id),
      [](const sql::Statement& s) {
        return RecipientProfile{s.text(0), s.text(1), s.text(2), s.text(3), s.int64(4), !s.is_null(5)};
      });
}

namespace {

// Keeps table contact_points in step with the recipient's contacts: one row per contact point, so that a
// provider report (STOP, unfollow) finds every recipient of its contact point by index. The rows of a recipient
// are always those its stored contacts name (indexed_contact_points), so the contacts replaced say which rows to
// delete: no index by recipient to find them (SQLite migration 13, PostgreSQL 7: its entry cost every new
// recipient a b-tree insert, a tenth of the store writer's time at intake).
void insert_contact_point(sql::Connection& c, const std::string& contact, const std::string& id) {
  c.prepare("INSERT INTO contact_points(contact, recipient_id) VALUES(?1, ?2) ON CONFLICT DO NOTHING")
      .bind(1, contact)
      .bind(2, id)
      .send();
}

void delete_contact_point(sql::Connection& c, const std::string& contact, const std::string& id) {
  c.prepare("DELETE FROM contact_points WHERE contact = ?1 AND recipient_id = ?2").bind(1, contact).bind(2, id).send();
}

// From the rows of contacts `before` to those of `after`; a new recipient's (merge_recipient) are inserted
// with nothing before them.
void replace_contact_points(sql::Connection& c, const std::string& id, const nlohmann::json& before,
                            const nlohmann::json& after) {
  const std::vector<std::string> old_points = indexed_contact_points(before);
  const std::vector<std::string> new_points = indexed_contact_points(after);
  auto in = [](const std::vector<std::string>& points, const std::string& p) {
    return std::find(points.begin(), points.end(), p) != points.end();
  };
  for (const std::string& contact : old_points)
    if (!in(new_points, contact)) delete_contact_point(c, contact, id);
  for (const std::string& contact : new_points)
    if (!in(old_points, contact)) insert_contact_point(c, contact, id);
}

void upsert_recipient(sql::Connection& c, const std::string& id, const std::string& timezone,
                      const std::string& locale, const std::string& contacts_json, int64_t now_ms) {
  c.prepare(
       "INSERT INTO recipients(id, timezone, locale, contacts, updated_at, erased_at) VALUES(?1, ?2, ?3, ?4, ?5, NULL) "
       "ON CONFLICT(id) DO UPDATE SET timezone = ?2, locale = ?3, contacts = ?4, updated_at = ?5, erased_at = NULL")
      .bind(1, id)
      .bind(2, timezone)
      .bind(3, locale)
      .bind(4, contacts_json)
      .bind(5, now_ms)
      .send();
}

}  // namespace

void put_recipient(sql::Connection& c, const std::string& id, const std::string& timezone, const std::string& locale,
                   const std::string& contacts_json, int64_t now_ms) {
  const std::optional<std::string> before =
      first_row(c.prepare("SELECT contacts FROM recipients WHERE id = ?1").bind(1, id), first_text);
  upsert_recipient(c, id, timezone, locale, contacts_json, now_ms);
  replace_contact_points(c, id, before ? parse_json_or_discarded(*before) : nlohmann::json::object(),
                         parse_json_or_discarded(contacts_json));
}

RecipientProfile merge_recipient(sql::Connection& c, const std::string& id, const RecipientUpdate& update,
                                 int64_t now_ms) {
  std::string tz, locale, stored_contacts;
  int64_t updated_at = 0;
  bool current = false;  // stored and not erased
  bool stored = false;   // a row exists (erased or not)
  sql::Statement& s = c.prepare(
                           "SELECT timezone, locale, contacts, CASE WHEN erased_at IS NULL THEN 1 ELSE 0 END, "
                           "updated_at FROM recipients WHERE id = ?1")
                          .bind(1, id);
  if (s.step()) {
    stored = true;
    tz = s.text(0);
    locale = s.text(1);
    stored_contacts = s.text(2);
    current = s.int64(3) != 0;
    updated_at = s.int64(4);
  }
  s.reset();
  const std::string stored_tz = tz, stored_locale = locale;
  if (update.timezone) tz = *update.timezone;
  if (update.locale) locale = *update.locale;
  if (!stored) {  // a new recipient: the message's contacts are the profile's
    std::string contacts = update.contacts_json.empty() ? "{}" : update.contacts_json;
    upsert_recipient(c, id, tz, locale, contacts, now_ms);
    for (const std::string& contact : update.contact_points) insert_contact_point(c, contact, id);
    return {id, std::move(tz), std::move(locale), std::move(contacts), now_ms, false};
  }
  // Usually the message repeats the contacts stored (both canonical JSON): nothing to merge.
  std::optional<nlohmann::json> merged;
  if (!update.contacts_json.empty() && update.contacts_json != stored_contacts) {
    merged = parse_json_or_discarded(stored_contacts);
    if (!merged->is_object()) merged = nlohmann::json::object();
    const nlohmann::json incoming = parse_json_or_discarded(update.contacts_json);
    if (incoming.is_object())
      for (const auto& [kind, value] : incoming.items()) (*merged)[kind] = value;
  }
  const std::string merged_contacts = merged ? dump_json(*merged) : stored_contacts;
  const bool contacts_changed = merged_contacts != stored_contacts;
  // A recipient who comes back with what is stored already (the usual case) costs no write.
  if (current && tz == stored_tz && locale == stored_locale && !contacts_changed)
    return {id, std::move(tz), std::move(locale), merged_contacts, updated_at, false};
  upsert_recipient(c, id, tz, locale, merged_contacts, now_ms);
  // The index follows the contacts: rewritten when they change, and for an erased recipient who comes back
  // (the erasure emptied it); a new time zone or locale leaves it as it is.
  if (contacts_changed || !current) {
    const nlohmann::json before = parse_json_or_discarded(stored_contacts);
    replace_contact_points(c, id, before, merged ? *merged : before);
  }
  return {id, std::move(tz), std::move(locale), merged_contacts, now_ms, false};
}

bool erase_recipient(sql::Connection& c, WriteContext& w, const std::string& id, int64_t now_ms) {
  if (!any_row(c.prepare("SELECT 1 FROM recipients WHERE id = ?1 UNION SELECT 1 FROM messages WHERE recipient_id = ?1")
                   .bind(1, id)))
    return false;
  // Read before the profile and the payloads that name them are cleared.
  const std::vector<std::string> contacts = contact_points_of(c, id);
  c.prepare(
       "UPDATE recipients SET timezone = '', locale = '', contacts = '{}', updated_at = ?2, erased_at = ?2 "
       "WHERE id = ?1")
      .bind(1, id)
      .bind(2, now_ms)
      .exec();
  for (const std::string& contact : contacts) delete_contact_point(c, contact, id);
  std::vector<std::string> pending = all_rows(
      c.prepare("SELECT id FROM messages WHERE recipient_id = ?1 AND state = 'scheduled'").bind(1, id), first_text);
  for (const auto& m : pending) insert_event(c, m, {"cancelled", R"({"reason":"recipient_erased"})"}, now_ms);
  w.move(State::scheduled, State::cancelled, static_cast<int64_t>(pending.size()));
  forget(c, id, contacts);
  // The content is personal data; the id, states and timeline stay so the sender can still ask why.
  c.prepare(
       "UPDATE messages SET payload = ?3, state = CASE state WHEN 'scheduled' THEN "
       "'cancelled' ELSE state END, updated_at = CASE state WHEN 'scheduled' THEN ?2 ELSE updated_at END "
       "WHERE recipient_id = ?1")
      .bind(1, id)
      .bind(2, now_ms)
      .bind(3, kErasedPayload)
      .exec();
  // Consent evidence may quote the recipient (a keyword, a form's text); the records themselves stay as
  // proof of what consent was given when (GDPR Art. 7(1)).
  c.prepare("UPDATE consent SET evidence = '' WHERE recipient_id = ?1").bind(1, id).exec();
  return true;
}

std::vector<std::string> recipients_by_contact(sql::Connection& c, const std::string& contact) {
  return all_rows(c.prepare("SELECT r.id FROM contact_points p JOIN recipients r ON r.id = p.recipient_id "
                            "WHERE p.contact = ?1 AND r.erased_at IS NULL ORDER BY r.updated_at DESC, r.id")
                      .bind(1, contact),
                  first_text);
}

void insert_consent(sql::Connection& c, const std::string& recipient_id, const policy::ConsentRecord& r,
                    int64_t at_ms) {
  c.prepare(
       "INSERT INTO consent(recipient_id, channel, purpose, state, source, evidence, at) "
       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)")
      .bind(1, recipient_id)
      .bind(2, r.channel)
      .bind(3, policy::to_string(r.purpose))
      .bind(4, policy::to_string(r.state))
      .bind(5, r.source)
      .bind(6, r.evidence)
      .bind(7, at_ms)
      .exec();
}

std::vector<policy::ConsentRecord> consent_history(sql::Connection& c, const std::string& recipient_id) {
  return all_rows(
      c.prepare(
           "SELECT channel, purpose, state, source, evidence, at FROM consent WHERE recipient_id = ?1 ORDER BY seq")
          .bind(1, recipient_id),
      consent_row);
}

std::vector<policy::ConsentRecord> consent_current(sql::Connection& c, const std::string& recipient_id) {
  std::vector<policy::ConsentRecord> out;
  // In index order (recipient, channel, purpose, seq): the last row of each channel x purpose is current.
  sql::Statement& s = c.prepare(
                           "SELECT channel, purpose, state, source, evidence, at FROM consent WHERE recipient_id = ?1 "
                           "ORDER BY channel, purpose, seq")
                          .bind(1, recipient_id);
  while (s.step()) {
    policy::ConsentRecord r = consent_row(s);
    if (!out.empty() && out.back().channel == r.channel && out.back().purpose == r.purpose)
      out.back() = std::move(r);
    else
      out.push_back(std::move(r));
  }
  s.reset();
  return out;
}

void put_slot(sql::Connection& c, const std::string& recipient_id, const policy::CapSlot& slot) {
  // Keyed by message: a message cleared again after a crash re-takes its own slot, not a second one.
  c.prepare(
       "INSERT INTO cap_slots(recipient_id, message_id, channel, purpose, category, at) VALUES(?1, ?2, ?3, ?4, ?5, ?6) "
       "ON CONFLICT(recipient_id, message_id) DO UPDATE SET channel = ?3, at = ?6")
      .bind(1, recipient_id)
      .bind(2, slot.message_id)
      .bind(3, slot.channel)
      .bind(4, policy::to_string(slot.purpose))
      .bind(5, slot.category)
      .bind(6, slot.at_ms)
      .send();
}

void delete_slot(sql::Connection& c, const std::string& recipient_id, const std::string& message_id) {
  c.prepare("DELETE FROM cap_slots WHERE recipient_id = ?1 AND message_id = ?2")
      .bind(1, recipient_id)
      .bind(2, message_id)
      .exec();
}

std::vector<policy::CapSlot> slots_since(sql::Connection& c, const std::string& recipient_id, int64_t since_ms,
                                         std::vector<policy::CapSlot> out) {
  const auto held_count = static_cast<std::ptrdiff_t>(out.size());
  sql::Statement& s =
      c.prepare("SELECT message_id, channel, purpose, category, at FROM cap_slots WHERE recipient_id = ?1 AND at > ?2")
          .bind(1, recipient_id)
          .bind(2, since_ms);
  while (s.step()) {
    std::string id = s.text(0);
    if (std::any_of(out.begin(), out.begin() + held_count,
                    [&](const policy::CapSlot& h) { return h.message_id == id; }))
      continue;
    out.push_back({std::move(id), s.text(1), parse_purpose(s.text(2)), s.text(3), s.int64(4)});
  }
  s.reset();
  return out;
}

int64_t purge_slots(sql::Connection& c, int64_t before_ms) {
  c.prepare("DELETE FROM cap_slots WHERE at < ?1").bind(1, before_ms).exec();
  return c.changes();
}

}  // namespace tayori::store::ops

namespace tayori::store {

std::optional<RecipientUpdate> RecipientUpdate::of(const nlohmann::json& recipient) {
  if (!recipient.is_object()) return std::nullopt;
  RecipientUpdate u;
  if (auto it = recipient.find("timezone"); it != recipient.end() && it->is_string())
    u.timezone = it->get<std::string>();
  if (auto it = recipient.find("locale"); it != recipient.end() && it->is_string()) u.locale = it->get<std::string>();
  if (auto it = recipient.find("contacts"); it != recipient.end() && it->is_object()) {
    u.contacts_json = dump_json(*it);  // canonical: keys in order
    u.contact_points = ops::indexed_contact_points(*it);
  }
  return u;
}

std::optional<RecipientUpdate> RecipientUpdate::parse(std::string_view recipient_json) {
  return of(parse_json_or_discarded(recipient_json));
}

}  // namespace tayori::store
