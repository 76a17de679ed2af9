// The two-way routes: what comes back from recipients and providers.
//   POST /inbound/{plugin}/{channel}  a provider's webhook; the channel's plugin verifies its signature and
//                                     normalises it (plugin::Channel::inbound), core::InboundApplier applies it
//   GET  /r/{token}                   a response link (e-mail): a confirmation page with a button (no change)
//   POST /r/{token}                   the button: records the answer, shows a short page
//   GET  /u/{token}                   one-click unsubscribe: a confirmation page with a button (no change)
//   POST /u/{token}                   List-Unsubscribe=One-Click (RFC 8058 §3.2): opts out at once
//   GET  /c/{token}                   a tracked link: 302 to the URL the message had there, and a `clicked` event
//   GET  /o/{token}                   an e-mail's open pixel: a 1x1 GIF, and an `opened` event
//   HEAD /c/{token}, /o/{token}       the same answers, recording nothing
//   POST /v1/inbound/app              an app reports a push action tap by its signed ref (inbound.app_keys)
// A GET never changes anything: mail link scanners fetch every URL in a mail, so only the recipient's
// button press (a POST) may record an answer or an opt-out.
// Pages are in Japanese or English by the recipient's locale. A forged or malformed token answers 400, an
// expired one 410; neither changes anything.
#include <memory>

#include "api/api.hpp"
#include "api/http_util.hpp"
#include "links/tracking.hpp"

namespace tayori::api {

using core::Json;

namespace {

using text::html_escape;

bool japanese(const std::string& locale) { return locale.rfind("ja", 0) == 0; }

// A page in the recipient's language. Links are personal: never cached, never indexed, no referrer
// leaking the token.
HttpResponse page(int status, const std::string& locale, std::string_view title_ja, std::string_view text_ja,
                  std::string_view title_en, std::string_view text_en, const std::string& extra_html = "") {
  bool ja = japanese(locale);
  std::string title = html_escape(ja ? title_ja : title_en);
  HttpResponse r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("X-Robots-Tag", "noindex");
  r.body = std::string("<!doctype html>\n<html lang=\"") + (ja ? "ja" : "en") +
           "\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>" + title +
           "</title></head><body><h1>" + title + "</h1><p>" + html_escape(ja ? text_ja : text_en) + "</p>" +
           extra_html + "</body></html>\n";
  return r;
}

HttpResponse bad_link(links::LinkError error, const std::string& locale = "") {
  if (error == links::LinkError::expired)
    return page(410, locale, "リンクの有効期限切れ", "このリンクは有効期限が切れています。", "Link expired",
                "This link has expired.");
  return page(400, locale, "無効なリンク", "このリンクは無効です。", "Invalid link", "This link is not valid.");
}

// The token after the route's prefix ("/r/", "/u/"); tokens are base64url and '.', never encoded.
std::string token_of(const HttpRequest& request) { return percent_decode(std::string_view(request.path).substr(3)); }

// RFC 8058 §3.1: the POST body carries "List-Unsubscribe=One-Click", form-urlencoded or multipart/form-data.
bool one_click_body(const HttpRequest& request) {
  std::string_view type = request.header("content-type");
  if (has_media_type(type, "multipart/form-data"))
    return multipart_form_field(type, request.body, "List-Unsubscribe") == "One-Click";
  for (const auto& [k, v] : query_params(request.body))
    if (k == "List-Unsubscribe" && v == "One-Click") return true;
  return false;
}

// A page asking the recipient to confirm with a button that POSTs `fields` (name, value) to the same URL.
HttpResponse confirmation(const std::string& locale, std::string_view title_ja, std::string_view text_ja,
                          std::string_view title_en, std::string_view text_en, std::string_view button_ja,
                          std::string_view button_en,
                          const std::vector<std::pair<std::string, std::string>>& fields = {}) {
  bool ja = japanese(locale);
  std::string form = "<form method=\"post\">";
  for (const auto& [name, value] : fields)
    form += "<input type=\"hidden\" name=\"" + html_escape(name) + "\" value=\"" + html_escape(value) + "\">";
  form += "<button type=\"submit\">" + html_escape(ja ? button_ja : button_en) + "</button></form>";
  return page(200, locale, title_ja, text_ja, title_en, text_en, form);
}

}  // namespace

std::string Api::locale_of(const core::Original& original) const {
  if (!original.message.recipient.locale.empty()) return original.message.recipient.locale;
  auto profile = deps_.store.recipient(original.message.recipient.id);
  return profile && !profile->erased ? profile->locale : std::string();
}

std::string Api::locale_of_message(const std::string& message_id) const {
  if (auto record = deps_.store.find(message_id))
    if (auto original = core::read_original(*record)) return locale_of(*original);
  return "";
}

void Api::inbound_webhook(const HttpRequest& request, const Responder& respond) {
  std::string_view rest = std::string_view(request.path).substr(std::string_view("/inbound/").size());
  size_t slash = rest.find('/');
  std::string plugin_name = percent_decode(rest.substr(0, slash));
  std::string channel_name = slash == std::string_view::npos ? "" : percent_decode(rest.substr(slash + 1));
  plugin::Channel* channel = deps_.channels.find(channel_name);
  // The plugin in the path must be the channel's: a LINE webhook must not be verified by another plugin.
  if (channel == nullptr || plugin_name != channel->library().descriptor().name)
    return respond(problem(404, "Not Found",
                           "no channel \"" + channel_name + "\" of plugin \"" + plugin_name + "\" takes inbound calls"));
  plugin::InboundRequest in;
  in.method = request.method;
  // The URL the provider called, as it signed it (Twilio): the public base URL and the target as received.
  // A plugin that signs over it never runs without public_url (plugin/registry.cpp refuses that channel);
  // for the others the Host header is a best guess they do not verify.
  std::string base = inbound_->links().public_url();
  if (base.empty()) base = "http://" + std::string(request.header("host"));
  in.url = base + request.target;
  in.query = request.query;
  in.headers = request.headers;
  in.body = request.body;
  std::vector<plugin::ProviderReport> reports;
  plugin::InboundAnswer answer;
  bool accepted = channel->inbound(in, reports, answer);
  auto reply = [answer] {
    HttpResponse r;
    r.status = answer.status;
    r.content_type = answer.content_type;
    r.body = answer.body;
    return r;
  };
  if (!accepted) return respond(reply());  // refused (bad signature...): nothing is applied
  inbound_->apply_reports(channel_name, plugin_name, reports, [respond, reply](const Result<int>& applied) {
    // A 5xx makes the provider redeliver; de-duplication (inbound_seen) keeps a redelivery from applying twice.
    if (!applied) return respond(store_unavailable("the provider reports", applied.error().message));
    respond(reply());
  });
}

void Api::response_link(const HttpRequest& request, const Responder& respond) {
  links::Verified v = inbound_->links().verify(token_of(request), deps_.clock.now_ms() / 1000);
  if (!v.ok()) return respond(bad_link(v.error));
  if (v.claims.kind != links::LinkKind::response) return respond(bad_link(links::LinkError::malformed));
  if (request.method == "GET")
    return respond(confirmation(locale_of_message(v.claims.message_id), "ご回答", "この回答を送信しますか?",
                                "Your answer", "Send this answer?", "回答する", "Send"));
  inbound_->respond(v.claims.message_id, v.claims.option, v.claims.channel, "link",
                    [this, respond](const core::InboundApplier::Answer& a) {
                      std::string locale = a.original ? locale_of(*a.original) : "";
                      if (a.recorded)
                        return respond(page(200, locale, "ご回答ありがとうございます", "回答を受け付けました。",
                                            "Thank you", "Your answer has been recorded."));
                      if (a.recorded.error().code == ErrorCode::unavailable)
                        return respond(store_unavailable("the response"));
                      respond(page(status_of(a.recorded.error().code), locale, "受け付けできません",
                                   "この回答は受け付けできませんでした。", "Not recorded",
                                   "This answer could not be recorded."));
                    });
}

void Api::unsubscribe_link(const HttpRequest& request, const Responder& respond) {
  links::Verified v = inbound_->links().verify(token_of(request), deps_.clock.now_ms() / 1000);
  if (!v.ok()) return respond(bad_link(v.error));
  if (v.claims.kind != links::LinkKind::unsubscribe) return respond(bad_link(links::LinkError::malformed));
  if (request.method == "GET") {
    // The button POSTs the RFC 8058 body.
    return respond(confirmation(locale_of_message(v.claims.message_id), "配信停止",
                                "このチャネルでのお知らせの配信を停止しますか?", "Unsubscribe",
                                "Stop receiving marketing messages on this channel?", "配信を停止する", "Unsubscribe",
                                {{"List-Unsubscribe", "One-Click"}}));
  }
  if (!one_click_body(request))
    return respond(problem(400, "Bad Request", "send the body List-Unsubscribe=One-Click (RFC 8058)",
                           {{"/List-Unsubscribe", "must be One-Click"}}));
  inbound_->unsubscribe(v.claims.message_id, v.claims.channel, [this, respond](const core::InboundApplier::Answer& a) {
    std::string locale = a.original ? locale_of(*a.original) : "";
    if (a.recorded)
      return respond(page(200, locale, "配信を停止しました", "今後このチャネルでお知らせは届きません。",
                          "Unsubscribed", "You will no longer receive marketing messages on this channel."));
    if (a.recorded.error().code == ErrorCode::unavailable) return respond(store_unavailable("the opt-out"));
    respond(page(status_of(a.recorded.error().code), locale, "受け付けできません",
                 "配信停止を受け付けできませんでした。", "Not recorded", "The opt-out could not be recorded."));
  });
}

// The recipient always gets what the link is for, even when nothing can be recorded: a tracked link must
// never be a broken one, nor a pixel a broken image. What is recorded is a person's click or open: not a
// HEAD, not a fetch by a mail scanner or a link preview (links::is_link_scanner), not an expired link (its MAC
// still proves it was in a message of ours), and not while the gateway shuts down.
void Api::reaction_link(const HttpRequest& request, links::LinkKind kind, const Responder& respond) {
  links::Verified v = inbound_->links().verify(token_of(request), deps_.clock.now_ms() / 1000);
  const bool ours = v.ok() || v.error == links::LinkError::expired;
  if (!ours) return respond(bad_link(v.error));
  const links::LinkClaims& c = v.claims;
  if (c.kind != kind || (kind == links::LinkKind::click && !links::is_web_url(c.target)))
    return respond(bad_link(links::LinkError::malformed));
  HttpResponse answer;
  if (kind == links::LinkKind::click) {
    answer.status = 302;
    answer.headers.emplace_back("Location", c.target);
  } else {
    // The smallest transparent GIF (GIF89a, 1x1, one transparent colour): 43 bytes.
    static const std::string kPixel("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\x21\xf9\x04\x01\x00"
                                    "\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b",
                                    43);
    answer.content_type = "image/gif";
    if (request.method != "HEAD") answer.body = kPixel;
  }
  answer.headers.emplace_back("Cache-Control", "no-store");  // every click and open comes back here
  answer.headers.emplace_back("Referrer-Policy", "no-referrer");  // the token stays ours
  if (request.method == "HEAD" || !v.ok() || draining_ || links::is_link_scanner(request.header("user-agent")))
    return respond(std::move(answer));
  inbound_->react(c, [respond, answer](const core::InboundApplier::Answer&) { respond(answer); });
}

// POST /v1/inbound/app {"ref": "<signed ref>"}: an action's ref (the answer it stands for) or the push's
// open_ref (the notification was opened). Only a ref, signed for one message (and option), says what the app
// may report: an app key ships inside the app, so a bare message id would let anyone holding it answer for
// any recipient.
void Api::app_inbound(const HttpRequest& request, const Responder& respond) {
  const Key* key = find_key(request, app_keys_);
  if (key == nullptr) return respond(key_missing(true));
  auto body = json_body(request, respond);
  if (!body) return;
  std::vector<std::pair<std::string, std::string>> errors;
  links::LinkClaims claims;
  if (!body->is_object()) {
    errors.emplace_back("", "must be an object {ref}");
  } else {
    for (auto it = body->begin(); it != body->end(); ++it) {
      if (it.key() == "message_id" || it.key() == "option")
        errors.emplace_back("/" + it.key(), "is not accepted: send ref, the signed ref the push carried");
      else if (it.key() != "ref")
        errors.emplace_back("/" + it.key(), "is not a known field (ref)");
    }
    Json ref = body->value("ref", Json());
    if (ref.is_null()) {
      errors.emplace_back("/ref", "is required: the signed ref of the push action, or its open_ref");
    } else if (!ref.is_string() || ref.get<std::string>().empty()) {
      errors.emplace_back("/ref", "must be a non-empty string");
    } else {
      links::Verified v = inbound_->links().verify(ref.get<std::string>(), deps_.clock.now_ms() / 1000);
      if (v.error == links::LinkError::expired)
        return respond(problem(410, "Gone", "the ref has expired", {{"/ref", "has expired"}}));
      // An action's ref answers the message; the push's open_ref (core::with_open_signal) says it was opened.
      const bool known_kind = v.claims.kind == links::LinkKind::response || v.claims.kind == links::LinkKind::open;
      if (!v.ok() || !known_kind)
        errors.emplace_back("/ref", std::string("is not a valid response or open ref (") +
                                        (v.ok() ? "neither" : links::to_string(v.error)) + ")");
      claims = v.claims;
    }
  }
  if (!errors.empty()) return respond(problem(400, "Bad Request", "the inbound report is invalid", errors));
  const std::string message_id = claims.message_id;
  if (claims.kind == links::LinkKind::open) {
    return inbound_->react(claims, [respond, message_id](const core::InboundApplier::Answer& a) {
      if (a.recorded)
        return respond(json_response(200, {{"message_id", message_id}, {"event", "opened"}, {"recorded", true}}));
      respond(error_problem(a.recorded.error(), "the open"));
    });
  }
  const std::string option = claims.option;
  inbound_->respond(
      message_id, option, claims.channel, "app", [respond, message_id, option](const core::InboundApplier::Answer& a) {
        if (a.recorded)
          return respond(json_response(200, {{"message_id", message_id}, {"option", option}, {"recorded", true}}));
        respond(error_problem(a.recorded.error(), "the response"));
      });
}

}  // namespace tayori::api
