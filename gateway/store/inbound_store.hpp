// Two-way: what one provider report (a reply, a tap, a receipt, an unfollow) changes, written at once, and
// the open questions a numbered SMS reply answers. One aggregate of the Store (store.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "policy/policy.hpp"
#include "store/message_store.hpp"

namespace tayori::store {

class InboundStore {
 public:
  virtual ~InboundStore() = default;

  // A timeline event to record: on a message (its recipient is the message's), or, with message_id empty, on a
  // recipient alone (a LINE follow or an SMS STOP belongs to no message).
  struct TimelineWrite {
    std::string message_id;
    std::string recipient_id;
    NewTimelineEvent event;
  };
  // A follow-up (a response's follow_up): `message` is scheduled with parent_id = `parent_id`; when its id
  // is taken (an earlier follow-up of the same option), "~2", "~3", ... is appended. The parent gets a
  // follow_up_scheduled event naming the id used.
  struct FollowUp {
    std::string parent_id;
    std::string option;
    NewMessage message;
  };
  // Everything one provider report, answer or unsubscribe changes, written in one transaction
  // (core/inbound.hpp decides it).
  struct InboundWrites {
    // De-duplication (inbound_seen): when (seen_source, seen_report_id) was seen before, nothing below is
    // written. Empty seen_report_id: no de-duplication. The id is a provider report's (or a conversion's);
    // its column keeps the older name, inbound_seen.event_id, since renaming it would migrate every database
    // (docs/architecture.md, "Words we use").
    std::string seen_source;
    std::string seen_report_id;
    std::vector<std::pair<std::string, policy::ConsentRecord>> consent;  // recipient id, record
    std::vector<policy::Suppression> suppress;
    // Lifted only when the stored suppression of `contact` has this `source` (a LINE follow lifts what
    // that channel's unfollow made, never a hard bounce recorded elsewhere).
    std::vector<policy::Suppression> unsuppress;
    std::vector<TimelineWrite> events;
    // Scheduled follow-ups of this message are cancelled (a later answer overrides "remind me later"):
    // each gets `cancelled`, the parent `follow_up_cancelled`.
    std::string cancel_follow_ups_of;
    std::vector<FollowUp> follow_ups;
    std::vector<StatCount> counts;  // added to the stats unless de-duplicated away
  };
  // Group-committed. `done` gets how many of `writes` were new (not de-duplicated away).
  virtual void apply_inbound(std::vector<InboundWrites> writes, int64_t now_ms,
                             std::function<void(Result<int>)> done) = 0;

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
                            std::function<void(Result<void>)> done) = 0;
};

}  // namespace tayori::store
