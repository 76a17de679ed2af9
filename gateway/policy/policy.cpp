// The policy decision (policy.hpp): consent, suppression, quiet hours, caps and channel choice as pure
// functions, applied in the order of docs/architecture.md §4. Clearance does the I/O around them.
#include "policy/policy.hpp"

#include <algorithm>
#include <cstdio>

#include "common/time.hpp"

namespace tayori::policy {

std::string_view to_string(ConsentState s) { return s == ConsentState::opted_in ? "opted_in" : "opted_out"; }

std::optional<ConsentState> parse_consent_state(std::string_view s) {
  if (s == "opted_in") return ConsentState::opted_in;
  if (s == "opted_out") return ConsentState::opted_out;
  return std::nullopt;
}

ConsentState ConsentDefaults::default_for(const std::string& channel, Purpose purpose) const {
  auto c = per_channel.find(channel);
  if (c != per_channel.end()) {
    auto p = c->second.find(purpose);
    if (p != c->second.end()) return p->second;
  }
  return purpose == Purpose::marketing ? marketing : transactional;
}

int64_t PolicyConfig::longest_cap_window_ms() const {
  int64_t longest = 0;
  for (const auto& c : caps) longest = std::max(longest, c.window_ms);
  return longest;
}

Json TraceStep::to_json() const {
  Json j = {{"stage", stage}, {"result", result}};
  if (!channel.empty()) j["channel"] = channel;
  if (!rule.empty()) j["rule"] = rule;
  if (!detail.empty()) j["detail"] = detail;
  return j;
}

std::string format_local(int64_t unix_ms, const TimeZone& zone) {
  LocalTime t = zone.local(unix_ms);
  int off = t.utc_offset_seconds;
  char sign = off < 0 ? '-' : '+';
  off = off < 0 ? -off : off;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", t.year, t.month, t.day, t.hour, t.minute,
                t.second, sign, off / 3600, off % 3600 / 60);
  return buf;
}

namespace {

bool names(const std::vector<std::string>& channels, const std::string& channel) {
  return channels.empty() || std::find(channels.begin(), channels.end(), channel) != channels.end();
}

// A rule without a purpose governs marketing only; transactional messages are covered only by rules
// that name the transactional purpose (docs/architecture.md §4: transactional bypasses unless configured).
bool covers(const std::optional<Purpose>& rule_purpose, Purpose purpose) {
  return rule_purpose ? *rule_purpose == purpose : purpose == Purpose::marketing;
}

}  // namespace

const ConsentRecord* consent_record(const std::vector<ConsentRecord>& consent, const std::string& channel,
                                    Purpose purpose) {
  const ConsentRecord* found = nullptr;
  for (const auto& r : consent)
    if (r.channel == channel && r.purpose == purpose) found = &r;  // the latest wins
  return found;
}

std::string category_scope(std::string_view category) { return std::string("category:").append(category); }

const ConsentRecord* category_opt_out(const std::vector<ConsentRecord>& consent, std::string_view category) {
  const ConsentRecord* r = consent_record(consent, category_scope(category), Purpose::marketing);
  return r != nullptr && r->state == ConsentState::opted_out ? r : nullptr;
}

bool consent_allows(const std::vector<ConsentRecord>& consent, const ConsentDefaults& defaults,
                    const std::string& channel, Purpose purpose, TraceStep& step) {
  step.stage = "consent";
  step.channel = channel;
  if (const ConsentRecord* r = consent_record(consent, channel, purpose)) {
    step.detail = {{"state", to_string(r->state)}, {"source", r->source}, {"at", format_rfc3339_ms(r->at_ms)}};
    step.rule = "consent.recorded";
    step.result = r->state == ConsentState::opted_in ? "pass" : "skip";
    return r->state == ConsentState::opted_in;
  }
  ConsentState d = defaults.default_for(channel, purpose);
  step.rule = "consent.default";
  step.detail = {{"state", to_string(d)}, {"purpose", to_string(purpose)}};
  step.result = d == ConsentState::opted_in ? "pass" : "skip";
  return d == ConsentState::opted_in;
}

QuietHoursVerdict quiet_hours(const std::vector<QuietHoursRule>& rules, const std::string& channel, Purpose purpose,
                              const TimeZone& zone, int64_t now_ms, double jitter) {
  QuietHoursVerdict v;
  LocalTime local = zone.local(now_ms);
  int m = local.minute_of_day();
  for (const auto& rule : rules) {
    if (!names(rule.channels, channel) || !covers(rule.purpose, purpose)) continue;
    if (rule.from_minute == rule.to_minute) continue;  // an empty window
    bool wraps = rule.from_minute > rule.to_minute;    // 21:00-08:00 spans midnight
    bool inside = wraps ? (m >= rule.from_minute || m < rule.to_minute)
                        : (m >= rule.from_minute && m < rule.to_minute);
    if (!inside) continue;
    // The window closes today at to_minute, or tomorrow when we are in its evening part.
    int y = local.year, mo = local.month, d = local.day;
    if (wraps && m >= rule.from_minute) {
      // Tomorrow's date: noon today + 24h, read back in the zone (safe across DST changes).
      LocalTime tomorrow = zone.local(zone.instant(y, mo, d, 12, 0) + 86'400'000);
      y = tomorrow.year;
      mo = tomorrow.month;
      d = tomorrow.day;
    }
    int64_t end = zone.earliest_at(y, mo, d, rule.to_minute / 60, rule.to_minute % 60);
    // Inside a repeated hour (DST ends) the first occurrence of the end may already be past: the window
    // closes at the second one, or the message would be deferred to a moment before now, again and again.
    if (end <= now_ms) end = zone.latest_at(y, mo, d, rule.to_minute / 60, rule.to_minute % 60);
    if (end <= now_ms) continue;
    int64_t until = end + static_cast<int64_t>(jitter * static_cast<double>(rule.spread_ms));
    // With several windows covering now, the one that closes last decides.
    if (!v.quiet || until > v.until_ms) {
      v.quiet = true;
      v.rule = &rule;
      v.until_ms = until;
    }
  }
  return v;
}

CapVerdict check_caps(const std::vector<CapRule>& rules, const std::vector<CapSlot>& slots, const std::string& channel,
                      Purpose purpose, std::string_view category, int64_t now_ms) {
  CapVerdict v;
  for (const auto& rule : rules) {
    if (!names(rule.channels, channel) || !covers(rule.purpose, purpose)) continue;
    if (!rule.category.empty() && rule.category != category) continue;
    auto counts = [&](const CapSlot& s) {
      // Rolling window: everything after now - window counts. A slot stamped a moment after `now` counts
      // too: it was taken by a worker that read the clock later but reached the recipient's lock first.
      if (s.at_ms <= now_ms - rule.window_ms) return false;
      if (!covers(rule.purpose, s.purpose)) return false;
      if (!rule.category.empty() && s.category != rule.category) return false;
      return rule.scope == CapRule::Scope::channel ? s.channel == channel : names(rule.channels, s.channel);
    };
    int n = 0;
    for (const auto& s : slots) n += counts(s);
    if (n < rule.limit) continue;  // the common case: no allocation, no sort
    std::vector<int64_t> counted;
    counted.reserve(static_cast<size_t>(n));
    for (const auto& s : slots)
      if (counts(s)) counted.push_back(s.at_ms);
    // A slot frees up when enough of the oldest counted slots leave the window.
    std::sort(counted.begin(), counted.end());
    int64_t until = counted[counted.size() - static_cast<size_t>(rule.limit)] + rule.window_ms;
    if (!v.exceeded || until > v.until_ms) {
      v.exceeded = true;
      v.rule = &rule;
      v.counted = static_cast<int>(counted.size());
      v.until_ms = until;
    }
  }
  return v;
}

Decision decide(const DecisionInput& in) {
  Decision d;
  const MessageFacts& m = in.message;
  // Trace steps are built only when explaining; `make` runs only then.
  auto note = [&](auto make) {
    if (in.explain) d.trace.push_back(make());
  };
  if (in.explain) d.trace.reserve(m.channels.size() + 3);

  if (m.expires_at_ms && *m.expires_at_ms <= in.now_ms) {
    d.verdict = Verdict::suppress;
    d.reason = "expired";
    d.rule = "message.expires_at";
    d.detail = {{"reason", "expired"}, {"expires_at", format_rfc3339_ms(*m.expires_at_ms)}};
    note([&] { return TraceStep{"expiry", "", "drop", d.rule, d.detail}; });
    return d;
  }

  // A category the recipient opted out of stops its marketing on every channel.
  if (m.purpose == Purpose::marketing && !m.category.empty()) {
    if (const ConsentRecord* r = category_opt_out(in.state.consent, m.category)) {
      d.verdict = Verdict::suppress;
      d.reason = "category_opted_out";
      d.rule = "consent.category";
      d.detail = {{"reason", d.reason}, {"rule", d.rule}, {"category", std::string(m.category)}, {"source", r->source}};
      note([&] { return TraceStep{"consent", "", "drop", d.rule, d.detail}; });
      return d;
    }
  }

  // The channel choice (the trace's `route` step): the first channel with a usable, unsuppressed, consented
  // contact whose circuit is closed.
  Json skipped = Json::array();
  int64_t circuit_wait_until = 0;  // the earliest a circuit-open channel that could take the message reopens
  std::string circuit_channel;
  for (int i = std::max(0, in.from_index); i < static_cast<int>(m.channels.size()); ++i) {
    const std::string& name = m.channels[i];
    // `make` builds the trace step (only when explaining); the skip itself is always recorded.
    auto skip = [&](const std::string& reason, const std::string& rule, auto make) {
      note([&] {
        TraceStep step = make();
        step.result = "skip";
        return step;
      });
      Json s = {{"channel", name}, {"reason", reason}};
      if (!rule.empty()) s["rule"] = rule;
      skipped.push_back(std::move(s));
    };
    auto view = in.channels(name);
    if (!view) {
      skip("channel_not_configured", "",
           [&] { return TraceStep{"route", name, "", "", {{"reason", "channel_not_configured"}}}; });
      continue;
    }
    if (!view->available) {
      skip("channel_unavailable", "", [&] { return TraceStep{"route", name, "", "", {{"reason", "channel_unavailable"}}}; });
      continue;
    }
    auto contact = m.contact ? m.contact(view->contact_kind) : std::nullopt;
    if (!contact) {
      skip("no_contact", "", [&] {
        return TraceStep{"route", name, "", "", {{"reason", "no_contact"}, {"contact_kind", view->contact_kind}}};
      });
      continue;
    }
    auto sup = in.state.suppressed.find(*contact);
    if (sup != in.state.suppressed.end()) {
      skip("suppressed_contact", "suppression.contact", [&] {
        return TraceStep{"suppression", name, "", "suppression.contact",
                         {{"reason", sup->second.reason},
                          {"source", sup->second.source},
                          {"at", format_rfc3339_ms(sup->second.at_ms)}}};
      });
      continue;
    }
    const ConsentRecord* record = consent_record(in.state.consent, name, m.purpose);
    bool consented = (record ? record->state : in.config.consent.default_for(name, m.purpose)) == ConsentState::opted_in;
    auto consent_step = [&] {
      TraceStep step;
      consent_allows(in.state.consent, in.config.consent, name, m.purpose, step);
      return step;
    };
    if (!consented) {
      skip("no_consent", record ? "consent.recorded" : "consent.default", consent_step);
      continue;
    }
    note(consent_step);
    if (view->circuit_open_until_ms > 0) {
      // Checked last: a channel the message could never use is skipped for that reason, not this one.
      int64_t until = view->circuit_open_until_ms + static_cast<int64_t>(in.jitter * view->circuit_spread_ms);
      skip("circuit_open", "circuit_breaker." + name, [&] {
        return TraceStep{"route", name, "", "", {{"reason", "circuit_open"}, {"until", format_rfc3339_ms(until)}}};
      });
      if (circuit_channel.empty() || until < circuit_wait_until) {
        circuit_wait_until = until;
        circuit_channel = name;
      }
      continue;
    }
    d.channel_index = i;
    d.channel = name;
    d.contact = *contact;
    break;
  }
  if (d.channel.empty() && !circuit_channel.empty()) {
    // A provider outage is not the recipient's doing: wait for the channel, without using an attempt.
    bool expires_first = m.expires_at_ms && *m.expires_at_ms <= circuit_wait_until;
    d.verdict = expires_first ? Verdict::suppress : Verdict::defer;
    d.reason = expires_first ? "expired" : "circuit_open";
    d.rule = "circuit_breaker." + circuit_channel;
    d.until_ms = circuit_wait_until;
    d.detail = {{"reason", d.reason}, {"rule", d.rule}, {"channel", circuit_channel},
                {"until", format_rfc3339_ms(circuit_wait_until)}, {"skipped", skipped}};
    if (expires_first) d.detail["expires_first"] = true;
    return d;
  }
  if (d.channel.empty()) {
    d.verdict = Verdict::suppress;
    d.reason = "no_usable_channel";
    d.detail = {{"reason", "no_usable_channel"}, {"skipped", skipped}};
    return d;
  }

  auto quiet = quiet_hours(in.config.quiet_hours, d.channel, m.purpose, in.zone, in.now_ms, in.jitter);
  if (quiet.quiet) {
    d.rule = "quiet_hours." + quiet.rule->name;
    std::string until = format_local(quiet.until_ms, in.zone);
    bool expires_first = m.expires_at_ms && *m.expires_at_ms <= quiet.until_ms;
    if (quiet.rule->action == QuietHoursRule::Action::drop || expires_first) {
      d.verdict = Verdict::suppress;
      d.reason = expires_first ? "expires_in_quiet_hours" : "quiet_hours";
      d.detail = {{"reason", d.reason}, {"rule", d.rule}, {"channel", d.channel}, {"window_ends", until}};
      note([&] { return TraceStep{"quiet_hours", d.channel, "drop", d.rule, d.detail}; });
    } else {
      d.verdict = Verdict::defer;
      d.reason = "quiet_hours";
      d.until_ms = quiet.until_ms;
      d.detail = {{"reason", "quiet_hours"}, {"rule", d.rule}, {"channel", d.channel}, {"until", until}};
      note([&] { return TraceStep{"quiet_hours", d.channel, "defer", d.rule, d.detail}; });
    }
    if (!skipped.empty()) d.detail["skipped"] = skipped;
    return d;
  }
  note([&] { return TraceStep{"quiet_hours", d.channel, "pass", "", Json::object()}; });

  auto cap = check_caps(in.config.caps, in.state.slots, d.channel, m.purpose, m.category, in.now_ms);
  if (cap.exceeded) {
    d.rule = "caps." + cap.rule->name;
    d.reason = "frequency_cap";
    d.detail = {{"reason", "frequency_cap"},
                {"rule", d.rule},
                {"channel", d.channel},
                {"limit", cap.rule->limit},
                {"window", format_duration_ms(cap.rule->window_ms)},
                {"counted", cap.counted}};
    bool expires_first = m.expires_at_ms && *m.expires_at_ms <= cap.until_ms;
    if (cap.rule->on_exceed == CapRule::OnExceed::defer && !expires_first) {
      d.verdict = Verdict::defer;
      d.until_ms = cap.until_ms;
      d.detail["until"] = format_local(cap.until_ms, in.zone);
      note([&] { return TraceStep{"caps", d.channel, "defer", d.rule, d.detail}; });
    } else {
      d.verdict = Verdict::suppress;
      if (expires_first) d.detail["expires_first"] = true;
      note([&] { return TraceStep{"caps", d.channel, "drop", d.rule, d.detail}; });
    }
    if (!skipped.empty()) d.detail["skipped"] = skipped;
    return d;
  }
  note([&] { return TraceStep{"caps", d.channel, "pass", "", Json::object()}; });
  d.verdict = Verdict::send;
  if (!skipped.empty()) d.detail["skipped"] = skipped;
  return d;
}

}  // namespace tayori::policy
