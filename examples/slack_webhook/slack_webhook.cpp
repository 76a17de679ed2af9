// slack_webhook — a Tayori channel that posts each delivery into a Slack channel through an incoming webhook
// (Slack: "Sending messages using incoming webhooks"), mentioning the recipient by their Slack member id so
// that Slack notifies them. Sans-I/O: the gateway sends, retries with its backoff and keeps the channel's
// rate limit (Slack allows about one message per second per webhook: set `rate_limit: 1/s`).
//
// The webhook URL is the credential (whoever holds it can post), hence a SECRET setting. Incoming webhooks
// take no idempotency key: a request that timed out after Slack accepted it is posted again on retry.
#include <tayori/plugin.hpp>
#include <tayori/provider_helpers.hpp>

#include <string>
#include <string_view>

namespace {

using tayori::sdk::Delivery;
using tayori::sdk::Error;
using tayori::sdk::json_quote;
using tayori::sdk::Outcome;

constexpr size_t kMaxHeaderChars = 150;    // Block Kit: a header block's plain_text, at most 150 characters
constexpr size_t kMaxSectionChars = 3000;  // Block Kit: a section block's text, at most 3000 characters

// Slack reads '&', '<' and '>' as control characters in message text (Slack: "Formatting text for app
// surfaces", escaping): escaped, the content cannot ping <!channel> or forge a link or a mention.
std::string escape_mrkdwn(std::string_view text) {
  std::string out;
  for (char c : text) out += c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : std::string(1, c);
  return out;
}

// A member id as Slack shows it (U… for a user, W… for an Enterprise Grid user): upper-case letters and digits
// only. Checked because it goes inside <@…> unescaped.
bool is_member_id(std::string_view id) {
  if (id.size() < 2 || (id[0] != 'U' && id[0] != 'W')) return false;
  return id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == std::string_view::npos;
}

// Slack's error answers are short snake_case words in a text/plain body ("channel_is_archived"); anything else
// (a proxy's HTML page) is named by its status instead, so reasons stay a small, stable set to alert on.
std::string error_name(std::string_view body, int status) {
  const bool word = !body.empty() && body.size() <= 64 &&
                    body.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string_view::npos;
  return word ? std::string(body) : "http_" + std::to_string(status);
}

class SlackWebhook {
 public:
  SlackWebhook(const tayori::sdk::Host& host, const tayori::sdk::Settings& settings)
      : host_(host), url_(settings.get("webhook_url")) {
    tayori::sdk::require_https_or_loopback("webhook_url", url_);
  }

  void build(const Delivery& d, tayori::sdk::RequestSink& sink) {
    const auto text = d.content("text");
    if (!text || text->empty()) throw Error("content: slack_webhook needs a non-empty text field");
    if (!is_member_id(d.contact())) throw Error("contact: not a Slack member id (U… or W…)");
    const std::string message = "<@" + std::string(d.contact()) + "> " + escape_mrkdwn(*text);
    tayori::sdk::Request r;
    r.url = url_;
    r.headers = {{"Content-Type", "application/json; charset=utf-8"}};
    r.body = "{\"text\":" + json_quote(message);
    // With a title, Block Kit lays the message out: a header, then the text as a mrkdwn section. `text` stays
    // as it is, for notifications and clients that show no blocks.
    if (const auto title = d.content("title"); title && !title->empty()) {
      if (tayori::sdk::utf8_code_points(*title) > kMaxHeaderChars)
        throw Error("content: title is longer than a Slack header block's 150 characters");
      if (tayori::sdk::utf8_code_points(message) > kMaxSectionChars)
        throw Error("content: text is longer than a Slack section block's 3000 characters");
      r.body += ",\"blocks\":[{\"type\":\"header\",\"text\":{\"type\":\"plain_text\",\"text\":" + json_quote(*title) +
                "}},{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":" + json_quote(message) + "}}]";
    }
    r.body += "}";
    sink.add(r);
  }

  // Slack answers 200 "ok"; its errors are a status with a word in the body (README.md lists them).
  Outcome classify(const Delivery&, const tayori::sdk::Response& r) {
    if (r.transport_failed()) return Outcome::retry("slack.transport");
    const int status = r.status();
    // Any 2xx: Slack took the post. Retrying an odd body would post the message twice.
    if (status >= 200 && status < 300) return Outcome::delivered();
    const std::string reason = "slack." + error_name(r.body(), status);
    // 429: over the webhook's rate limit, with Retry-After; 5xx (rollup_error): Slack's own trouble.
    if (status == 429 || status >= 500) return Outcome::retry(reason, tayori::sdk::retry_after_ms(r, host_.now_ms()));
    // 404 channel_not_found / no_service and 410 channel_is_archived: the webhook will never post again. The
    // gateway can only suppress the contact point, so each member tried here is suppressed (README.md).
    // Other 4xx (400 invalid_payload / no_text, 403 action_prohibited): this message or a workspace rule.
    return Outcome::permanent(reason, /*deactivate_contact=*/status == 404 || status == 410);
  }

 private:
  tayori::sdk::Host host_;
  std::string url_;
};

const tayori_setting_spec kSettings[] = {
    {"webhook_url", TAYORI_SETTING_SECRET, 1, nullptr,
     "the incoming webhook's URL, a credential (YAML: webhook_url_env names the variable)"},
};

}  // namespace

TAYORI_PLUGIN(SlackWebhook, "slack_webhook", "1.0.0", "slack_webhook: posts to a Slack channel, mentioning the member",
              "slack", kSettings, sizeof kSettings / sizeof kSettings[0])
