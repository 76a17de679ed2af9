// Two-way communication in the core: what an answer to a message, a provider report (LINE
// follow/unfollow/postback/message, an SMS keyword or numbered reply, a delivery receipt), a one-click
// unsubscribe or an app's report changes in the store.
//
// The decisions are pure functions from the report (or answer) and what the applier looked up (the original message,
// the recipient owning a contact point, the open question of a phone number) to a
// store::Store::InboundWrites: consent records, suppressions to add or lift, timeline events, follow-ups to schedule
// or cancel. InboundApplier does the look-ups and hands the writes to the store in one transaction, which
// also de-duplicates redelivered provider reports (inbound_seen).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/time.hpp"
#include "config/config.hpp"
#include "core/message.hpp"
#include "links/links.hpp"
#include "plugin/channel.hpp"
#include "store/store.hpp"

namespace tayori::core {

// ---- Pure decisions ------------------------------------------------------------------------------

// The message a report or an answer concerns, as stored and as parsed.
struct Original {
  store::MessageRecord record;
  Message message;
};

// Reads a stored message back (nullopt when its payload is unreadable or erased).
std::optional<Original> read_original(const store::MessageRecord& record);

// What a decision produced: the writes, or why the report changes nothing (unknown option, unknown
// contact...). `ignored` reports are answered like applied ones (a provider must not retry them).
struct InboundDecision {
  std::optional<store::Store::InboundWrites> writes;
  std::string ignored;  // why nothing is written
};

// An answer to `original`'s response option `option`, received on `channel` `via` line_postback, link,
// app or sms_reply. Writes the `responded` event; cancels the message's scheduled follow-ups (a later
// answer overrides "remind me later"); schedules this option's follow_up; applies the YAML rule for the
// option (`opt_out: category` -> consent opt-out of the message's category; `purpose` -> of marketing on
// the channel), source "response".
InboundDecision decide_response(const Original& original, const std::string& option, const std::string& channel,
                                const std::string& via, const std::vector<config::ResponseRule>& rules, int64_t now_ms,
                                std::string text = "");

// The follow-up message of `option`: id "<orig>~follow_up~<option>", the original payload (or the named
// template instead of its content), send_at now + after, no follow_ups of its own (it may still ask).
std::optional<store::NewMessage> make_follow_up(const Original& original, const ResponseSpec& option, int64_t now_ms);

// One-click unsubscribe (RFC 8058) or its confirmation form: marketing on `channel` opted out, source
// list_unsubscribe, with an opted_out event on the message.
InboundDecision decide_unsubscribe(const Original& original, const std::string& channel, int64_t now_ms);

// What the applier looked up for one report of a channel's plugin.
struct InboundFacts {
  std::string channel;                // the channel it came through
  std::string plugin;                 // its plugin's name (line, sms_twilio): names the consent source
  std::optional<Original> original;   // by ref, provider message id, or the open question
  std::string option;                 // the option id a ref or a numbered reply resolved to
  // Every recipient whose profile has report.contact, the most recently updated first (empty when none):
  // a consent change reaches them all; a free-text reply without a question is recorded on the first.
  std::vector<std::string> recipient_ids;
  std::string refused;                // a ref that did not verify: why
};

InboundDecision decide_inbound(const plugin::ProviderReport& report, const InboundFacts& facts,
                               const std::vector<config::ResponseRule>& rules, int64_t now_ms);

// The option id a numbered reply ("2") picks from an open question's options (a JSON array of ids).
std::optional<std::string> option_for_number(const std::string& options_json, const std::string& number);

// The response options a delivery carries: each with a signed ref (LinkSigner, kind response) and, with
// a public URL, the link to GET /r/{ref}. Without a signer (no server.public_url) the options go without
// ref and url: they can then be answered only by a numbered SMS reply or POST /v1/inbound/app by id.
std::vector<plugin::ResponseOption> mint_responses(const Message& message, const std::string& channel,
                                                   const links::LinkSigner& links, int64_t expires_at_s);

// The content of a delivery of `message` on `channel` with its links tracked (links/tracking.hpp): each one
// rewritten to a signed /c/ link naming the message, the channel, the link's index and its target, valid
// until `expires_at_s` (after which it still redirects, recording nothing). Unchanged without a signer.
std::vector<std::pair<std::string, std::string>> track_content(std::vector<std::pair<std::string, std::string>> content,
                                                                const Message& message, const std::string& channel,
                                                                const links::LinkSigner& links, int64_t expires_at_s);

// The same content with its open signal, a signed open token naming the message and the channel, valid until
// `expires_at_s`: an e-mail's html loads it as a pixel at /o/ (links::with_open_pixel); content without html
// (a push notification cannot load an image) carries it as the field `open_ref`, which the app reports when the
// notification is opened (POST /v1/inbound/app). Unchanged without a signer.
std::vector<std::pair<std::string, std::string>> with_open_signal(std::vector<std::pair<std::string, std::string>> content,
                                                                  const Message& message, const std::string& channel,
                                                                  const links::LinkSigner& links, int64_t expires_at_s);

// A recipient's click on link `link` of `original` (sent on `channel`): a `clicked` event naming the channel,
// the link's index and its URL, and `first` when no click on this message was recorded before (only the first
// counts toward a message's stats; every click is in its history).
InboundDecision decide_click(const Original& original, const std::string& channel, const std::string& link,
                             const std::string& url, bool first, int64_t now_ms);

// An e-mail's open pixel loaded: an `opened` event {channel, first}.
InboundDecision decide_open(const Original& original, const std::string& channel, bool first, int64_t now_ms);

// ---- I/O ---------------------------------------------------------------------------------------

// Looks up what decisions need and writes what they decide. Thread-safe (the store is).
class InboundApplier {
 public:
  InboundApplier(store::Store& store, const Clock& clock, links::LinkSigner links,
                 std::vector<config::ResponseRule> rules);

  const links::LinkSigner& links() const { return links_; }

  // The reports one provider webhook call carried (Channel::inbound), in order. `done` gets how many were
  // applied, or the store's Error when it could not record them (the provider should retry: answer 503).
  void apply_reports(const std::string& channel, const std::string& plugin,
                     const std::vector<plugin::ProviderReport>& reports, std::function<void(tayori::Result<int>)> done);

  // What a person's action by id (app, link) came to: the event recorded, or why none was (gone: the message
  // was purged or erased; not_found: an option it does not offer, or an unknown message's click; unavailable:
  // the store could not record it), and the message when it is still known, whose locale words the answer page.
  struct Answer {
    tayori::Result<std::string> recorded;  // the event's type: "responded", "clicked", "opened", "opted_out"
    std::optional<Original> original;
  };
  void respond(const std::string& message_id, const std::string& option, const std::string& channel,
               const std::string& via, const std::function<void(Answer)>& done);
  void unsubscribe(const std::string& message_id, const std::string& channel, const std::function<void(Answer)>& done);
  // A tracked link's click (GET /c/{token}) or an open pixel's load (GET /o/{token}), a scanner's fetch
  // already set aside: a `clicked` (decide_click) or `opened` {channel, first} event.
  void react(const links::LinkClaims& claims, const std::function<void(Answer)>& done);

  // The facts for one provider report (public for tests).
  InboundFacts facts_for(const std::string& channel, const std::string& plugin, const plugin::ProviderReport& report);

 private:
  store::Store& store_;
  const Clock& clock_;
  links::LinkSigner links_;
  std::vector<config::ResponseRule> rules_;

  // Writes one person's action and answers `done` with `type` once it is committed, or the store's Error.
  void write_action(store::Store::InboundWrites writes, std::string type, std::optional<Original> original,
                    const std::function<void(Answer)>& done);
};

}  // namespace tayori::core
