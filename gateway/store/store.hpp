// The Store: everything Tayori must not forget — messages, their due times, and their event timelines.
// The embedded implementation is SQLite (sqlite_store.hpp); a PostgreSQL one serves many nodes later.
//
// Writes are group-committed: callers hand over an operation and a completion; one writer applies many
// operations in one transaction and runs each completion only after that transaction is durable. A
// completion that says `ok` is the promise behind an HTTP 202.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.hpp"

namespace tayori::store {

// Where a message is in its life. `accepted` and `deferred` are events, not states: an accepted or
// deferred message is scheduled. `suppressed`: the policy decided it must not be sent (final, with why);
// `failed`: a provider refused it for good (permanent). `dead`: every attempt allowed (max_attempts or
// max_age of its last channel) failed transiently; a dead letter, kept with the last provider answer for
// an operator to replay once the cause is fixed.
enum class State { scheduled, dispatched, delivered, failed, cancelled, suppressed, dead };
inline constexpr State kAllStates[] = {State::scheduled, State::dispatched, State::delivered, State::failed,
                                       State::cancelled, State::suppressed, State::dead};
std::string_view to_string(State s);
std::optional<State> parse_state(std::string_view s);
bool is_final(State s);

struct NewEvent {
  std::string type;  // accepted, scheduled, dispatched, delivered, failed, cancelled, requeued, ...
  std::string detail_json = "{}";
  int64_t at_ms = 0;  // 0: the time of the write
};

// What Tayori knows of a recipient. Contacts are the canonical JSON of the API's `contacts` object.
struct RecipientProfile {
  std::string id;
  std::string timezone;
  std::string locale;
  std::string contacts_json = "{}";
  int64_t updated_at_ms = 0;
  bool erased = false;  // personal data erased (right to erasure); the id and anonymous counters remain
};

struct NewMessage {
  std::string id;
  std::string recipient_id;
  // The message's `recipient` object: merged into the stored profile (its contacts win, per kind).
  std::string recipient_json;
  std::string api_key;  // the name of the key that submitted it
  std::string payload_hash;
  std::string payload;  // canonical JSON of the submitted message
  int64_t due_at_ms = 0;
  std::optional<int64_t> send_at_ms;
  std::optional<int64_t> expires_at_ms;
  std::vector<NewEvent> events;  // recorded with it, in order
  // Handed straight to this node's dispatcher: stored already claimed (`dispatched`, attempt 1) in the
  // accepting transaction, so a message due now costs no claim transaction of its own and waits for no
  // claim loop. Only for a message due at acceptance; a duplicate or conflict is never claimed. A crash
  // before its outcome is recorded leaves it `dispatched`, and the next start requeues it, as for a claim.
  bool claim = false;
};

struct MessageRecord {
  std::string id;
  std::string api_key;
  std::string payload_hash;
  std::string payload;
  State state = State::scheduled;
  int channel_index = 0;  // which of the message's channels is current (fallback moves it on)
  std::string channel;    // the channel last used, empty before the first dispatch
  int attempts = 0;          // claims of this message on any channel (the plugin's attempt number)
  int channel_attempts = 0;  // claims on the current channel: its retry budget (max_attempts) counts these
  std::optional<int64_t> channel_since_ms;  // the first claim on the current channel: max_age counts from it
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  int64_t due_at_ms = 0;
  std::optional<int64_t> send_at_ms;
  std::optional<int64_t> expires_at_ms;
  std::string last_reason;
  std::string recipient_id;
};

enum class AcceptStatus { accepted, duplicate, conflict };

struct AcceptResult {
  AcceptStatus status = AcceptStatus::accepted;
  State state = State::scheduled;  // for duplicates: the existing message's state
  std::optional<MessageRecord> claimed;  // an accepted NewMessage::claim: the claim, as claim_due returns it
};

struct EventRecord {
  int64_t seq = 0;
  std::string message_id;
  std::string type;
  int64_t at_ms = 0;
  std::string detail_json;
  std::string recipient_id;  // the message's recipient, or the subject of an event without a message (opt-out)
};

// Which messages a listing or a bulk replay is about. Empty fields match anything.
struct MessageFilter {
  std::optional<State> state;
  std::string channel;   // the channel last used
  std::string after_id;  // keyset paging: ids greater than this
  std::string id;        // exactly this message
  int limit = 100;
};

enum class CancelStatus { cancelled, not_found, too_late };

struct CancelResult {
  CancelStatus status = CancelStatus::not_found;
  State state = State::scheduled;  // the state it is (now) in
};

// What the dispatcher decided about a dispatched message. Applied only if the message is still
// `dispatched` by the same claim (a cancel, a recovery or another node's claim may have moved it since).
struct Transition {
  std::string message_id;
  int attempt = 0;  // the claim (attempts count) this verdict is about; 0: any
  // The claim made no delivery attempt (the policy deferred or suppressed it): give the attempt back,
  // so deferrals neither use up max_attempts nor shift the plugin's attempt number.
  bool no_attempt = false;
  State to = State::delivered;
  std::string channel;
  int channel_index = 0;
  bool next_channel = false;  // fallback: channel_index moved on, the new channel's retry budget starts afresh
  int64_t due_at_ms = 0;  // for `scheduled` (retry, fallback)
  std::string last_reason;
  std::vector<NewEvent> events;
  // The provider's id for this delivery (delivered): receipts and replies find the message by it. Empty
  // leaves the stored one.
  std::string provider_message_id;
  std::string recipient_id;  // the message's, when known (its events carry it); empty: the store looks it up
};

// What the store's writes have cost since it opened: the bench divides these by messages to print the
// write amplification (pages and fsyncs per message), and /metrics exports them.
struct WriteStats {
  int64_t commits = 0;        // durable transactions: one fsync each (synchronous=FULL)
  int64_t statements = 0;     // SQL statements the writer ran
  int64_t pages_written = 0;  // database pages written (to the WAL), checkpoints not included
};

class Store {
 public:
  virtual ~Store() = default;

  // Group-committed. `done(ok, results)` runs after the transaction is durable (ok) or failed (!ok, and
  // nothing of `batch` is stored). It runs on the writer thread: hand work elsewhere, do not block.
  virtual void accept(std::vector<NewMessage> batch, int64_t now_ms,
                      std::function<void(bool ok, std::vector<AcceptResult>)> done) = 0;

  // Group-committed. Cancels a message that has not been handed to a provider.
  virtual void cancel(const std::string& id, int64_t now_ms, std::function<void(bool ok, CancelResult)> done) = 0;

  // Group-committed. `done` may be empty.
  virtual void apply(Transition transition, int64_t now_ms, std::function<void(bool ok)> done) = 0;

  // Messages matching `filter`, in id order (payloads left empty).
  virtual std::vector<MessageRecord> list(const MessageFilter& filter) = 0;

  // Group-committed. Sends dead or failed messages matching `filter` through the policy again: scheduled,
  // due now, from their first channel with a fresh retry budget; a `replayed` event names `by`.
  // `done(ok, ids)` lists those replayed (a message in another state is left alone).
  virtual void replay(const MessageFilter& filter, int64_t now_ms, const std::string& by,
                      std::function<void(bool ok, std::vector<std::string> ids)> done) = 0;

  // Moves up to `limit` due scheduled messages to `dispatched` (attempts + 1) and returns them. Blocks
  // until committed. The caller records the `dispatched` event with the attempt's outcome.
  virtual std::vector<MessageRecord> claim_due(int64_t now_ms, int limit) = 0;

  // The earliest due time of a scheduled message, if any.
  virtual std::optional<int64_t> next_due_ms() = 0;

  // On start: messages left `dispatched` by a crash go back to `scheduled` (at-least-once). Returns how many.
  virtual int requeue_in_flight(int64_t now_ms) = 0;

  // Deletes finished messages (and their events and idempotency keys) last updated before `before_ms`.
  virtual int64_t purge_finished(int64_t before_ms) = 0;

  virtual std::optional<MessageRecord> find(const std::string& id) = 0;
  virtual std::vector<EventRecord> events(const std::string& id) = 0;
  virtual std::map<State, int64_t> count_by_state() = 0;
  virtual bool healthy() = 0;
  // Why the most recent failed write failed ("database or disk is full", "disk I/O error"; "" before any
  // failure). Set before that write's completion runs, so a completion told !ok can say why.
  virtual std::string last_write_error() = 0;
  virtual WriteStats write_stats() = 0;

  // ---- The upstream event feed (GET /v1/events, webhooks) ----
  // Events with seq > `after_seq`, in seq order, at most `limit`.
  virtual std::vector<EventRecord> events_after(int64_t after_seq, int limit) = 0;
  // The highest event seq (0 when there is none): a webhook's lag is this minus its cursor.
  virtual int64_t last_event_seq() = 0;
  // The seq a webhook subscription has delivered up to; nullopt before its first delivery.
  virtual std::optional<int64_t> webhook_cursor(const std::string& name) = 0;
  // Group-committed. `done` may be empty.
  virtual void set_webhook_cursor(const std::string& name, int64_t seq, std::function<void(bool ok)> done) = 0;

  // ---- Recipients (the policy engine's subjects) ----
  virtual std::optional<RecipientProfile> recipient(const std::string& id) = 0;
  // Replaces the profile (PUT). Group-committed.
  virtual void put_recipient(RecipientProfile profile, int64_t now_ms, std::function<void(bool ok)> done) = 0;
  // Right to erasure: drops contacts, locale, time zone and the content of the recipient's messages,
  // cancels what is still scheduled; keeps ids, states, events and cap counters (anonymous). `found`
  // is false for an unknown recipient.
  virtual void erase_recipient(const std::string& id, int64_t now_ms, std::function<void(bool ok, bool found)> done) = 0;

  // ---- Consent: append-only history per recipient x channel x purpose ----
  virtual void append_consent(const std::string& recipient_id, policy::ConsentRecord record,
                              std::function<void(bool ok)> done) = 0;
  virtual std::vector<policy::ConsentRecord> consent_history(const std::string& recipient_id) = 0;
  // The latest record per channel x purpose.
  virtual std::vector<policy::ConsentRecord> consent_current(const std::string& recipient_id) = 0;

  // ---- Suppression of dead contact points ----
  virtual void add_suppression(policy::Suppression s, std::function<void(bool ok)> done) = 0;
  virtual void remove_suppression(const std::string& contact, std::function<void(bool ok, bool found)> done) = 0;
  virtual std::vector<policy::Suppression> suppressions(const std::vector<std::string>& contacts) = 0;
  virtual std::vector<policy::Suppression> list_suppressions(const std::string& after_contact, int limit) = 0;

  // ---- Two-way: inbound events, responses, follow-ups, open questions ----
  // An event to record: on a message (its recipient is the message's), or, with message_id empty, on a
  // recipient alone (a LINE follow or an SMS STOP belongs to no message).
  struct EventWrite {
    std::string message_id;
    std::string recipient_id;
    NewEvent event;
  };
  // A follow-up (a response's follow_up): `message` is scheduled with parent_id = `parent_id`; when its id
  // is taken (an earlier follow-up of the same option), "~2", "~3", ... is appended. The parent gets a
  // follow_up_scheduled event naming the id used.
  struct FollowUp {
    std::string parent_id;
    std::string option;
    NewMessage message;
  };
  // Everything one inbound event changes, written in one transaction (core/inbound.hpp decides it).
  struct InboundWrites {
    // De-duplication (inbound_seen): when (source, event_id) was seen before, nothing below is written.
    // Empty event_id: no de-duplication.
    std::string seen_source;
    std::string seen_event_id;
    std::vector<std::pair<std::string, policy::ConsentRecord>> consent;  // recipient id, record
    std::vector<policy::Suppression> suppress;
    // Lifted only when the stored suppression of `contact` has this `source` (a LINE follow lifts what
    // that channel's unfollow made, never a hard bounce recorded elsewhere).
    std::vector<policy::Suppression> unsuppress;
    std::vector<EventWrite> events;
    // Scheduled follow-ups of this message are cancelled (a later answer overrides "remind me later"):
    // each gets `cancelled`, the parent `follow_up_cancelled`.
    std::string cancel_follow_ups_of;
    std::vector<FollowUp> follow_ups;
  };
  // Group-committed. `done(ok, applied)`: how many of `writes` were new (not de-duplicated away).
  virtual void apply_inbound(std::vector<InboundWrites> writes, int64_t now_ms,
                             std::function<void(bool ok, int applied)> done) = 0;
  // The message a provider knows by `provider_message_id` (receipts).
  virtual std::optional<MessageRecord> find_by_provider_id(const std::string& provider_message_id) = 0;
  // The recipient whose stored profile has `contact` as one of its contact points ("" when none).
  virtual std::string recipient_by_contact(const std::string& contact) = 0;
  // The latest message with response options sent to a contact point on a channel: a numbered SMS reply
  // ("2") answers it. `options_json` is the JSON array of its option ids, in the order they were numbered.
  struct Question {
    std::string message_id;
    std::string options_json = "[]";
    int64_t at_ms = 0;
  };
  virtual std::optional<Question> open_question(const std::string& contact, const std::string& channel) = 0;
  // Group-committed; replaces the contact point's open question on that channel. `done` may be empty.
  virtual void put_question(const std::string& contact, const std::string& channel, Question question,
                            std::function<void(bool ok)> done) = 0;

  // ---- Frequency-cap slots ----
  // Takes (or re-takes, after a crash) the slot of `slot.message_id`. Group-committed without waiting:
  // slots_since sees the slot at once (read-your-writes), so the caller may send before the commit. A crash
  // before the commit loses the slot together with the outcome of that send, and the restart requeues the
  // message, which takes its slot again when it is cleared again (at-least-once, as for any send).
  virtual void take_slot(const std::string& recipient_id, const policy::CapSlot& slot) = 0;
  virtual void release_slot(const std::string& recipient_id, const std::string& message_id,
                            std::function<void(bool ok)> done) = 0;
  // The slots taken since `since_ms`: the committed ones and those taken but not yet committed.
  virtual std::vector<policy::CapSlot> slots_since(const std::string& recipient_id, int64_t since_ms) = 0;
  virtual int64_t purge_slots(int64_t before_ms) = 0;
};

}  // namespace tayori::store
