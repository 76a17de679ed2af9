// {{name}} — a Tayori channel plugin. Sans-I/O: it says what to send (build) and what an answer means
// (classify); the gateway sends, retries, pools connections and keeps the rate limits.
//
// As scaffolded it POSTs a small JSON body to `url`, with the delivery id as an idempotency key so that a
// retried request is recognisable. Change build() to speak your provider's format and classify() to read
// its answers; keep the reasons stable, since operators alert on them (README.md lists them).
#include <tayori/plugin.hpp>
#include <tayori/provider_helpers.hpp>

#include <string>

namespace {

using tayori::sdk::Delivery;
using tayori::sdk::Outcome;

class {{Class}} {
 public:
  {{Class}}(const tayori::sdk::Host& host, const tayori::sdk::Settings& settings)
      : host_(host), url_(settings.get("url")), token_(settings.find("token").value_or("")) {
    // The token and the content travel in the request: TLS, except to a stand-in on this machine.
    tayori::sdk::require_https_or_loopback("url", url_);
  }

  void build(const Delivery& d, tayori::sdk::RequestSink& sink) {
    auto text = d.content("text");
    if (!text || text->empty()) throw tayori::sdk::Error("content: {{name}} needs a non-empty text field");
    tayori::sdk::Request r;
    r.url = url_;
    r.headers = {{"Content-Type", "application/json"}, {"Idempotency-Key", std::string(d.delivery_id())}};
    if (!token_.empty()) r.headers.emplace_back("Authorization", "Bearer " + token_);
    r.body = "{\"to\":" + tayori::sdk::json_quote(d.contact()) + ",\"text\":" + tayori::sdk::json_quote(*text) +
             ",\"message_id\":" + tayori::sdk::json_quote(d.message_id()) + "}";
    sink.add(r);
  }

  Outcome classify(const Delivery& d, const tayori::sdk::Response& r) {
    if (r.transport_failed()) return Outcome::retry("{{name}}.transport");
    const int status = r.status();
    if (status >= 200 && status < 300)
      return Outcome::delivered(std::string(r.header("x-message-id").value_or(d.delivery_id())));
    const std::string reason = "{{name}}.http_" + std::to_string(status);
    if (status == 429 || status >= 500) return Outcome::retry(reason, tayori::sdk::retry_after_ms(r, host_.now_ms()));
    // The provider says the contact point is gone: the gateway suppresses it for this channel.
    if (status == 404 || status == 410) return Outcome::permanent(reason, /*deactivate_contact=*/true);
    return Outcome::permanent(reason);
  }

 private:
  tayori::sdk::Host host_;
  std::string url_, token_;
};

const tayori_setting_spec kSettings[] = {
    {"url", TAYORI_SETTING_URL, 1, nullptr, "where deliveries are POSTed (https://)"},
    {"token", TAYORI_SETTING_SECRET, 0, nullptr, "bearer token sent in Authorization (YAML: token_env)"},
};

}  // namespace

TAYORI_PLUGIN({{Class}}, "{{name}}", "0.1.0", "{{name}}: POSTs each delivery as JSON", "{{name}}", kSettings,
              sizeof kSettings / sizeof kSettings[0])
