// Clearance (clearance.hpp): reads the recipient's state from the store, asks the pure policy::decide, and
// takes the cap slot under the recipient's lock. The dispatcher's workers and :simulate call it.
#include "core/clearance.hpp"
#include "common/json.hpp"

#include <algorithm>
#include <functional>
#include <stdexcept>

namespace tayori::core {

policy::MessageFacts policy_facts(const Message& m) {
  policy::MessageFacts f;
  f.purpose = m.purpose;
  f.category = m.category;
  f.channels = m.channels;
  f.expires_at_ms = m.expires_at_ms;
  f.contact = [&recipient = m.recipient](const std::string& kind) { return recipient.contact(kind); };
  return f;
}

Clearance::Clearance(store::Store& store, const policy::PolicyConfig& config, const plugin::Registry& channels)
    : store_(store), config_(config), channels_(channels) {
  auto zone = policy::TimeZone::load(config.default_timezone);
  if (!zone) throw std::runtime_error("policy.default_timezone: unknown time zone " + config.default_timezone);
  default_zone_ = *zone;
}

policy::ChannelLookup Clearance::lookup(int64_t now_ms) const {
  return [this, now_ms](const std::string& name) -> std::optional<policy::ChannelView> {
    const plugin::Channel* c = channels_.find(name);
    if (c == nullptr) return std::nullopt;
    policy::ChannelView view{c->contact(), c->ready()};
    const transport::CircuitBreaker& circuit = c->circuit();
    if (!circuit.would_admit(now_ms)) {
      view.circuit_open_until_ms = std::max(now_ms + 1, circuit.next_probe_ms());
      // Spread the waiting messages' return over how long it has been open (at most a minute): the
      // longer the outage, the fewer of them come back to find it still open at each probe.
      view.circuit_spread_ms = std::min<int64_t>(60'000, circuit.open_for_ms(now_ms));
    }
    return view;
  };
}

void complete_from_profile(Message& m, const store::RecipientProfile& profile) {
  if (profile.erased) return;
  if (m.recipient.timezone.empty()) m.recipient.timezone = profile.timezone;
  if (m.recipient.locale.empty()) m.recipient.locale = profile.locale;
  Json contacts = parse_json_or_discarded(profile.contacts_json);
  if (!contacts.is_object()) return;
  for (auto it = contacts.begin(); it != contacts.end(); ++it) {
    if (it.key() == "push") {
      if (m.recipient.push.empty() && it->is_array())
        for (const auto& t : *it)
          if (t.is_object() && t.contains("platform") && t.contains("token"))
            m.recipient.push.push_back({t["platform"].get<std::string>(), t["token"].get<std::string>()});
    } else if (it->is_string() && !m.recipient.contacts.count(it.key())) {
      m.recipient.contacts[it.key()] = it->get<std::string>();
    }
  }
}

void Clearance::complete_recipient(Message& m) const {
  if (auto profile = store_.recipient(m.recipient.id)) complete_from_profile(m, *profile);
}

const policy::TimeZone& Clearance::zone_for(const Message& m) const {
  thread_local std::optional<policy::TimeZone> zone;
  if (!m.recipient.timezone.empty() && (zone = policy::TimeZone::load(m.recipient.timezone))) return *zone;
  return default_zone_;
}

policy::RecipientState Clearance::load_state(const Message& m, int64_t now_ms) const {
  std::vector<std::string> contacts;
  for (const auto& [kind, contact] : m.recipient.contacts) contacts.push_back(contact);
  for (const auto& t : m.recipient.push) contacts.push_back(t.token);
  std::optional<int64_t> slots_since;
  if (!config_.caps.empty()) slots_since = now_ms - config_.longest_cap_window_ms();
  policy::RecipientState state = store_.decision_state(m.recipient.id, contacts, slots_since);
  // A message cleared before (then retried, or re-taken after a crash) holds its own slot: it must not
  // count against itself.
  std::erase_if(state.slots, [&](const policy::CapSlot& s) { return s.message_id == m.id; });
  return state;
}

std::mutex& Clearance::stripe(const std::string& recipient_id) {
  return stripes_[std::hash<std::string>{}(recipient_id) % stripes_.size()];
}

policy::Decision Clearance::clear(const Message& m, int from_index, int64_t now_ms, double jitter, bool take_slot,
                                  bool explain) {
  policy::ChannelLookup channels = lookup(now_ms);
  auto decide = [&] {
    policy::RecipientState state = load_state(m, now_ms);
    return policy::decide({policy_facts(m), from_index, state, config_, channels, zone_for(m), now_ms, jitter, explain});
  };
  if (!take_slot) return decide();
  std::lock_guard lock(stripe(m.recipient.id));
  // Other nodes sharing the store decide for this recipient too: their lock is the store's.
  auto across_nodes = config_.caps.empty() ? nullptr : store_.lock_decisions(m.recipient.id);
  policy::Decision d = decide();
  // The store counts the slot from here on (Store::take_slot), committed or not, so the next decision for
  // this recipient sees it; the send need not wait for the commit.
  if (d.verdict == policy::Verdict::send && !config_.caps.empty())
    store_.take_slot(m.recipient.id, {m.id, d.channel, m.purpose, m.category, now_ms});
  return d;
}

void Clearance::release(const Message& m) { store_.release_slot(m.recipient.id, m.id, nullptr); }

}  // namespace tayori::core
