// Clearance: the I/O around the policy engine's pure decision. It loads the recipient's state (profile,
// consent, suppressions, cap slots), asks policy::decide, and when the answer is "send" takes the
// message's frequency-cap slot before anyone else can look: per recipient, load-decide-take runs under
// one lock, and the store counts the slot before the lock is released (committed or still queued for the
// group commit: Store::take_slot), so when many messages race for a recipient's last slot exactly the
// limit get through. On one node the lock is in this process; nodes that share a store also hold the
// store's lock for the recipient (Store::lock_decisions), and take_slot commits before it is released
// (docs/architecture.md §5).
#pragma once

#include <array>
#include <mutex>
#include <string>

#include "common/time.hpp"
#include "core/message.hpp"
#include "plugin/channel.hpp"
#include "policy/policy.hpp"
#include "store/store.hpp"

namespace tayori::core {

// The message as the policy reads it (policy::MessageFacts): a view of `m`, valid while `m` is.
policy::MessageFacts policy_facts(const Message& m);

// Completes the message's recipient from `profile`: the time zone and locale it lacks, and the contacts of
// the kinds it does not name (push tokens only when it names none). An erased profile adds nothing.
void complete_from_profile(Message& m, const store::RecipientProfile& profile);

class Clearance {
 public:
  Clearance(store::Store& store, const policy::PolicyConfig& config, const plugin::Registry& channels);

  // Completes the message's recipient from the stored profile (complete_from_profile), read now.
  void complete_recipient(Message& message) const;

  // Decides for `message` from channel `from_index`. With `take_slot`, a "send" verdict takes the cap
  // slot before returning; without, nothing is written (simulation).
  // `explain` fills the decision's trace (simulate).
  policy::Decision clear(const Message& message, int from_index, int64_t now_ms, double jitter, bool take_slot,
                         bool explain = false);

  // Gives the slot back (delivery failed permanently).
  void release(const Message& message);

  const policy::TimeZone& zone_for(const Message& message) const;

 private:
  policy::RecipientState load_state(const Message& message, int64_t now_ms) const;
  std::mutex& stripe(const std::string& recipient_id);
  // What routing sees of each configured channel at `now_ms` (readiness, circuit state).
  policy::ChannelLookup lookup(int64_t now_ms) const;

  store::Store& store_;
  const policy::PolicyConfig& config_;
  const plugin::Registry& channels_;
  policy::TimeZone default_zone_;
  std::array<std::mutex, 64> stripes_;
};

}  // namespace tayori::core
