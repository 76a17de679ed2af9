#include "api/api.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <chrono>

#include "api/http_util.hpp"
#include "core/intake.hpp"
#include "core/message.hpp"

namespace tayori::api {

using core::Json;

namespace {

std::array<unsigned char, 32> sha256(std::string_view text) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

Json message_view(const store::MessageRecord& r, const std::vector<store::EventRecord>& events) {
  Json payload = Json::parse(r.payload, nullptr, false);
  Json out = {
      {"id", r.id},
      {"state", store::to_string(r.state)},
      {"api_key", r.api_key},
      {"attempts", r.attempts},
      {"created_at", format_rfc3339_ms(r.created_at_ms)},
      {"updated_at", format_rfc3339_ms(r.updated_at_ms)},
      {"due_at", format_rfc3339_ms(r.due_at_ms)},
      {"channel", r.channel.empty() ? Json() : Json(r.channel)},
      {"last_reason", r.last_reason.empty() ? Json() : Json(r.last_reason)},
      {"send_at", r.send_at_ms ? Json(format_rfc3339_ms(*r.send_at_ms)) : Json()},
      {"expires_at", r.expires_at_ms ? Json(format_rfc3339_ms(*r.expires_at_ms)) : Json()},
      {"message", payload},
  };
  Json timeline = Json::array();
  for (const auto& e : events) {
    Json detail = Json::parse(e.detail_json, nullptr, false);
    timeline.push_back({{"seq", e.seq},
                        {"type", e.type},
                        {"at", format_rfc3339_ms(e.at_ms)},
                        {"detail", detail.is_discarded() ? Json::object() : detail}});
  }
  out["events"] = timeline;
  return out;
}

std::string route_of(const std::string& path) {
  if (path == "/v1/messages" || path == "/v1/messages:simulate" || path == "/v1/suppressions" || path == "/healthz" ||
      path == "/readyz" || path == "/metrics")
    return path;
  if (path.rfind("/v1/messages/", 0) == 0) return "/v1/messages/{id}";
  if (path.rfind("/v1/suppressions/", 0) == 0) return "/v1/suppressions/{contact}";
  if (path.rfind("/v1/recipients/", 0) == 0) {
    if (path.ends_with("/consent/history")) return "/v1/recipients/{id}/consent/history";
    if (path.ends_with("/consent")) return "/v1/recipients/{id}/consent";
    return "/v1/recipients/{id}";
  }
  return "other";
}

}  // namespace

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
  r.body = body.dump();
  return r;
}

HttpResponse method_not_allowed(const std::string& route, const std::string& allowed) {
  HttpResponse r = problem(405, "Method Not Allowed", "use " + allowed + " on " + route);
  r.headers.emplace_back("Allow", allowed);
  return r;
}

Api::Api(const config::Config& config, ApiDependencies deps)
    : server_(config.server), policy_(config.policy), deps_(std::move(deps)) {
  for (const auto& k : config.api_keys) keys_.push_back({k.name, sha256(k.secret)});
  for (const auto& c : deps_.channels.channels()) channel_names_.insert(c->name());
  if (deps_.templates)
    for (const auto& name : deps_.templates->names()) template_names_.insert(name);
  rules_.channels = &channel_names_;
  rules_.templates_available = deps_.templates != nullptr;
  rules_.templates = &template_names_;
  rules_.default_timezone = config.policy.default_timezone;
  rules_.stored_timezone = [this](const std::string& recipient_id) {
    auto profile = deps_.store.recipient(recipient_id);
    return profile && !profile->erased ? profile->timezone : std::string();
  };
}

const Api::Key* Api::authenticate(const HttpRequest& request) const {
  std::string_view auth = request.header("authorization");
  constexpr std::string_view scheme = "Bearer ";
  if (auth.size() <= scheme.size() || auth.substr(0, scheme.size()) != scheme) return nullptr;
  // Compare digests in constant time, and look at every key: timing reveals neither a prefix nor which key.
  auto presented = sha256(auth.substr(scheme.size()));
  const Key* found = nullptr;
  for (const auto& k : keys_)
    if (CRYPTO_memcmp(presented.data(), k.digest.data(), presented.size()) == 0) found = &k;
  return found;
}

void Api::observe_rejected(int status) { deps_.metrics.count_request("other", "-", status); }

void Api::handle(HttpRequest request, Responder respond) {
  std::string route = route_of(request.path);
  std::string method = request.method;
  // Every answer is counted once, by route template (never the raw path: ids would explode cardinality).
  Responder counted = [this, route, method, respond = std::move(respond)](HttpResponse r) {
    deps_.metrics.count_request(route, method, r.status);
    respond(std::move(r));
  };
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

  const Key* key = authenticate(request);
  if (key == nullptr) {
    HttpResponse r = problem(401, "Unauthorized", "send Authorization: Bearer <api key>");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"tayori\"");
    return counted(std::move(r));
  }
  if (route == "/v1/messages") {
    if (method != "POST") return allow("POST");
    if (draining_) return counted(problem(503, "Service Unavailable", "the gateway is shutting down"));
    return submit(request, key->name, std::move(counted));
  }
  if (route == "/v1/messages:simulate") {
    if (method != "POST") return allow("POST");
    return counted(simulate(request));
  }
  if (route.rfind("/v1/recipients/", 0) == 0 || route.rfind("/v1/suppressions", 0) == 0) {
    if (draining_ && method != "GET") return counted(problem(503, "Service Unavailable", "the gateway is shutting down"));
    return route.rfind("/v1/recipients/", 0) == 0 ? recipients(request, route, std::move(counted))
                                                   : suppressions(request, route, std::move(counted));
  }
  std::string id = percent_decode(request.path.substr(std::string_view("/v1/messages/").size()));
  if (method == "GET") return counted(get_message(id));
  if (method == "DELETE") {
    if (draining_) return counted(problem(503, "Service Unavailable", "the gateway is shutting down"));
    return cancel_message(id, std::move(counted));
  }
  return allow("GET, DELETE");
}

// Parses a JSON body, or answers 415/400 through `respond` and returns nullopt.
std::optional<Json> Api::json_body(const HttpRequest& request, const Responder& respond) {
  if (!is_json(request.header("content-type"))) {
    respond(problem(415, "Unsupported Media Type", "send Content-Type: application/json"));
    return std::nullopt;
  }
  try {
    return Json::parse(request.body);
  } catch (const Json::parse_error& e) {
    respond(problem(400, "Bad Request", "the body is not valid JSON (at byte " + std::to_string(e.byte) + ")",
                    {{"", e.what()}}));
    return std::nullopt;
  }
}

void Api::submit(const HttpRequest& request, const std::string& key_name, Responder respond) {
  auto body = json_body(request, respond);
  if (!body) return;
  int64_t now = deps_.clock.now_ms();
  auto intake = std::make_shared<core::Intake>(
      core::prepare_intake(*body, rules_, server_.max_batch, key_name, now));
  auto finish = [this, intake, received = request.received_at_ns, respond](bool ok,
                                                                          const std::vector<store::AcceptResult>& stored) {
    if (!ok) {
      HttpResponse r = problem(503, "Service Unavailable", "the store could not durably record the messages; retry");
      r.headers.emplace_back("Retry-After", "1");
      return respond(std::move(r));
    }
    core::IntakeAnswer a = core::answer_intake(*intake, stored);
    deps_.metrics.count_intake("accepted", a.accepted);
    deps_.metrics.count_intake("duplicate", a.duplicate);
    deps_.metrics.count_intake("rejected", a.rejected);
    deps_.metrics.count_intake("conflict", a.conflict);
    if (a.accepted > 0 && deps_.wake_dispatcher) deps_.wake_dispatcher();
    if (a.accepted + a.duplicate > 0) {
      auto elapsed = std::chrono::steady_clock::now().time_since_epoch() - std::chrono::nanoseconds(received);
      deps_.metrics.observe_accept_latency(std::chrono::duration<double>(elapsed).count());
    }
    HttpResponse r = json_response(a.status, a.body);
    if (a.problem) r.content_type = "application/problem+json";
    respond(std::move(r));
  };
  if (intake->to_store.empty()) return finish(true, {});
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
    render::RenderResult r = render::render(m, d.channel, deps_.templates, deps_.missing_variable_is_error);
    if (r.fields) {
      Json fields = Json::object();
      for (const auto& [k, v] : *r.fields) fields[k] = v;
      out["rendered"] = {{"source", r.source}, {"content", fields}};
    } else {
      out["rendered"] = {{"source", r.source}, {"error", r.error}};
    }
  }
  if (d.detail.contains("skipped")) out["skipped"] = d.detail["skipped"];
  return json_response(200, out);
}

HttpResponse Api::get_message(const std::string& id) {
  auto record = deps_.store.find(id);
  if (!record) return problem(404, "Not Found", "no message with id \"" + id + "\"");
  return json_response(200, message_view(*record, deps_.store.events(id)));
}

void Api::cancel_message(const std::string& id, Responder respond) {
  deps_.store.cancel(id, deps_.clock.now_ms(), [id, respond](bool ok, store::CancelResult r) {
    if (!ok) return respond(problem(503, "Service Unavailable", "the store could not record the cancellation; retry"));
    switch (r.status) {
      case store::CancelStatus::cancelled:
        return respond(json_response(200, {{"id", id}, {"state", "cancelled"}}));
      case store::CancelStatus::not_found:
        return respond(problem(404, "Not Found", "no message with id \"" + id + "\""));
      case store::CancelStatus::too_late:
        return respond(problem(409, "Conflict",
                               "message \"" + id + "\" is " + std::string(store::to_string(r.state)) +
                                   ": only a scheduled message, not yet handed to a provider, can be cancelled"));
    }
  });
}

HttpResponse Api::readiness() {
  bool store_ok = deps_.store.healthy();
  Json channels = Json::object();
  bool channels_ok = !deps_.channels.channels().empty();
  for (const auto& c : deps_.channels.channels()) {
    channels[c->name()] = c->ready() ? "ok" : "down";
    channels_ok = channels_ok && c->ready();
  }
  bool ready = store_ok && channels_ok && !draining_;
  Json body = {{"status", ready ? "ready" : "not_ready"},
               {"checks", {{"store", store_ok ? "ok" : "down"}, {"channels", channels}, {"draining", draining_.load()}}}};
  return json_response(ready ? 200 : 503, body);
}

}  // namespace tayori::api
