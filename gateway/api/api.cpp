// The public API's routes (api.hpp): authentication by key and scope, then intake (POST /v1/messages, batches,
// :simulate), reads, cancel and retry, readiness; the answer to an intake waits for the store's group commit.
// The HTTP server (http_server.cpp) calls in here; recipients, events and inbound routes have files of their own.
#include "api/api.hpp"

#include <chrono>
#include <set>

#include "api/http_util.hpp"
#include "common/json.hpp"
#include "common/log.hpp"
#include "core/intake.hpp"
#include "core/message.hpp"
#include "crypto/crypto.hpp"
#include "transport/circuit_breaker.hpp"

namespace tayori::api {

using core::Json;

namespace {

// The members a listing shows of each message (GET /v1/messages); the full view adds to them.
Json summary_view(const store::MessageRecord& r) {
  return {
      {"id", r.id},
      {"state", store::to_string(r.state)},
      {"channel", r.channel.empty() ? Json() : Json(r.channel)},
      {"attempts", r.attempts},
      {"last_reason", r.last_reason.empty() ? Json() : Json(r.last_reason)},
      {"updated_at", format_rfc3339_ms(r.updated_at_ms)},
  };
}

Json message_view(const store::MessageRecord& r, const std::vector<store::TimelineEvent>& events) {
  Json out = summary_view(r);
  out["api_key"] = r.api_key;
  out["created_at"] = format_rfc3339_ms(r.created_at_ms);
  out["due_at"] = format_rfc3339_ms(r.due_at_ms);
  out["send_at"] = r.send_at_ms ? Json(format_rfc3339_ms(*r.send_at_ms)) : Json();
  out["expires_at"] = r.expires_at_ms ? Json(format_rfc3339_ms(*r.expires_at_ms)) : Json();
  out["message"] = parse_json_or_discarded(r.payload);
  Json timeline = Json::array();
  for (const auto& e : events) {
    Json detail = parse_json_or_discarded(e.detail_json);
    timeline.push_back({{"seq", e.seq},
                        {"type", e.type},
                        {"at", format_rfc3339_ms(e.at_ms)},
                        {"detail", detail.is_discarded() ? Json::object() : detail}});
  }
  out["events"] = timeline;
  return out;
}

constexpr std::string_view kMessagesPrefix = "/v1/messages/";
// POST /v1/messages/{id}:retry. Ids may contain ':' (even end in ":retry"), so only a literal ":retry" at the
// end of the raw path of a POST is the action: every id stays addressable, as /v1/messages/{id} with any
// method, and as {id}:retry with its own colons sent as they are or as %3A (decoding happens after the split).
constexpr std::string_view kRetrySuffix = ":retry";

// Page sizes: GET /v1/messages, and how many messages one POST /v1/messages:retry replays.
constexpr int kDefaultPage = 100;
constexpr int kMaxPage = 1000;
constexpr int kDefaultRetryBatch = 1000;
constexpr int kMaxRetryBatch = 10000;

// The route template a request matched ("/v1/messages/{id}"): the `route` label of the HTTP metrics (a
// bounded set, whatever the path) and what serve_keyed dispatches on.
std::string route_template(const std::string& method, const std::string& path) {
  if (path == "/v1/messages" || path == "/v1/messages:simulate" || path == "/v1/messages:retry" ||
      path == "/v1/suppressions" || path == "/v1/events" || path == "/healthz" || path == "/readyz" ||
      path == "/metrics" || path == "/v1/stats" || path == "/v1/stats/flow" || path == "/v1/stats/queue")
    return path;
  if (path.rfind(kMessagesPrefix, 0) == 0)
    return method == "POST" && path.ends_with(kRetrySuffix) ? "/v1/messages/{id}:retry" : "/v1/messages/{id}";
  if (path.rfind("/v1/suppressions/", 0) == 0) return "/v1/suppressions/{contact}";
  if (path == "/v1/inbound/app" || path == "/v1/conversions") return path;
  if (path.rfind("/inbound/", 0) == 0) return "/inbound/{plugin}/{channel}";
  if (path.rfind("/r/", 0) == 0) return "/r/{token}";
  if (path.rfind("/u/", 0) == 0) return "/u/{token}";
  if (path.rfind("/c/", 0) == 0) return "/c/{token}";
  if (path.rfind("/o/", 0) == 0) return "/o/{token}";
  // The console's page answers with and without the slash (so its links need not care); its files are a
  // bounded set of names, and an unknown name is a 404 of that same label.
  if (path == "/console" || path == kConsolePrefix) return "/console";
  if (path.rfind(kConsolePrefix, 0) == 0) return "/console/{asset}";
  if (path.rfind("/v1/recipients/", 0) == 0) {
    if (path.ends_with("/consent/history")) return "/v1/recipients/{id}/consent/history";
    if (path.ends_with("/consent")) return "/v1/recipients/{id}/consent";
    return "/v1/recipients/{id}";
  }
  return "other";
}

// Which key a route needs: none (open to all; or authenticated by a provider's signature or a signed link that
// its handler checks on the body; or the console's files, whose page asks for a key and sends it with each API
// call), an API key, or an app key (inbound.app_keys).
enum class KeyNeeded { none, api_key, app_key };

KeyNeeded key_needed(const std::string& route) {
  if (route == "/healthz" || route == "/readyz" || route == "/metrics" || route == "other" ||
      route == "/inbound/{plugin}/{channel}" || route == "/r/{token}" || route == "/u/{token}" ||
      route == "/c/{token}" || route == "/o/{token}" || route == "/console" || route == "/console/{asset}")
    return KeyNeeded::none;
  return route == "/v1/inbound/app" ? KeyNeeded::app_key : KeyNeeded::api_key;
}

HttpResponse shutting_down() { return problem(503, "Service Unavailable", "the gateway is shutting down"); }

HttpResponse message_not_found(const std::string& id) {
  return problem(404, "Not Found", "no message with id \"" + id + "\"");
}

// Only dead letters and permanent failures are replayed (store::Store::replay); the 409 says where the
// message is instead, also as a `state` member for programs.
bool replayable(store::State s) { return s == store::State::dead || s == store::State::failed; }

HttpResponse not_replayable(const std::string& id, store::State state) {
  HttpResponse r = problem(409, "Conflict",
                           "message \"" + id + "\" is " + std::string(store::to_string(state)) +
                               ": only a dead or failed message can be retried");
  Json body = Json::parse(r.body);
  body["state"] = store::to_string(state);
  r.body = json_text(body);
  return r;
}

std::string state_names() {
  std::string out;
  for (store::State s : store::kAllStates) out += (out.empty() ? "" : ", ") + std::string(store::to_string(s));
  return out;
}

}  // namespace

namespace {
// 503 with Retry-After: 1 for a store that could not do its part; `detail` says what, "; retry" is added.
HttpResponse unavailable(std::string detail, std::string_view why) {
  if (!why.empty()) detail += " (" + std::string(why) + ")";
  HttpResponse r = problem(503, "Service Unavailable", detail + "; retry");
  r.headers.emplace_back("Retry-After", "1");
  return r;
}
}  // namespace

HttpResponse store_unavailable(std::string_view what, std::string_view why) {
  return unavailable("the store could not record " + std::string(what), why);
}

HttpResponse store_unreadable(std::string_view why) { return unavailable("the store could not be read", why); }

void answer_reading(const Responder& respond, const std::function<void()>& answer) {
  try {
    answer();
  } catch (const store::ReadError& e) {
    log::error("api", std::string("a store read after a write failed: ") + e.what());
    respond(store_unreadable(e.error.message));
  }
}

HttpResponse problem(int status, std::string_view title, std::string_view detail,
                     const std::vector<std::pair<std::string, std::string>>& errors) {
  Json body = {{"type", "about:blank"}, {"title", title}, {"status", status}, {"detail", detail}};
  if (!errors.empty()) {
    Json list = Json::array();
    for (const auto& [pointer, d] : errors) list.push_back({{"pointer", pointer}, {"detail", d}});
    body["errors"] = list;
  }
  HttpResponse r;
  r.status = status;
  r.content_type = "application/problem+json";
  r.body = json_text(body);
  return r;
}

int status_of(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid: return 400;
    case ErrorCode::not_found: return 404;
    case ErrorCode::conflict: return 409;
    case ErrorCode::gone: return 410;
    case ErrorCode::unavailable: return 503;
    case ErrorCode::internal: break;
  }
  return 500;
}

HttpResponse error_problem(const Error& error) {
  // RFC 9110 §15's reason phrases, as the problem's title.
  static const std::map<int, std::string_view> kTitles = {
      {400, "Bad Request"}, {404, "Not Found"}, {409, "Conflict"}, {410, "Gone"}, {503, "Service Unavailable"}};
  const int status = status_of(error.code);
  auto title = kTitles.find(status);
  std::string_view words = title == kTitles.end() ? "Internal Server Error" : title->second;
  if (error.field.empty()) return problem(status, words, error.message);
  return problem(status, words, error.message, {{error.field, error.message}});
}

HttpResponse error_problem(const Error& error, std::string_view what) {
  if (error.code == ErrorCode::unavailable) return store_unavailable(what, error.message);
  return error_problem(error);
}

std::optional<HttpResponse> read_query(
    std::string_view query, std::string_view known,
    const std::function<bool(const std::string& name, const std::string& value, QueryErrors& errors)>& read) {
  QueryErrors errors;
  std::set<std::string> seen;
  for (const auto& [name, value] : query_params(query)) {
    if (!seen.insert(name).second)
      errors.emplace_back(name, "is given more than once");
    else if (!read(name, value, errors))
      errors.emplace_back(name, "is not a known parameter (" + std::string(known) + ")");
  }
  if (errors.empty()) return std::nullopt;
  return query_problem(errors);
}

HttpResponse query_problem(const QueryErrors& errors) {
  std::string detail;
  for (const auto& [name, d] : errors)
    detail += (detail.empty() ? "query parameter " : "; query parameter ") + name + " " + d;
  return problem(400, "Bad Request", detail, errors);
}

HttpResponse method_not_allowed(const std::string& route, const std::string& allowed) {
  HttpResponse r = problem(405, "Method Not Allowed", "use " + allowed + " on " + route);
  r.headers.emplace_back("Allow", allowed);
  return r;
}

Api::Api(const config::Config& config, ApiDependencies deps)
    : server_(config.server), policy_(config.policy), attribution_(config.attribution), deps_(std::move(deps)) {
  for (const auto& k : config.api_keys) keys_.push_back({k.name, crypto::sha256(k.secret), k.scopes});
  for (const auto& k : config.inbound.app_keys) app_keys_.push_back({k.name, crypto::sha256(k.secret)});
  inbound_ = std::make_unique<core::InboundApplier>(
      deps_.store, deps_.clock, links::LinkSigner(config.server.public_url, config.server.link_keys), config.responses);
  for (const auto& c : deps_.channels.channels()) channel_names_.insert(c->name());
  if (deps_.templates)
    for (const auto& name : deps_.templates->names()) template_names_.insert(name);
  rules_.channels = &channel_names_;
  rules_.templates_available = deps_.templates != nullptr;
  rules_.templates = &template_names_;
  rules_.links_available = inbound_->links().enabled();
  rules_.default_timezone = config.policy.default_timezone;
  rules_.stored_timezone = [this](const std::string& recipient_id) {
    auto profile = deps_.store.recipient(recipient_id);
    return profile && !profile->erased ? profile->timezone : std::string();
  };
}

const Api::Key* Api::authenticate(const HttpRequest& request) const { return find_key(request, keys_); }

const Api::Key* Api::find_key(const HttpRequest& request, const std::vector<Key>& keys) {
  std::string_view auth = request.header("authorization");
  constexpr std::string_view scheme = "Bearer ";
  if (auth.size() <= scheme.size() || auth.substr(0, scheme.size()) != scheme) return nullptr;
  // Compare digests in constant time, and look at every key: timing reveals neither a prefix nor which key.
  std::string presented = crypto::sha256(auth.substr(scheme.size()));
  if (presented.empty()) return nullptr;  // no digest (OpenSSL failed): nothing to compare
  const Key* found = nullptr;
  for (const auto& k : keys)
    if (crypto::constant_time_equal(presented, k.digest)) found = &k;
  return found;
}

HttpResponse Api::key_missing(bool app_key) {
  HttpResponse r = problem(401, "Unauthorized",
                           app_key ? "send Authorization: Bearer <app key> (inbound.app_keys)"
                                   : "send Authorization: Bearer <api key>");
  r.headers.emplace_back("WWW-Authenticate", app_key ? "Bearer realm=\"tayori-app\"" : "Bearer realm=\"tayori\"");
  return r;
}

std::optional<HttpResponse> Api::screen(const HttpRequest& head) {
  std::string route = route_template(head.method, head.path);
  KeyNeeded needed = key_needed(route);
  if (needed == KeyNeeded::none) return std::nullopt;
  bool app_key = needed == KeyNeeded::app_key;
  if (find_key(head, app_key ? app_keys_ : keys_) != nullptr) return std::nullopt;
  deps_.metrics.count_request(route, head.method, 401);
  return key_missing(app_key);
}

void Api::observe_rejected(int status) { deps_.metrics.count_request("other", "-", status); }

void Api::observe_connection_refused() { deps_.metrics.count_connection_refused(); }

void Api::handle(HttpRequest request, Responder respond) {
  std::string route = route_template(request.method, request.path);
  std::string method = request.method;
  // Every answer is counted once, by route template (never the raw path: ids would explode cardinality).
  Responder counted = [this, route, method, respond = std::move(respond)](HttpResponse r) {
    deps_.metrics.count_request(route, method, r.status);
    respond(std::move(r));
  };
  try {
    serve(request, route, method, counted);
  } catch (const store::ReadError& e) {
    // A store read failed (SQLITE_BUSY, an I/O error, no file descriptor left, a lost PostgreSQL connection):
    // the request was fine and may be sent again. Any other exception is the HTTP server's 500.
    log::error("api", method + " " + route + ": " + e.what());
    counted(store_unreadable(e.error.message));
  }
}

void Api::serve(const HttpRequest& request, const std::string& route, const std::string& method,
                const Responder& counted) {
  auto allow = [&](const std::string& allowed) { counted(method_not_allowed(route, allowed)); };

  if (route == "/healthz") {
    if (method != "GET") return allow("GET");
    return counted(json_response(200, {{"status", "ok"}}));
  }
  if (route == "/readyz") {
    if (method != "GET") return allow("GET");
    return counted(readiness());
  }
  if (route == "/metrics") {
    if (method != "GET") return allow("GET");
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = deps_.metrics.render(deps_.store.count_by_state(), deps_.in_flight ? deps_.in_flight() : 0);
    return counted(std::move(r));
  }
  if (route == "other") return counted(problem(404, "Not Found", "no such resource: " + request.path));
  if (route == "/console" || route == "/console/{asset}") {  // console_api.cpp
    if (method != "GET") return allow("GET");
    return counted(console_asset(request, route));
  }
  // Two-way routes authenticate by a provider's signature, a signed link or an app key (inbound_api.cpp).
  if (route == "/inbound/{plugin}/{channel}") {
    if (method != "POST") return allow("POST");
    if (draining_) return counted(shutting_down());
    return inbound_webhook(request, counted);
  }
  if (route == "/r/{token}") {
    if (method != "GET" && method != "POST") return allow("GET, POST");
    return response_link(request, counted);
  }
  if (route == "/u/{token}") {
    if (method != "GET" && method != "POST") return allow("GET, POST");
    return unsubscribe_link(request, counted);
  }
  if (route == "/c/{token}" || route == "/o/{token}") {
    if (method != "GET" && method != "HEAD") return allow("GET, HEAD");
    return reaction_link(request, route == "/c/{token}" ? links::LinkKind::click : links::LinkKind::open, counted);
  }
  if (route == "/v1/inbound/app") {
    if (method != "POST") return allow("POST");
    if (draining_) return counted(shutting_down());
    return app_inbound(request, counted);
  }

  const Key* key = authenticate(request);
  if (key == nullptr) return counted(key_missing(false));
  serve_keyed(request, route, method, *key, counted);
}

HttpResponse Api::scope_missing(const Key& key, config::Scope scope, const std::string& method,
                                const std::string& route) {
  return problem(403, "Forbidden",
                 "API key \"" + key.name + "\" lacks scope \"" + config::to_string(scope) + "\", which " + method + " " +
                     route + " needs (api_keys[].scopes)");
}

void Api::serve_keyed(const HttpRequest& request, const std::string& route, const std::string& method, const Key& key,
                      const Responder& counted) {
  using config::Scope;
  auto allow = [&](const std::string& allowed) { counted(method_not_allowed(route, allowed)); };
  // Answers 403 and returns false when the key lacks `scope`.
  auto permit = [&](Scope scope) {
    if (key.allows(scope)) return true;
    counted(scope_missing(key, scope, method, route));
    return false;
  };
  if (route == "/v1/messages") {
    if (method == "GET") return permit(Scope::read) ? counted(list_messages(request, key)) : void();
    if (method != "POST") return allow("GET, POST");
    if (!permit(Scope::send)) return;
    if (draining_) return counted(shutting_down());
    return submit(request, key.name, counted);
  }
  if (route == "/v1/events") {  // feed_api.cpp
    if (method != "GET") return allow("GET");
    return permit(Scope::read) ? counted(read_feed(request, key)) : void();
  }
  if (route.rfind("/v1/stats", 0) == 0) {  // stats_api.cpp
    if (method != "GET") return allow("GET");
    return permit(Scope::read) ? counted(stats(request, route)) : void();
  }
  if (route == "/v1/messages:simulate") {
    if (method != "POST") return allow("POST");
    return permit(Scope::send) ? counted(simulate(request)) : void();
  }
  if (route == "/v1/conversions") {  // conversions_api.cpp
    if (method != "POST") return allow("POST");
    if (!permit(Scope::send)) return;
    if (draining_) return counted(shutting_down());
    return record_conversion(request, counted);
  }
  if (route == "/v1/messages:retry") {
    if (method != "POST") return allow("POST");
    if (!permit(Scope::send)) return;
    if (draining_) return counted(shutting_down());
    return retry_messages(request, key, counted);
  }
  if (route.rfind("/v1/recipients/", 0) == 0 || route.rfind("/v1/suppressions", 0) == 0) {
    // Recipients and suppressions belong to no key: reading them is read_all, changing them admin.
    if (!permit(method == "GET" ? Scope::read_all : Scope::admin)) return;
    if (draining_ && method != "GET") return counted(shutting_down());
    return route.rfind("/v1/recipients/", 0) == 0 ? recipients(request, route, counted)
                                                   : suppressions(request, route, counted);
  }
  std::string_view rest = std::string_view(request.path).substr(kMessagesPrefix.size());
  if (route == "/v1/messages/{id}:retry") {
    if (!permit(Scope::send)) return;
    if (draining_) return counted(shutting_down());
    rest.remove_suffix(kRetrySuffix.size());
    return retry_message(percent_decode(rest), key, counted);
  }
  std::string id = percent_decode(rest);
  if (method == "GET") return permit(Scope::read) ? counted(get_message(id, key)) : void();
  if (method == "DELETE") {
    if (!permit(Scope::send)) return;
    if (draining_) return counted(shutting_down());
    return cancel_message(id, key, counted);
  }
  return allow("GET, DELETE");
}

// Parses a JSON body, or answers 415/400 through `respond` and returns nullopt.
std::optional<Json> Api::json_body(const HttpRequest& request, const Responder& respond) {
  if (!is_json(request.header("content-type"))) {
    respond(problem(415, "Unsupported Media Type", "send Content-Type: application/json"));
    return std::nullopt;
  }
  // The fast reader first: what it takes nests no deeper than a body may, and most bodies are all it reads. Only
  // text it leaves is measured for depth before nlohmann, whose parser recurses, reads it and explains any error.
  static_assert(kFastDepth == kMaxJsonDepth);
  if (std::optional<Json> fast = read_json_fast(request.body)) return fast;
  if (auto at = json_too_deep(request.body)) {
    respond(problem(400, "Bad Request",
                    "the body nests arrays and objects more than " + std::to_string(kMaxJsonDepth) +
                        " levels deep (at byte " + std::to_string(*at) + ")"));
    return std::nullopt;
  }
  try {
    return Json::parse(request.body);
  } catch (const Json::parse_error& e) {
    respond(problem(400, "Bad Request", "the body is not valid JSON (at byte " + std::to_string(e.byte) + ")",
                    {{"", e.what()}}));
  } catch (const Json::exception& e) {
    // Not a syntax error but still no JSON value we can hold: a number beyond a double's range (RFC 8259 §6
    // lets implementations limit the range; nlohmann reports it as out_of_range 406, not parse_error).
    respond(problem(400, "Bad Request", "the body is not acceptable JSON", {{"", e.what()}}));
  }
  return std::nullopt;
}

void Api::submit(const HttpRequest& request, const std::string& key_name, const Responder& respond) {
  int64_t now = deps_.clock.now_ms();
  // The usual body, every message in it valid, is read straight from its text; any other is parsed and
  // validated member by member, which explains whatever is wrong with it.
  std::optional<core::Intake> read;
  if (is_json(request.header("content-type")))
    read = core::read_intake(request.body, rules_, server_.max_batch, key_name, now);
  if (!read) {
    auto body = json_body(request, respond);
    if (!body) return;
    read = core::prepare_intake(*body, rules_, server_.max_batch, key_name, now);
  }
  auto intake = std::make_shared<core::Intake>(std::move(*read));
  // Messages due now are stored already claimed by this node's dispatcher, as many as it has room for,
  // and handed to it once committed (no claim transaction, no wait for the claim loop).
  int reserved = 0;
  if (deps_.reserve_hand_over) {
    std::vector<store::NewMessage*> due;
    for (auto& m : intake->to_store)
      if (m.due_at_ms <= now) due.push_back(&m);
    reserved = due.empty() ? 0 : deps_.reserve_hand_over(static_cast<int>(due.size()));
    for (int i = 0; i < reserved; ++i) due[static_cast<size_t>(i)]->claim = true;
  }
  // Nothing to hand over: the validated messages go now, on this thread, instead of after the commit on another.
  if (reserved == 0) intake->validated.clear();
  auto finish = [this, intake, reserved, received = request.received_at_ns,
                 respond](Result<std::vector<store::AcceptResult>> stored) {
    int handed = 0;
    if (reserved > 0) {
      std::vector<core::Claim> claims;
      if (stored)
        for (size_t i = 0; i < stored->size(); ++i)
          if (auto& claimed = (*stored)[i].claimed)
            claims.push_back({std::move(*claimed), std::move(intake->validated[i]), std::move((*stored)[i].recipient)});
      handed = static_cast<int>(claims.size());
      deps_.hand_over(std::move(claims), reserved);
    }
    if (!stored) return respond(store_unavailable("the messages", stored.error().message));
    core::IntakeAnswer a = core::answer_intake(*intake, *stored);
    deps_.metrics.count_intake("accepted", a.accepted);
    deps_.metrics.count_intake("duplicate", a.duplicate);
    deps_.metrics.count_intake("rejected", a.rejected);
    deps_.metrics.count_intake("conflict", a.conflict);
    deps_.metrics.count_handed_over(handed);
    // Waking the dispatcher makes it look at the store: only when something was left there.
    if (a.accepted > handed && deps_.wake_dispatcher)
      deps_.wake_dispatcher();
    else if (a.accepted > 0 && deps_.wake_webhooks)
      deps_.wake_webhooks();
    if (a.accepted + a.duplicate > 0) {
      auto elapsed = std::chrono::steady_clock::now().time_since_epoch() - std::chrono::nanoseconds(received);
      deps_.metrics.observe_accept_latency(std::chrono::duration<double>(elapsed).count());
    }
    HttpResponse r;
    r.status = a.status;
    r.body = std::move(a.body);
    if (a.problem) r.content_type = "application/problem+json";
    respond(std::move(r));
  };
  if (intake->to_store.empty()) return finish(std::vector<store::AcceptResult>{});
  std::vector<store::NewMessage> batch = std::move(intake->to_store);
  deps_.store.accept(std::move(batch), now, std::move(finish));
}

// POST /v1/messages:simulate — the whole policy and the rendering, with nothing stored, counted or sent.
HttpResponse Api::simulate(const HttpRequest& request) {
  HttpResponse early;
  auto body = json_body(request, [&](HttpResponse r) { early = std::move(r); });
  if (!body) return early;
  core::ParsedMessage parsed = core::parse_message(*body, rules_);
  if (!parsed.message) {
    std::vector<std::pair<std::string, std::string>> errors;
    for (const auto& e : parsed.errors) errors.emplace_back(e.pointer, e.detail);
    return problem(400, "Bad Request", "the message is invalid", errors);
  }
  core::Message& m = *parsed.message;
  int64_t now = deps_.clock.now_ms();
  deps_.clearance.complete_recipient(m);
  int64_t at = m.send_at_ms && *m.send_at_ms > now ? *m.send_at_ms : now;
  // The jitter of a deferral is drawn at dispatch; a simulation shows the earliest moment (jitter 0).
  policy::Decision d = deps_.clearance.clear(m, 0, at, 0.0, false, true);
  Json trace = Json::array();
  for (const auto& step : d.trace) trace.push_back(step.to_json());
  static const char* kVerdicts[] = {"send", "defer", "suppress"};
  Json out = {{"id", m.id},
              {"evaluated_at", policy::format_local(at, deps_.clearance.zone_for(m))},
              {"decision", kVerdicts[static_cast<int>(d.verdict)]},
              {"trace", trace}};
  if (!d.reason.empty()) out["reason"] = d.reason;
  if (!d.rule.empty()) out["rule"] = d.rule;
  if (d.verdict == policy::Verdict::defer) out["until"] = policy::format_local(d.until_ms, deps_.clearance.zone_for(m));
  if (d.verdict == policy::Verdict::send) {
    out["channel"] = d.channel;
    out["contact"] = d.contact;
    Result<render::Rendered> r = render::render(m, d.channel, deps_.templates, deps_.missing_variable_is_error);
    // The dispatcher would fail this message (render_error): the message cannot be sent as it is.
    if (!r)
      return problem(422, "Unprocessable Content", "render_error on channel " + d.channel + ": " + r.error().message,
                     {{r.error().field, r.error().message}});
    Json fields = Json::object();
    for (const auto& [k, v] : r->fields) fields[k] = v;
    out["rendered"] = {{"source", r->source}, {"content", fields}};
  }
  if (d.detail.contains("skipped")) out["skipped"] = d.detail["skipped"];
  return json_response(200, out);
}

HttpResponse Api::get_message(const std::string& id, const Key& key) {
  auto record = deps_.store.find(id);
  if (!record || !owns(key, record->api_key, config::Scope::read_all)) return message_not_found(id);
  return json_response(200, message_view(*record, deps_.store.events(id)));
}

// GET /v1/messages?state=&channel=&limit=&after= — keyset paging in id order. Like GET /v1/messages/{id},
// a key sees its own messages, or every message with read_all. Every problem with the query is reported,
// each naming its parameter.
HttpResponse Api::list_messages(const HttpRequest& request, const Key& key) {
  store::MessageFilter filter;
  filter.limit = kDefaultPage;
  if (!key.allows(config::Scope::read_all)) filter.api_key = key.name;
  auto bad = read_query(request.query, "state, channel, limit, after", [&](const std::string& name,
                                                                           const std::string& value,
                                                                           QueryErrors& errors) {
    if (name == "state") {
      filter.state = store::parse_state(value);
      if (!filter.state) errors.emplace_back(name, "must be one of " + state_names());
    } else if (name == "channel") {
      if (value.empty()) errors.emplace_back(name, "must name a channel");
      filter.channel = value;
    } else if (name == "limit") {
      auto limit = parse_bounded_int(value, 1, kMaxPage);
      if (!limit) errors.emplace_back(name, "must be a number from 1 to " + std::to_string(kMaxPage));
      filter.limit = limit.value_or(kDefaultPage);
    } else if (name == "after") {
      filter.after_id = value;
    } else {
      return false;
    }
    return true;
  });
  if (bad) return *bad;
  std::vector<store::MessageRecord> page = deps_.store.list(filter);
  Json items = Json::array();
  for (const auto& r : page) items.push_back(summary_view(r));
  // A full page may have a successor; a short one is the last.
  Json next = static_cast<int>(page.size()) == filter.limit ? Json(page.back().id) : Json();
  return json_response(200, {{"messages", items}, {"next", next}});
}

void Api::retry_message(const std::string& id, const Key& key, const Responder& respond) {
  auto record = deps_.store.find(id);
  if (!record || !owns(key, record->api_key, config::Scope::admin)) return respond(message_not_found(id));
  if (!replayable(record->state)) return respond(not_replayable(id, record->state));
  store::MessageFilter filter;
  filter.id = id;
  filter.limit = 1;
  if (!key.allows(config::Scope::admin)) filter.api_key = key.name;
  auto replayed = [this, id, respond](const Result<std::vector<std::string>>& ids) {
    if (!ids) return respond(store_unavailable("the retry", ids.error().message));
    if (ids->empty()) {
      // It moved on between the look-up and the commit (another retry, a purge): say where it is now.
      return answer_reading(respond, [&] {
        auto now = deps_.store.find(id);
        respond(now ? not_replayable(id, now->state) : message_not_found(id));
      });
    }
    if (deps_.wake_dispatcher) deps_.wake_dispatcher();
    respond(json_response(202, {{"id", id}, {"state", "scheduled"}}));
  };
  deps_.store.replay(filter, deps_.clock.now_ms(), key.name, std::move(replayed));
}

// POST /v1/messages:retry {"state": "dead"|"failed", "channel"?, "limit"?}: up to `limit` matching messages,
// in id order. Replayed messages no longer match, so calling again until `retried` is 0 drains the set.
void Api::retry_messages(const HttpRequest& request, const Key& key, const Responder& respond) {
  auto body = json_body(request, respond);
  if (!body) return;
  store::MessageFilter filter;
  filter.limit = kDefaultRetryBatch;
  if (!key.allows(config::Scope::admin)) filter.api_key = key.name;
  std::vector<std::pair<std::string, std::string>> errors;
  if (!body->is_object()) {
    errors.emplace_back("", "must be an object {state, channel?, limit?}");
  } else {
    for (auto it = body->begin(); it != body->end(); ++it)
      if (it.key() != "state" && it.key() != "channel" && it.key() != "limit")
        errors.emplace_back("/" + it.key(), "is not a known field");
    Json state = body->value("state", Json());
    if (state != "dead" && state != "failed")
      errors.emplace_back("/state", "must be \"dead\" or \"failed\"");
    else
      filter.state = store::parse_state(state.get<std::string>());
    // An optional member given as null is absent, as in a message.
    if (Json channel = body->value("channel", Json()); !channel.is_null()) {
      if (!channel.is_string() || channel.get<std::string>().empty())
        errors.emplace_back("/channel", "must name a channel (the channel last used)");
      else
        filter.channel = channel.get<std::string>();
    }
    if (Json limit = body->value("limit", Json()); !limit.is_null()) {
      if (!limit.is_number_integer() || limit.get<int64_t>() < 1 || limit.get<int64_t>() > kMaxRetryBatch)
        errors.emplace_back("/limit", "must be an integer from 1 to " + std::to_string(kMaxRetryBatch));
      else
        filter.limit = limit.get<int>();
    }
  }
  if (!errors.empty()) return respond(problem(400, "Bad Request", "the retry request is invalid", errors));
  deps_.store.replay(filter, deps_.clock.now_ms(), key.name,
                     [this, respond](const Result<std::vector<std::string>>& ids) {
                       if (!ids) return respond(store_unavailable("the retry", ids.error().message));
                       if (!ids->empty() && deps_.wake_dispatcher) deps_.wake_dispatcher();
                       respond(json_response(202, {{"retried", ids->size()}, {"ids", *ids}}));
                     });
}

void Api::cancel_message(const std::string& id, const Key& key, const Responder& respond) {
  if (!key.allows(config::Scope::admin)) {
    // Another key's message is not found, as for reading it; the look-up is one read before a rare write.
    auto record = deps_.store.find(id);
    if (!record || record->api_key != key.name) return respond(message_not_found(id));
  }
  deps_.store.cancel(id, deps_.clock.now_ms(), [id, respond](const Result<store::CancelResult>& r) {
    if (!r) return respond(store_unavailable("the cancellation", r.error().message));
    switch (r->status) {
      case store::CancelStatus::cancelled:
        return respond(json_response(200, {{"id", id}, {"state", "cancelled"}}));
      case store::CancelStatus::not_found:
        return respond(message_not_found(id));
      case store::CancelStatus::too_late:
        return respond(problem(409, "Conflict",
                               "message \"" + id + "\" is " + std::string(store::to_string(r->state)) +
                                   ": only a scheduled message, not yet handed to a provider, can be cancelled"));
    }
  });
}

// Ready: the store answers, every channel has a live plugin instance, and the gateway is not stopping.
// A channel's circuit is shown but does not count: an open circuit means its provider is failing, not
// this gateway, and taking the instance out of a load balancer would stop intake for every other channel
// too (messages for the failing one wait, or fall back, without using up attempts).
HttpResponse Api::readiness() {
  bool store_ok = deps_.store.healthy();
  Json channels = Json::object();
  bool channels_ok = !deps_.channels.channels().empty();
  for (const auto& c : deps_.channels.channels()) {
    channels[c->name()] = {{"status", c->ready() ? "ok" : "down"},
                           {"circuit", transport::to_string(c->circuit().state())}};
    channels_ok = channels_ok && c->ready();
  }
  bool ready = store_ok && channels_ok && !draining_;
  Json body = {{"status", ready ? "ready" : "not_ready"},
               {"checks", {{"store", store_ok ? "ok" : "down"}, {"channels", channels}, {"draining", draining_.load()}}}};
  return json_response(ready ? 200 : 503, body);
}

}  // namespace tayori::api
