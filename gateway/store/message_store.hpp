// The messages and their due queue: what was accepted, where each message is in its life, its timeline,
// and the claims that hand due messages to a dispatcher. One aggregate of the Store (store.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/result.hpp"
#include "store/recipient_store.hpp"
#include "store/stats_store.hpp"

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

// One entry of a timeline to record: what happened to a message, or to a recipient alone (stored as a row of
// `events`; docs/architecture.md, "Words we use").
struct NewTimelineEvent {
  std::string type;  // accepted, scheduled, dispatched, delivered, failed, cancelled, requeued, ...
  std::string detail_json = "{}";
  int64_t at_ms = 0;  // 0: the time of the write
  friend bool operator==(const NewTimelineEvent&, const NewTimelineEvent&) = default;
};

// What a message's `recipient` object says, merged into the stored profile (ops::merge_recipient): time zone
// and locale when given, contacts per kind. Made by the intake, on the HTTP threads, so that the store's one
// writer thread parses no JSON for a recipient who comes back with the contacts stored already, or for a
// new one.
struct RecipientUpdate {
  std::optional<std::string> timezone;
  std::optional<std::string> locale;
  std::string contacts_json;  // the `contacts` object as canonical JSON; "" when the message has none
  // Its string values (a push token list is not one): the contact points an inbound STOP or unfollow finds
  // the recipient by.
  std::vector<std::string> contact_points;

  // From the `recipient` object; nullopt when it is not an object (nothing to merge).
  static std::optional<RecipientUpdate> of(const nlohmann::json& recipient);
  static std::optional<RecipientUpdate> parse(std::string_view recipient_json);
  friend bool operator==(const RecipientUpdate&, const RecipientUpdate&) = default;
};

struct NewMessage {
  std::string id;
  std::string recipient_id;
  // The message's `recipient` object: merged into the stored profile (its contacts win, per kind).
  std::optional<RecipientUpdate> recipient;
  std::string api_key;  // the name of the key that submitted it
  std::string payload_hash;
  std::string payload;  // canonical JSON of the submitted message
  int64_t due_at_ms = 0;
  std::optional<int64_t> send_at_ms;
  std::optional<int64_t> expires_at_ms;
  std::vector<NewTimelineEvent> events;  // recorded with it, in order
  // Handed straight to this node's dispatcher: stored already claimed (`dispatched`, attempt 1) in the
  // accepting transaction, so a message due now costs no claim transaction of its own and waits for no
  // claim loop. Only for a message due at acceptance; a duplicate or conflict is never claimed. A crash
  // before its outcome is recorded leaves it `dispatched`, and the next start requeues it, as for a claim.
  bool claim = false;
  std::vector<StatCount> counts;  // added to the stats when it is accepted (not a duplicate)
  friend bool operator==(const NewMessage&, const NewMessage&) = default;
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
  // Its number in arrival order (messages.seq), which its events are indexed by and which finds its row without
  // the id's index; 0 when not known (a record made by hand), and a write then looks it up by id.
  int64_t seq = 0;
};

enum class AcceptStatus { accepted, duplicate, conflict };

struct AcceptResult {
  AcceptStatus status = AcceptStatus::accepted;
  State state = State::scheduled;  // for duplicates: the existing message's state
  std::optional<MessageRecord> claimed;  // an accepted NewMessage::claim: the claim, as claim_due returns it
  // With `claimed`, when the message carried recipient data: the profile its commit left stored, which the
  // dispatcher completes the message from instead of reading it again (core::complete_from_profile).
  std::optional<RecipientProfile> recipient{};
};

// A timeline event as stored. `seq` orders the events of every timeline at once: the feed's order.
struct TimelineEvent {
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
  std::string api_key;   // only the messages this API key submitted; empty: every key's
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
  std::vector<NewTimelineEvent> events;
  // The provider's id for this delivery (delivered): receipts find the message by it (find_by_provider_id).
  // Empty leaves the stored one; the dispatcher leaves it empty where no receipt can come (a channel that
  // takes no inbound calls).
  std::string provider_message_id;
  std::string recipient_id;  // the message's, when known (its events carry it); empty: the store looks it up
  int64_t message_seq = 0;   // MessageRecord::seq of the claim, when known; 0: the store looks it up by id
  // The contact point the attempt used. A verdict that arrives after the recipient was erased is recorded
  // without it (last_reason, event details) and its suppression, if any, is kept only as a key
  // (store/ops/erasure.hpp).
  std::string contact;
  std::vector<StatCount> counts;  // added to the stats when the verdict is recorded (not a stale one)
};

class MessageStore {
 public:
  virtual ~MessageStore() = default;

  // Group-committed. `done` gets the results once the transaction is durable, or the Error that failed it
  // (nothing of `batch` is stored then). It runs on the store's completer thread, after the completions of
  // every earlier commit: hand long work elsewhere, do not block.
  virtual void accept(std::vector<NewMessage> batch, int64_t now_ms,
                      std::function<void(Result<std::vector<AcceptResult>>)> done) = 0;

  // Group-committed. Cancels a message that has not been handed to a provider.
  virtual void cancel(const std::string& id, int64_t now_ms, std::function<void(Result<CancelResult>)> done) = 0;

  // Group-committed. `done` may be empty.
  virtual void apply(Transition transition, int64_t now_ms, std::function<void(Result<void>)> done) = 0;

  // Messages matching `filter`, in id order (payloads left empty).
  virtual std::vector<MessageRecord> list(const MessageFilter& filter) = 0;

  // Group-committed. Sends dead or failed messages matching `filter` through the policy again: scheduled,
  // due now, from their first channel with a fresh retry budget; a `replayed` event names `by`.
  // `done` gets the ids of those replayed (a message in another state is left alone).
  virtual void replay(const MessageFilter& filter, int64_t now_ms, const std::string& by,
                      std::function<void(Result<std::vector<std::string>>)> done) = 0;

  // Moves up to `limit` due scheduled messages to `dispatched` (attempts + 1) and returns them. Blocks
  // until committed. The caller records the `dispatched` event with the attempt's outcome. These blocking
  // writes (the claim, the requeue, the purges) answer the writer's error when their group failed: then
  // nothing of theirs was committed.
  virtual Result<std::vector<MessageRecord>> claim_due(int64_t now_ms, int limit) = 0;

  // The earliest due time of a scheduled message, if any.
  virtual std::optional<int64_t> next_due_ms() = 0;

  // On start: messages left `dispatched` by a crash go back to `scheduled` (at-least-once). Returns how many.
  virtual Result<int> requeue_in_flight(int64_t now_ms) = 0;

  // Deletes finished messages (and their events and idempotency keys) last updated before `before_ms`.
  virtual Result<int64_t> purge_finished(int64_t before_ms) = 0;

  virtual std::optional<MessageRecord> find(const std::string& id) = 0;
  // The message a provider knows by `provider_message_id` (receipts).
  virtual std::optional<MessageRecord> find_by_provider_id(const std::string& provider_message_id) = 0;
  // The message's timeline, in order.
  virtual std::vector<TimelineEvent> events(const std::string& id) = 0;
  // The `delivered` and `clicked` events of a recipient's messages at [since_ms, until_ms], the latest first,
  // at most 200: what a conversion may be attributed to (core/conversion.hpp).
  virtual std::vector<TimelineEvent> touches(const std::string& recipient_id, int64_t since_ms, int64_t until_ms) = 0;
  virtual std::map<State, int64_t> count_by_state() = 0;
};

}  // namespace tayori::store
