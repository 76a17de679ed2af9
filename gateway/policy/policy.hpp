// The policy engine's decisions: consent, suppression, quiet hours, frequency caps and channel choice.
// Everything here is a pure function of its arguments (the message, the recipient's state as loaded,
// the configuration, the time): no I/O, no clock, no randomness. core/clearance.hpp does the I/O around it.
//
// Semantics (docs/architecture.md §4): a channel is skipped when the recipient has no contact for it, the
// contact is suppressed (whatever the purpose), or consent is missing; the first channel that passes is
// chosen. Quiet hours and caps then decide for that channel whether the message goes now, later
// (deferred) or not at all (suppressed). Transactional messages bypass quiet hours and caps unless a
// rule names the transactional purpose explicitly; nothing bypasses suppression of a dead contact.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "policy/purpose.hpp"
#include "policy/timezone.hpp"

namespace tayori::policy {

using Json = nlohmann::json;

enum class ConsentState { opted_in, opted_out };
std::string_view to_string(ConsentState s);
std::optional<ConsentState> parse_consent_state(std::string_view s);

// ---- Configuration ---------------------------------------------------------------------------------

struct ConsentDefaults {
  ConsentState transactional = ConsentState::opted_in;  // implied by the transaction itself
  ConsentState marketing = ConsentState::opted_out;     // marketing needs an explicit opt-in
  std::map<std::string, std::map<Purpose, ConsentState>> per_channel;
  ConsentState default_for(const std::string& channel, Purpose purpose) const;
};

struct QuietHoursRule {
  std::string name;
  std::vector<std::string> channels;  // empty: every channel
  std::optional<Purpose> purpose;     // empty: marketing (transactional only when named)
  int from_minute = 21 * 60;          // local time of day the window opens
  int to_minute = 8 * 60;             // ... and closes (may wrap past midnight)
  enum class Action { defer, drop } action = Action::defer;
  int64_t spread_ms = 0;  // deferred messages reopen spread over this interval, not all at to_minute
};

struct CapRule {
  std::string name;
  enum class Scope { channel, all } scope = Scope::all;
  std::vector<std::string> channels;  // empty: every channel
  std::optional<Purpose> purpose;     // empty: marketing (transactional only when named)
  std::string category;               // empty: any category
  int limit = 3;
  int64_t window_ms = 86'400'000;
  enum class OnExceed { drop, defer } on_exceed = OnExceed::drop;
};

struct PolicyConfig {
  std::string default_timezone = "UTC";
  ConsentDefaults consent;
  std::vector<QuietHoursRule> quiet_hours;
  std::vector<CapRule> caps;
  int64_t longest_cap_window_ms() const;
};

// ---- The recipient's state, as loaded for one decision -------------------------------------------

struct ConsentRecord {
  std::string channel;
  Purpose purpose = Purpose::marketing;
  ConsentState state = ConsentState::opted_in;
  std::string source;  // api, line_follow, sms_keyword, list_unsubscribe, ...
  std::string evidence;
  int64_t at_ms = 0;
};

struct Suppression {
  std::string contact;
  std::string reason;  // hard_bounce, unregistered, unfollow, stop, manual, ...
  std::string source;
  int64_t at_ms = 0;
};

// A frequency-cap slot: one message cleared to send (given back when its delivery fails permanently).
struct CapSlot {
  std::string message_id;
  std::string channel;
  Purpose purpose = Purpose::marketing;
  std::string category;
  int64_t at_ms = 0;
};

struct RecipientState {
  std::vector<ConsentRecord> consent;           // the current record per channel × purpose
  std::map<std::string, Suppression> suppressed;  // by contact point
  std::vector<CapSlot> slots;                   // at least those within the longest cap window
};

// ---- The decision ------------------------------------------------------------------------------

struct ChannelView {
  std::string contact_kind;
  bool available = true;  // false: down (its plugin instance is not ready); skipped like a missing contact
  // Its circuit breaker is open (transport/circuit_breaker.hpp): the channel is passed over for now, and a
  // message that no other channel can take waits until then, spread over `circuit_spread_ms` so the
  // waiting messages do not all return at the same moment. 0: closed (or a probe may go now).
  int64_t circuit_open_until_ms = 0;
  int64_t circuit_spread_ms = 0;
};
using ChannelLookup = std::function<std::optional<ChannelView>(const std::string& name)>;

// One step of the trace that `POST /v1/messages:simulate` returns and events record.
struct TraceStep {
  std::string stage;    // route, consent, suppression, quiet_hours, caps
  std::string channel;  // empty for message-wide steps
  std::string result;   // pass, skip, defer, drop
  std::string rule;     // e.g. "quiet_hours.marketing_night", "caps.marketing_daily", "consent.default"
  Json detail = Json::object();
  Json to_json() const;
};

enum class Verdict { send, defer, suppress };

struct Decision {
  Verdict verdict = Verdict::suppress;
  int channel_index = -1;
  std::string channel;
  std::string contact;
  int64_t until_ms = 0;  // defer: when to look again
  std::string reason;    // defer/suppress: quiet_hours, frequency_cap, expired, no_usable_channel
  std::string rule;
  Json detail = Json::object();  // the event's detail: reason, rule, until, limit, window, skipped...
  std::vector<TraceStep> trace;  // only with DecisionInput::explain
};

// What a decision reads of a message: the message model (core/message.hpp) sits above the policy and is
// shown to it through this view (core::policy_facts builds it), so the policy includes nothing above itself.
// A view: valid while the message it was made from is.
struct MessageFacts {
  Purpose purpose = Purpose::transactional;
  std::string_view category;
  std::span<const std::string> channels;  // preference order
  std::optional<int64_t> expires_at_ms;
  // The recipient's contact point of a kind ("email", "phone", "push.fcm", ...), if it has one.
  std::function<std::optional<std::string>(const std::string& kind)> contact;
};

struct DecisionInput {
  MessageFacts message;
  int from_index = 0;  // fallback: the channel to start from
  const RecipientState& state;
  const PolicyConfig& config;
  const ChannelLookup& channels;
  const TimeZone& zone;  // the recipient's, or the configured default
  int64_t now_ms = 0;
  double jitter = 0.0;  // in [0,1): where in the spread interval a deferred message lands
  // Fill Decision::trace (simulate). Off on the dispatch path, where only `detail` is recorded: building
  // the trace is most of a decision's cost (tools/bench/policy_bench).
  bool explain = false;
};

Decision decide(const DecisionInput& input);

// The parts, each usable (and tested) alone.
// The consent that applies: the latest record for channel x purpose, or nullptr when the default does.
const ConsentRecord* consent_record(const std::vector<ConsentRecord>& consent, const std::string& channel,
                                    Purpose purpose);
bool consent_allows(const std::vector<ConsentRecord>& consent, const ConsentDefaults& defaults,
                    const std::string& channel, Purpose purpose, TraceStep& step);

// A category-level opt-out (an answer mapped to `opt_out: category`, two-way issue) is a consent record
// whose channel is this scope, "category:<name>", purpose marketing: it stops marketing of that category on
// every channel (decide suppresses it, reason category_opted_out, rule consent.category). Channel names
// cannot contain ':', so the scope never collides with a channel.
std::string category_scope(std::string_view category);
// The category opt-out that applies to a marketing message of `category` (nullptr: none, or opted in again).
const ConsentRecord* category_opt_out(const std::vector<ConsentRecord>& consent, std::string_view category);

struct QuietHoursVerdict {
  bool quiet = false;
  const QuietHoursRule* rule = nullptr;
  int64_t until_ms = 0;  // window end (+ spread) when quiet
};
QuietHoursVerdict quiet_hours(const std::vector<QuietHoursRule>& rules, const std::string& channel, Purpose purpose,
                              const TimeZone& zone, int64_t now_ms, double jitter);

struct CapVerdict {
  bool exceeded = false;
  const CapRule* rule = nullptr;
  int counted = 0;
  int64_t until_ms = 0;  // when a slot frees up (the oldest counted slot leaves the window)
};
CapVerdict check_caps(const std::vector<CapRule>& rules, const std::vector<CapSlot>& slots, const std::string& channel,
                      Purpose purpose, std::string_view category, int64_t now_ms);

// Formats an instant in the recipient's zone: "2026-11-24T08:00:00+09:00".
std::string format_local(int64_t unix_ms, const TimeZone& zone);

}  // namespace tayori::policy
