// The public HTTP API: routing, authentication, (de)serialisation. Request handling is a function of the
// request; the only asynchrony is waiting for the store's group commit before answering 202.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "api/http.hpp"
#include "common/time.hpp"
#include "config/config.hpp"
#include "core/clearance.hpp"
#include "core/inbound.hpp"
#include "core/intake.hpp"
#include "core/message.hpp"
#include "metrics/metrics.hpp"
#include "plugin/channel.hpp"
#include "render/renderer.hpp"
#include "store/store.hpp"

namespace tayori::api {

struct ApiDependencies {
  store::Store& store;
  const plugin::Registry& channels;
  const Clock& clock;
  Metrics& metrics;
  core::Clearance& clearance;
  const render::TemplateStore* templates;  // nullptr: no templates configured
  bool missing_variable_is_error;
  std::function<void()> wake_dispatcher;  // messages were scheduled in the store (and events written)
  std::function<void()> wake_webhooks;    // events were written
  std::function<int64_t()> in_flight;
  // The dispatcher's hand-over (core::Dispatcher::reserve and hand_over): messages due now go to it
  // straight from the accepting commit. Empty: every message waits in the store for the claim loop.
  std::function<int(int wanted)> reserve_hand_over;
  std::function<void(std::vector<core::Claim> claims, int reserved)> hand_over;
};

class Api final : public Handler {
 public:
  Api(const config::Config& config, ApiDependencies deps);

  void handle(HttpRequest request, Responder respond) override;
  void observe_rejected(int status) override;
  void observe_connection_refused() override;
  // A request whose route needs a key (an API key, or an app key on /v1/inbound/app) and whose head presents
  // none that is valid gets its 401 here, before its body is read.
  std::optional<HttpResponse> screen(const HttpRequest& head) override;

  // Stop answering 2xx to new work (shutdown): /v1 writes and /readyz answer 503.
  void set_draining(bool draining) { draining_ = draining; }

 private:
  struct Key {
    std::string name;
    std::string digest;  // crypto::sha256 of the secret: only digests are kept and compared
    unsigned scopes = config::kAllScopes;
    bool allows(config::Scope scope) const { return (scopes & static_cast<unsigned>(scope)) != 0; }
  };
  // Whether `key` may act on a message of `owner` (its api_key): its own, or any with `wider`.
  static bool owns(const Key& key, const std::string& owner, config::Scope wider) {
    return owner == key.name || key.allows(wider);
  }
  // The 403 for a key without `scope` (the route needs it).
  static HttpResponse scope_missing(const Key& key, config::Scope scope, const std::string& method,
                                    const std::string& route);

  // Routes the request and answers it through `counted`; throws what a store read throws.
  void serve(const HttpRequest& request, const std::string& route, const std::string& method,
             const Responder& counted);
  std::optional<core::Json> json_body(const HttpRequest& request, const Responder& respond);
  void submit(const HttpRequest& request, const std::string& key_name, const Responder& respond);
  // Routes a request under /v1 that an API key authenticated, after checking the key's scope.
  void serve_keyed(const HttpRequest& request, const std::string& route, const std::string& method, const Key& key,
                   const Responder& counted);
  HttpResponse simulate(const HttpRequest& request);
  void recipients(const HttpRequest& request, const std::string& route, Responder respond);
  core::Json effective_consent(const std::string& recipient_id);
  void suppressions(const HttpRequest& request, const std::string& route, const Responder& respond);
  // A key without read_all sees only its own messages (and their events): another key's is not found.
  HttpResponse get_message(const std::string& id, const Key& key);
  HttpResponse list_messages(const HttpRequest& request, const Key& key);
  // A key without admin cancels and retries only its own messages.
  void cancel_message(const std::string& id, const Key& key, const Responder& respond);
  // Dead letters and permanent failures sent through the policy again (store::Store::replay).
  void retry_message(const std::string& id, const Key& key, const Responder& respond);
  void retry_messages(const HttpRequest& request, const Key& key, const Responder& respond);
  // GET /v1/events (feed_api.cpp): the upstream feed in seq order, of the key's own messages without read_all.
  HttpResponse read_feed(const HttpRequest& request, const Key& key);
  // GET /v1/stats, /v1/stats/flow, /v1/stats/queue (stats_api.cpp): counts, never a recipient.
  HttpResponse stats(const HttpRequest& request, const std::string& route);
  HttpResponse readiness();
  // GET /console, /console/ (the page) and /console/{asset} (console_api.cpp): no key needed.
  HttpResponse console_asset(const HttpRequest& request, const std::string& route);
  const Key* authenticate(const HttpRequest& request) const;
  // The 401 for a missing or unknown API key (or app key), with its WWW-Authenticate challenge.
  static HttpResponse key_missing(bool app_key);
  // The key of `keys` presented as Authorization: Bearer (constant time), or nullptr.
  static const Key* find_key(const HttpRequest& request, const std::vector<Key>& keys);

  // Two-way (inbound_api.cpp): answers that come back, authenticated by a provider's signature (checked
  // by the channel's plugin), a signed link, or an app key instead of an API key.
  void inbound_webhook(const HttpRequest& request, const Responder& respond);   // POST /inbound/{plugin}/{channel}
  void response_link(const HttpRequest& request, const Responder& respond);     // GET, POST /r/{token}
  void unsubscribe_link(const HttpRequest& request, const Responder& respond);  // GET, POST /u/{token} (RFC 8058)
  // GET, HEAD /c/{token} (kind click) and /o/{token} (kind open)
  void reaction_link(const HttpRequest& request, links::LinkKind kind, const Responder& respond);
  void record_conversion(const HttpRequest& request, const Responder& respond);  // POST /v1/conversions
  void app_inbound(const HttpRequest& request, const Responder& respond);        // POST /v1/inbound/app
  // The recipient's locale for a page about `original` ("" when unknown).
  std::string locale_of(const core::Original& original) const;
  std::string locale_of_message(const std::string& message_id) const;  // "" for an unknown message too

  std::vector<Key> keys_;
  std::vector<Key> app_keys_;  // inbound.app_keys
  std::unique_ptr<core::InboundApplier> inbound_;
  config::ServerConfig server_;
  policy::PolicyConfig policy_;
  config::AttributionConfig attribution_;
  std::set<std::string> channel_names_;
  std::set<std::string> template_names_;
  core::ValidationRules rules_;
  ApiDependencies deps_;
  std::atomic<bool> draining_{false};
};

// Where the operator console's files are served: /console/{asset}.
inline constexpr std::string_view kConsolePrefix = "/console/";

// RFC 9457 problem details. `errors` (pointer, detail) pairs go in an "errors" member.
// 405 with the Allow header (RFC 9110 §15.5.6).
HttpResponse method_not_allowed(const std::string& route, const std::string& allowed);

HttpResponse problem(int status, std::string_view title, std::string_view detail,
                     const std::vector<std::pair<std::string, std::string>>& errors = {});

// The status an Error's code stands for (RFC 9110 §15): invalid 400, not_found 404, conflict 409, gone 410,
// internal 500, unavailable 503.
int status_of(ErrorCode code);

// The data path's Error as problem details: status_of its code, its message as the detail, and its field,
// when it names one, as the one pointer.
HttpResponse error_problem(const Error& error);
// The same for the answer to a write: `unavailable` is store_unavailable(what, its message), with Retry-After.
HttpResponse error_problem(const Error& error, std::string_view what);

// 503 for a write the store refused (its completion said !ok: disk or store.max_size full, I/O error):
// "the store could not record <what> (<why>, e.g. database or disk is full); retry", with Retry-After: 1. Nothing of the request was stored, so
// a retry is safe; a 2xx is only ever sent after a durable commit.
HttpResponse store_unavailable(std::string_view what, std::string_view why = "");

// 503 for a store read that failed (SQLITE_BUSY, an I/O error, no file descriptor left): "the store could not
// be read (<why>); retry", with Retry-After: 1.
HttpResponse store_unreadable(std::string_view why);

// Runs `answer`, a store write's completion that reads the store before it answers. A completion runs on the
// store's completer thread, outside Api::handle's catch: a read that fails there is answered as handle() answers
// it.
void answer_reading(const Responder& respond, const std::function<void()>& answer);

}  // namespace tayori::api
