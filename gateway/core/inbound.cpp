// Two-way in the core (inbound.hpp): the pure decision of what a provider report, an answer or an unsubscribe
// writes, the facts it needs read from the store, and the applier that hands the writes to the store's
// group commit. api/inbound_api.cpp calls in here with the reports a plugin normalised.
#include "core/inbound.hpp"

#include <algorithm>
#include <memory>

#include "common/json.hpp"
#include "core/stats.hpp"
#include "crypto/crypto.hpp"
#include "links/tracking.hpp"

namespace tayori::core {

namespace {

using Writes = store::Store::InboundWrites;

const ResponseSpec* find_option(const Message& m, const std::string& option) {
  for (const auto& r : m.responses)
    if (r.id == option) return &r;
  return nullptr;
}

const config::ResponseRule* find_rule(const std::vector<config::ResponseRule>& rules, const std::string& option) {
  for (const auto& r : rules)
    if (r.option == option) return &r;
  return nullptr;
}

InboundDecision ignored(std::string why) { return {std::nullopt, std::move(why)}; }

std::string channel_source(const std::string& channel) { return "channel." + channel; }

// Consent on `channel` for both purposes: a STOP or an unfollow withdraws the channel entirely (carriers
// block every later SMS after STOP, CTIA; LINE delivers nothing to a user who blocked the account), and
// START or a follow gives it back.
void channel_consent(Writes& w, const std::string& recipient_id, const std::string& channel, policy::ConsentState state,
                     const std::string& source, const std::string& evidence, int64_t at_ms) {
  for (Purpose p : {Purpose::marketing, Purpose::transactional})
    w.consent.push_back({recipient_id, {channel, p, state, source, evidence, at_ms}});
}

}  // namespace

std::optional<Original> read_original(const store::MessageRecord& record) {
  std::optional<Message> message = stored_message(record.payload);
  if (!message) return std::nullopt;
  return Original{record, std::move(*message)};
}

std::optional<store::NewMessage> make_follow_up(const Original& original, const ResponseSpec& option, int64_t now_ms) {
  if (!option.follow_up_after_ms) return std::nullopt;
  Json payload = parse_json_or_discarded(original.record.payload);
  if (!payload.is_object()) return std::nullopt;
  int64_t send_at = now_ms + *option.follow_up_after_ms;
  std::string id = original.message.id + "~follow_up~" + option.id;
  payload["id"] = id;
  payload["send_at"] = format_rfc3339_ms(send_at);
  if (!option.follow_up_template.empty()) {
    payload.erase("content");
    payload["template"] = option.follow_up_template;
  }
  // The reminder may ask again, but answering it schedules no reminder of its own: no endless chain.
  if (payload.contains("responses") && payload["responses"].is_array())
    for (auto& r : payload["responses"])
      if (r.is_object()) r.erase("follow_up");
  std::optional<int64_t> expires = original.message.expires_at_ms;
  if (expires && *expires <= send_at) return std::nullopt;  // it would be sent after it stops mattering
  store::NewMessage m;
  m.id = id;
  m.recipient_id = original.message.recipient.id;
  m.api_key = original.record.api_key;
  m.payload = canonical_json(payload);
  m.payload_hash = crypto::sha256_hex(m.payload);
  m.due_at_ms = send_at;
  m.send_at_ms = send_at;
  m.expires_at_ms = expires;
  m.events.push_back({"accepted", Json{{"follow_up_of", original.message.id}, {"option", option.id}}.dump()});
  m.events.push_back({"scheduled", Json{{"due_at", format_rfc3339_ms(send_at)}}.dump()});
  const Message& parent = original.message;
  add_counts(m.counts,
             {parent.category, option.follow_up_template.empty() ? parent.template_name : option.follow_up_template,
              parent.channels.empty() ? "" : parent.channels.front()},
             store::StatCounter::accepted, now_ms);
  return m;
}

InboundDecision decide_response(const Original& original, const std::string& option, const std::string& channel,
                                const std::string& via, const std::vector<config::ResponseRule>& rules, int64_t now_ms,
                                std::string text) {
  const Message& m = original.message;
  const ResponseSpec* spec = find_option(m, option);
  if (spec == nullptr) return ignored("message \"" + m.id + "\" offers no response option \"" + option + "\"");
  Writes w;
  Json detail = {{"option", option}, {"channel", channel}, {"via", via}};
  if (!text.empty()) detail["text"] = std::move(text);
  w.events.push_back({m.id, m.recipient.id, {"responded", detail.dump(), now_ms}});
  add_counts(w.counts, stat_subject(m, channel), store::StatCounter::responded, now_ms, option);
  w.cancel_follow_ups_of = m.id;
  if (auto follow_up = make_follow_up(original, *spec, now_ms))
    w.follow_ups.push_back({m.id, option, std::move(*follow_up)});
  if (const config::ResponseRule* rule = find_rule(rules, option)) {
    std::string evidence = "message " + m.id + " option " + option;
    if (rule->opt_out == "category" && !m.category.empty()) {
      w.consent.push_back({m.recipient.id,
                           {policy::category_scope(m.category), Purpose::marketing, policy::ConsentState::opted_out,
                            "response", evidence, now_ms}});
      w.events.push_back({m.id, m.recipient.id,
                          {"opted_out",
                           Json{{"scope", "category"}, {"category", m.category}, {"source", "response"}}.dump(),
                           now_ms}});
    } else if (rule->opt_out == "purpose" || (rule->opt_out == "category" && m.category.empty())) {
      // A message without a category: the nearest thing is its channel's marketing.
      w.consent.push_back({m.recipient.id,
                           {channel, Purpose::marketing, policy::ConsentState::opted_out, "response", evidence, now_ms}});
      w.events.push_back({m.id, m.recipient.id,
                          {"opted_out",
                           Json{{"scope", "purpose"}, {"channel", channel}, {"purpose", "marketing"},
                                {"source", "response"}}
                               .dump(),
                           now_ms}});
    }
  }
  return {std::move(w), ""};
}

InboundDecision decide_unsubscribe(const Original& original, const std::string& channel, int64_t now_ms) {
  const Message& m = original.message;
  Writes w;
  w.consent.push_back({m.recipient.id,
                       {channel, Purpose::marketing, policy::ConsentState::opted_out, "list_unsubscribe",
                        "message " + m.id, now_ms}});
  w.events.push_back({m.id, m.recipient.id,
                      {"opted_out",
                       Json{{"channel", channel}, {"purpose", "marketing"}, {"source", "list_unsubscribe"}}.dump(),
                       now_ms}});
  return {std::move(w), ""};
}

InboundDecision decide_click(const Original& original, const std::string& channel, const std::string& link,
                             const std::string& url, bool first, int64_t now_ms) {
  const Message& m = original.message;
  Writes w;
  Json detail{{"channel", channel}, {"link", std::stoi(link)}, {"url", url}, {"first", first}};
  w.events.push_back({m.id, m.recipient.id, {"clicked", detail.dump(), now_ms}});
  // Only a message's first click counts: the stats say how many messages were clicked, not how often.
  if (first) add_counts(w.counts, stat_subject(m, channel), store::StatCounter::clicked, now_ms);
  return {std::move(w), ""};
}

InboundDecision decide_open(const Original& original, const std::string& channel, bool first, int64_t now_ms) {
  const Message& m = original.message;
  Writes w;
  w.events.push_back({m.id, m.recipient.id, {"opened", Json{{"channel", channel}, {"first", first}}.dump(), now_ms}});
  if (first) add_counts(w.counts, stat_subject(m, channel), store::StatCounter::opened, now_ms);
  return {std::move(w), ""};
}

std::optional<std::string> option_for_number(const std::string& options_json, const std::string& number) {
  if (number.size() != 1 || number[0] < '1' || number[0] > '9') return std::nullopt;
  Json options = parse_json_or_discarded(options_json);
  size_t index = static_cast<size_t>(number[0] - '1');
  if (!options.is_array() || index >= options.size() || !options[index].is_string()) return std::nullopt;
  return options[index].get<std::string>();
}

InboundDecision decide_inbound(const plugin::ProviderReport& e, const InboundFacts& f,
                               const std::vector<config::ResponseRule>& rules, int64_t now_ms) {
  int64_t at = e.at_ms != 0 ? e.at_ms : now_ms;
  InboundDecision d;
  switch (e.kind) {
    case plugin::ReportKind::response:
    case plugin::ReportKind::reply: {
      if (!f.refused.empty()) return ignored(f.refused);
      bool answer = e.kind == plugin::ReportKind::response || !f.option.empty();
      if (answer && f.original && !f.option.empty()) {
        const char* via = e.kind == plugin::ReportKind::response ? "postback" : "numbered_reply";
        d = decide_response(*f.original, f.option, f.channel, via, rules, at, e.text);
        break;
      }
      if (e.kind == plugin::ReportKind::response) return ignored("a response that names no known message and option");
      // Free text: recorded as `replied`, on the latest message that asked this contact something, or on the
      // recipient alone.
      Json detail = {{"channel", f.channel}, {"text", e.text}};
      std::string message_id = f.original ? f.original->message.id : "";
      std::string recipient_id = f.original               ? f.original->message.recipient.id
                                 : f.recipient_ids.empty() ? std::string()
                                                           : f.recipient_ids.front();
      if (message_id.empty() && recipient_id.empty()) return ignored("a reply from a contact point no recipient has");
      Writes w;
      w.events.push_back({message_id, recipient_id, {"replied", detail.dump(), at}});
      d.writes = std::move(w);
      break;
    }
    case plugin::ReportKind::opt_in:
    case plugin::ReportKind::opt_out: {
      bool in = e.kind == plugin::ReportKind::opt_in;
      // A keyword (STOP, START) arrives as text; LINE's follow and unfollow carry none.
      std::string source = !e.text.empty() ? "sms_keyword" : f.plugin == "line" ? "line_follow" : f.plugin;
      Writes w;
      if (!in && e.deactivate_contact) {
        w.suppress.push_back({e.contact, "unfollow", channel_source(f.channel), at});
      } else if (!in && f.recipient_ids.empty() && !e.contact.empty()) {
        // A STOP from a number no profile has yet: the contact point itself is suppressed, so a profile that
        // later gives this number is not messaged. This channel's opt-in (START) lifts it.
        w.suppress.push_back({e.contact, "opted_out", channel_source(f.channel), at});
      }
      if (in && e.reactivate_contact) w.unsuppress.push_back({e.contact, "", channel_source(f.channel), 0});
      // Everyone who shares the contact point (a family's number) opted out through it, not only one of them.
      for (const auto& recipient_id : f.recipient_ids) {
        channel_consent(w, recipient_id, f.channel, in ? policy::ConsentState::opted_in : policy::ConsentState::opted_out,
                        source, e.text.empty() ? "inbound " + f.channel : "keyword " + e.text, at);
        Json detail = {{"channel", f.channel}, {"source", source}};
        w.events.push_back({"", recipient_id, {in ? "opted_in" : "opted_out", detail.dump(), at}});
      }
      if (w.consent.empty() && w.suppress.empty() && w.unsuppress.empty())
        return ignored("a consent change from a contact point no recipient has");
      d.writes = std::move(w);
      break;
    }
    case plugin::ReportKind::delivered:
    case plugin::ReportKind::failed: {
      if (!f.original) return ignored("a receipt for an unknown provider message id");
      const Message& m = f.original->message;
      bool ok = e.kind == plugin::ReportKind::delivered;
      Json detail = {{"channel", f.channel}, {"provider_message_id", e.provider_message_id}, {"receipt", true}};
      if (!ok && !e.reason.empty()) detail["reason"] = e.reason;
      Writes w;
      // The message stays delivered (the provider accepted it): a receipt adds what happened next.
      w.events.push_back({m.id, m.recipient.id, {ok ? "delivered" : "failed", detail.dump(), at}});
      add_counts(w.counts, stat_subject(m, f.channel),
                 ok ? store::StatCounter::receipt_delivered : store::StatCounter::receipt_failed, now_ms);
      if (!ok && e.deactivate_contact && !e.contact.empty()) {
        w.suppress.push_back({e.contact, e.reason.empty() ? "dead_contact" : e.reason, channel_source(f.channel), at});
        w.events.push_back({m.id, m.recipient.id,
                            {"contact_deactivated",
                             Json{{"channel", f.channel}, {"contact", e.contact}, {"reason", e.reason}}.dump(), at}});
      }
      d.writes = std::move(w);
      break;
    }
  }
  if (d.writes && !e.report_id.empty()) {
    d.writes->seen_source = channel_source(f.channel);
    d.writes->seen_report_id = e.report_id;
  }
  return d;
}

std::vector<plugin::ResponseOption> mint_responses(const Message& message, const std::string& channel,
                                                   const links::LinkSigner& links, int64_t expires_at_s) {
  std::vector<plugin::ResponseOption> out;
  for (const auto& r : message.responses) {
    plugin::ResponseOption o{r.id, r.label, "", ""};
    if (links.enabled()) {
      links::LinkClaims claims{links::LinkKind::response, message.id, channel, r.id, expires_at_s};
      o.ref = links.token(claims);
      o.url = links.url(claims.kind, o.ref);
    }
    out.push_back(std::move(o));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> track_content(std::vector<std::pair<std::string, std::string>> content,
                                                                const Message& message, const std::string& channel,
                                                                const links::LinkSigner& links, int64_t expires_at_s) {
  if (!links.enabled()) return content;
  auto tracked = links::track_clicks(
      content,
      [&](size_t index, const std::string& url) {
        return links.url(links::LinkClaims{links::LinkKind::click, message.id, channel, std::to_string(index),
                                           expires_at_s, url});
      },
      links.public_url());
  return std::move(tracked.fields);
}

std::vector<std::pair<std::string, std::string>> with_open_signal(std::vector<std::pair<std::string, std::string>> content,
                                                                   const Message& message, const std::string& channel,
                                                                   const links::LinkSigner& links, int64_t expires_at_s) {
  if (!links.enabled()) return content;
  const std::string token = links.token({links::LinkKind::open, message.id, channel, "", expires_at_s});
  const bool html = std::any_of(content.begin(), content.end(), [](const auto& f) { return f.first == "html"; });
  if (html) return links::with_open_pixel(std::move(content), links.url(links::LinkKind::open, token));
  content.emplace_back("open_ref", token);
  return content;
}

// ---- InboundApplier ----------------------------------------------------------------------------------

InboundApplier::InboundApplier(store::Store& store, const Clock& clock, links::LinkSigner links,
                               std::vector<config::ResponseRule> rules)
    : store_(store), clock_(clock), links_(std::move(links)), rules_(std::move(rules)) {}

InboundFacts InboundApplier::facts_for(const std::string& channel, const std::string& plugin,
                                       const plugin::ProviderReport& e) {
  InboundFacts f;
  f.channel = channel;
  f.plugin = plugin;
  auto load = [&](const std::optional<store::MessageRecord>& r) {
    if (r) f.original = read_original(*r);
  };
  switch (e.kind) {
    case plugin::ReportKind::response:
      if (!e.ref.empty()) {
        links::Verified v = links_.verify(e.ref, clock_.now_ms() / 1000);
        if (!v.ok() || v.claims.kind != links::LinkKind::response) {
          f.refused = std::string("a response ref that is ") + (v.ok() ? "not a response" : links::to_string(v.error));
          break;
        }
        load(store_.find(v.claims.message_id));
        f.option = v.claims.option;
      } else if (!e.option.empty() && !e.contact.empty()) {
        // No ref: the answer is to the contact point's open question, by number ("2") or by option id.
        if (auto q = store_.open_question(e.contact, channel)) {
          load(store_.find(q->message_id));
          f.option = option_for_number(q->options_json, e.option).value_or(e.option);
        }
      }
      break;
    case plugin::ReportKind::reply:
      if (auto q = store_.open_question(e.contact, channel)) {
        load(store_.find(q->message_id));
        if (!e.option.empty()) f.option = option_for_number(q->options_json, e.option).value_or("");
      }
      if (!f.original) f.recipient_ids = store_.recipients_by_contact(e.contact);
      break;
    case plugin::ReportKind::opt_in:
    case plugin::ReportKind::opt_out: f.recipient_ids = store_.recipients_by_contact(e.contact); break;
    case plugin::ReportKind::delivered:
    case plugin::ReportKind::failed: load(store_.find_by_provider_id(e.provider_message_id)); break;
  }
  return f;
}

void InboundApplier::apply_reports(const std::string& channel, const std::string& plugin,
                                   const std::vector<plugin::ProviderReport>& reports,
                                   std::function<void(tayori::Result<int>)> done) {
  std::vector<store::Store::InboundWrites> writes;
  int64_t now = clock_.now_ms();
  for (const auto& e : reports) {
    InboundDecision d = decide_inbound(e, facts_for(channel, plugin, e), rules_, now);
    if (d.writes) writes.push_back(std::move(*d.writes));
  }
  if (writes.empty()) return done(0);
  store_.apply_inbound(std::move(writes), now, std::move(done));
}

void InboundApplier::respond(const std::string& message_id, const std::string& option, const std::string& channel,
                             const std::string& via, const std::function<void(Answer)>& done) {
  auto record = store_.find(message_id);
  if (!record) return done({Error{ErrorCode::gone, "the message \"" + message_id + "\" is no longer known"}, {}});
  auto original = read_original(*record);
  if (!original)
    return done({Error{ErrorCode::gone, "the message \"" + message_id + "\" can no longer be answered"}, {}});
  std::string on = channel.empty() ? record->channel : channel;
  InboundDecision d = decide_response(*original, option, on, via, rules_, clock_.now_ms());
  if (!d.writes) return done({Error{ErrorCode::not_found, d.ignored}, original});
  write_action(std::move(*d.writes), "responded", std::move(original), done);
}

void InboundApplier::react(const links::LinkClaims& claims, const std::function<void(Answer)>& done) {
  auto record = store_.find(claims.message_id);
  if (!record)
    return done({Error{ErrorCode::not_found, "the message \"" + claims.message_id + "\" is no longer known"}, {}});
  auto original = read_original(*record);
  if (!original) return done({Error{ErrorCode::gone, "the message \"" + claims.message_id + "\" was erased"}, {}});
  const bool click = claims.kind == links::LinkKind::click;
  std::string type = click ? "clicked" : "opened";
  bool first = true;
  for (const auto& e : store_.events(claims.message_id))
    if (e.type == type) first = false;
  const int64_t now = clock_.now_ms();
  InboundDecision d = click ? decide_click(*original, claims.channel, claims.option, claims.target, first, now)
                            : decide_open(*original, claims.channel, first, now);
  write_action(std::move(*d.writes), std::move(type), std::move(original), done);
}

void InboundApplier::unsubscribe(const std::string& message_id, const std::string& channel,
                                 const std::function<void(Answer)>& done) {
  auto record = store_.find(message_id);
  if (!record) return done({Error{ErrorCode::gone, "the message \"" + message_id + "\" is no longer known"}, {}});
  auto original = read_original(*record);
  if (!original)
    return done({Error{ErrorCode::gone, "the message \"" + message_id + "\" can no longer be answered"}, {}});
  InboundDecision d = decide_unsubscribe(*original, channel, clock_.now_ms());
  write_action(std::move(*d.writes), "opted_out", std::move(original), done);
}

void InboundApplier::write_action(store::Store::InboundWrites writes, std::string type,
                                  std::optional<Original> original, const std::function<void(Answer)>& done) {
  std::vector<store::Store::InboundWrites> batch;
  batch.push_back(std::move(writes));
  store_.apply_inbound(
      std::move(batch), clock_.now_ms(),
      [done, type = std::move(type), original = std::move(original)](const tayori::Result<int>& applied) {
        if (!applied)
          return done(
              {Error{ErrorCode::unavailable, "the store could not record it: " + applied.error().message}, original});
        done({type, original});
      });
}

}  // namespace tayori::core
