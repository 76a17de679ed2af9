// email_smtp — email by SMTP submission (docs/providers.md "Email"), sans-I/O: build() turns a delivery into one
// TAYORI_REQUEST_SMTP request carrying the whole RFC 5322 message (mime.hpp), the host's transport submits
// it, and classify() reads the last SMTP reply code.
//
// One recipient per request, so every reply is that recipient's verdict (the transport ends a transaction
// at the first refused RCPT). The Message-ID is derived from the delivery id: a retried delivery carries
// the same one, so a receiver (or a human) can recognise a duplicate after an ambiguous timeout.
#include <cstdint>
#include <optional>
#include <string>
#include <tayori/plugin.hpp>
#include <tayori/provider_helpers.hpp>
#include <tayori/text.hpp>

#include "mime.hpp"

namespace {

using tayori::sdk::Delivery;
using tayori::sdk::Error;
using tayori::sdk::Outcome;
namespace email = tayori::email;

struct SmtpUrl {
  bool implicit_tls = false;  // smtps://
  std::string host;           // without brackets for IPv6
};

SmtpUrl parse_url(const std::string& url) {
  SmtpUrl u;
  std::string_view rest;
  if (url.rfind("smtp://", 0) == 0) {
    rest = std::string_view(url).substr(7);
  } else if (url.rfind("smtps://", 0) == 0) {
    u.implicit_tls = true;
    rest = std::string_view(url).substr(8);
  } else {
    throw Error("url: must be smtp://host:587 (STARTTLS, required) or smtps://host:465 (implicit TLS), got \"" + url +
                "\"");
  }
  std::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.find('@') != std::string_view::npos)
    throw Error("url: must not carry credentials: use username and password_env");
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) throw Error("url: unterminated IPv6 address in \"" + url + "\"");
    u.host = std::string(authority.substr(1, close - 1));
  } else {
    u.host = std::string(authority.substr(0, authority.find(':')));
  }
  if (u.host.empty()) throw Error("url: has no host: \"" + url + "\"");
  return u;
}

using tayori::text::html_escape;


// A configured mailto: target for List-Unsubscribe, from "unsub@example.com" or "mailto:unsub@example.com".
std::string mailto_target(const std::string& value) {
  std::string address = value.rfind("mailto:", 0) == 0 ? value.substr(7) : value;
  std::string query;
  if (size_t q = address.find('?'); q != std::string::npos) {
    query = address.substr(q);
    address.resize(q);
  }
  if (!email::is_address(address) || query.find_first_of(" \t\r\n<>") != std::string::npos)
    throw Error("unsubscribe_mailto: \"" + value + "\" is not an address or mailto: URI");
  return "mailto:" + address + query;
}

// One reply line's parts: "550 5.1.1 <x@example.jp>: user unknown" → 550, "5.1.1", the text after the codes.
struct Reply {
  int klass = 0, subject = 0, detail = 0;  // RFC 3463 enhanced status code, 0 when absent
  std::string text;                          // without the reply code
};

Reply parse_reply(std::string_view body) {
  // A multi-line reply ("550-…\r\n550 …") ends with its last line, which carries the same codes.
  while (!body.empty() && (body.back() == '\r' || body.back() == '\n' || body.back() == ' ')) body.remove_suffix(1);
  if (size_t nl = body.rfind('\n'); nl != std::string_view::npos) body.remove_prefix(nl + 1);
  if (body.size() >= 4 && (body[3] == ' ' || body[3] == '-')) body.remove_prefix(4);
  Reply r;
  r.text = std::string(body);
  // RFC 3463 §2: class "." subject "." detail, class 2/4/5, subject and detail 1–3 digits.
  int parts[3] = {0, 0, 0};
  size_t i = 0;
  for (int k = 0; k < 3; ++k) {
    size_t start = i;
    int v = 0;
    while (i < body.size() && body[i] >= '0' && body[i] <= '9' && i - start < 3) v = v * 10 + (body[i++] - '0');
    if (i == start || (k < 2 && (i >= body.size() || body[i] != '.'))) return r;
    parts[k] = v;
    if (k < 2) ++i;
  }
  if ((i < body.size() && body[i] != ' ') || (parts[0] != 2 && parts[0] != 4 && parts[0] != 5)) return r;
  r.klass = parts[0];
  r.subject = parts[1];
  r.detail = parts[2];
  return r;
}

// Whether a permanent refusal means the address itself is dead (a hard bounce), so the host suppresses it.
// With an RFC 3463 code: X.1.1 bad mailbox, X.1.2 bad destination system, X.1.3 bad mailbox syntax, X.1.6
// mailbox moved, X.1.10 null MX (RFC 7505) -- but not X.1.7/X.1.8, which are about our sender address,
// nor X.2.x (mailbox full or disabled for now), X.3.x/X.6.x (size, content) or X.7.x (policy: spam,
// DMARC). Without one, the RFC 5321 §4.2.2 basic codes 550 (mailbox unavailable), 551 (user not local) and
// 553 (mailbox name not allowed).
// `step` is the transport's error text, which names the refused command after libcurl ("RCPT failed: 550
// (server: …)", "MAIL failed: 553"): a refused MAIL FROM is about our sender and a refused DATA about the
// content, never the recipient's address. When it names no step, the reply alone decides.
bool recipient_is_dead(int code, const Reply& reply, std::string_view step) {
  if (step.rfind("MAIL", 0) == 0 || step.rfind("DATA", 0) == 0) return false;
  if (reply.klass == 5)
    return reply.subject == 1 &&
           (reply.detail == 1 || reply.detail == 2 || reply.detail == 3 || reply.detail == 6 || reply.detail == 10);
  return code == 550 || code == 551 || code == 553;
}

class EmailSmtp {
 public:
  EmailSmtp(const tayori::sdk::Host& host, const tayori::sdk::Settings& settings)
      : host_(host),
        url_(settings.get("url")),
        from_(email::parse_mailbox(settings.get("from"), "from")),
        username_(settings.find("username").value_or("")),
        password_(settings.find("password").value_or("")),
        allow_plaintext_(settings.get_bool("allow_plaintext")),
        require_unsubscribe_(settings.get_bool("require_unsubscribe")) {
    SmtpUrl u = parse_url(url_);
    if (allow_plaintext_ && u.implicit_tls)
      throw Error("allow_plaintext: has no meaning with smtps:// (implicit TLS); remove it");
    if (allow_plaintext_ && !tayori::sdk::is_loopback_host(u.host))
      throw Error("allow_plaintext: only for a relay on loopback (127.0.0.1, ::1, localhost), not \"" + u.host +
                  "\": mail and credentials would cross the network unencrypted");
    if (username_.empty() != password_.empty())
      throw Error("username, password: give both (SMTP AUTH) or neither");
    if (auto r = settings.find("reply_to"); r && !r->empty()) reply_to_ = email::parse_mailbox(*r, "reply_to");
    if (auto m = settings.find("unsubscribe_mailto"); m && !m->empty()) mailto_ = mailto_target(*m);
    domain_ = settings.find("message_id_domain").value_or(std::string(email::domain_of(from_.address)));
    if (!email::is_domain(domain_)) throw Error("message_id_domain: \"" + domain_ + "\" is not a domain name");
  }

  void build(const Delivery& d, tayori::sdk::RequestSink& sink) {
    email::Message m;
    m.from = from_;
    m.reply_to = reply_to_;
    if (!email::is_address(d.contact()))
      throw Error("contact: \"" + std::string(d.contact()) + "\" is not an email address");
    m.to = std::string(d.contact());
    auto subject = d.content("subject");
    if (!subject || subject->empty()) throw Error("subject: an email needs content \"subject\"");
    m.subject = std::string(*subject);
    if (auto t = d.content("text"); t && !t->empty()) m.text = std::string(*t);
    if (auto h = d.content("html"); h && !h->empty()) m.html = std::string(*h);
    if (!m.text && !m.html) throw Error("text, html: an email needs content \"text\" or \"html\" (or both)");
    add_response_links(d, m);
    m.date_ms = host_.now_ms();
    m.message_id = email::message_id(d.delivery_id(), domain_);
    m.boundary_seed = std::string(d.delivery_id());
    if (d.purpose() == TAYORI_PURPOSE_MARKETING) add_unsubscribe(d, m);

    tayori::sdk::Request r;
    r.kind = TAYORI_REQUEST_SMTP;
    r.method.clear();
    r.url = url_;
    r.body = email::build_message(m);
    r.mail_from = from_.address;
    r.mail_rcpt = {m.to};
    r.username = username_;
    r.password = password_;
    r.allow_plaintext = allow_plaintext_;
    sink.add(r);
  }

  Outcome classify(const Delivery& d, const tayori::sdk::Response& r) {
    if (r.transport_failed()) return Outcome::retry("smtp.transport: " + std::string(r.transport_error_text()));
    const int code = r.status();
    if (code >= 200 && code < 300) return Outcome::delivered(email::message_id(d.delivery_id(), domain_));
    if (code == 0) return Outcome::retry("smtp.no_reply");
    const Reply reply = parse_reply(r.body());
    const std::string reason = "smtp." + std::to_string(code) + (reply.text.empty() ? "" : ": " + reply.text);
    // RFC 4954 §6: 535 bad credentials, 534/538 mechanism or encryption required -- configuration, not the
    // recipient's fault; retrying with the same settings cannot succeed.
    if (code == 534 || code == 535 || code == 538) return Outcome::permanent(reason);
    if (code >= 500 && code < 600)
      return Outcome::permanent(reason, recipient_is_dead(code, reply, r.transport_error_text()));
    return Outcome::retry(reason);  // 4xx (RFC 5321 §4.2.1: transient), or a reply no transaction ends with
  }

 private:
  // The response options as a block of links after the body, one per option, in each part the message
  // has: "label: url" lines in text/plain, <a> links in text/html (before </body> when there is one). An
  // option's url (/r/<ref>) opens a page whose button records the answer, so any mail client can answer.
  void add_response_links(const Delivery& d, email::Message& m) const {
    auto options = d.responses();
    if (options.empty()) return;
    std::string text = "\n\n", html = "\n<p class=\"tayori-responses\">";
    for (size_t i = 0; i < options.size(); ++i) {
      const auto& o = options[i];
      if (o.url.empty())
        throw Error("responses[" + std::to_string(i) + "].url: an email answers by link, and the host gave none: "
                    "configure server.public_url");
      text += std::string(o.label) + ": " + std::string(o.url) + "\n";
      html += std::string(i == 0 ? "" : " | ") + "<a href=\"" + html_escape(o.url) + "\">" + html_escape(o.label) +
              "</a>";
    }
    html += "</p>\n";
    if (m.text) *m.text += text;
    if (m.html) {
      size_t body_end = m.html->rfind("</body>");
      if (body_end == std::string::npos) body_end = m.html->rfind("</BODY>");
      if (body_end == std::string::npos)
        *m.html += html;
      else
        m.html->insert(body_end, html);
    }
  }

  // RFC 8058 one-click unsubscribe for marketing mail; transactional mail carries no List-Unsubscribe.
  void add_unsubscribe(const Delivery& d, email::Message& m) const {
    std::string url(d.unsubscribe_url());
    if (!url.empty()) {
      m.list_unsubscribe.push_back(url);
      m.one_click_unsubscribe = true;
    } else if (require_unsubscribe_) {
      // Gmail's and Yahoo's bulk-sender rules (2024) want one-click unsubscribe on marketing mail; without
      // it the mail is likely junked and the sender's reputation suffers for every later message.
      throw Error("unsubscribe_url: marketing mail needs a one-click unsubscribe link (RFC 8058), and the host "
                  "gave none: configure server.public_url, or set require_unsubscribe: false");
    } else {
      host_.log(TAYORI_LOG_WARN, "marketing mail without a one-click unsubscribe link (no server.public_url); "
                                 "bulk receivers such as Gmail and Yahoo may reject or junk it");
    }
    if (!mailto_.empty()) m.list_unsubscribe.push_back(mailto_);
  }

  tayori::sdk::Host host_;
  std::string url_;
  email::Mailbox from_;
  std::optional<email::Mailbox> reply_to_;
  std::string username_;
  std::string password_;
  bool allow_plaintext_;
  bool require_unsubscribe_;
  std::string mailto_;
  std::string domain_;
};

const tayori_setting_spec kSettings[] = {
    {"url", TAYORI_SETTING_URL, 1, nullptr, "smtp://host:587 (STARTTLS required) or smtps://host:465"},
    {"from", TAYORI_SETTING_STRING, 1, nullptr, "sender, e.g. \"Tayori <news@example.com>\""},
    {"reply_to", TAYORI_SETTING_STRING, 0, nullptr, "Reply-To address (optional)"},
    {"username", TAYORI_SETTING_STRING, 0, nullptr, "SMTP AUTH user (with password_env)"},
    {"password", TAYORI_SETTING_SECRET, 0, nullptr, "SMTP AUTH password (YAML: password_env)"},
    {"allow_plaintext", TAYORI_SETTING_BOOL, 0, "false", "smtp:// without STARTTLS: loopback relays only"},
    {"message_id_domain", TAYORI_SETTING_STRING, 0, nullptr, "right-hand side of Message-IDs (default: from's domain)"},
    {"unsubscribe_mailto", TAYORI_SETTING_STRING, 0, nullptr, "extra mailto: List-Unsubscribe target (marketing)"},
    {"require_unsubscribe", TAYORI_SETTING_BOOL, 0, "true", "refuse marketing mail without a one-click link"},
};

}  // namespace

TAYORI_PLUGIN(EmailSmtp, "email_smtp", "0.1.0", "Email by SMTP submission (STARTTLS or implicit TLS)", "email",
              kSettings, sizeof kSettings / sizeof kSettings[0])
