#include "api/api.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <chrono>

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

HttpResponse json_response(int status, const Json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// application/json, with or without parameters (charset=utf-8), case-insensitive (RFC 9110 §8.3.1).
bool is_json(std::string_view content_type) {
  auto semi = content_type.find(';');
  std::string_view media = content_type.substr(0, semi);
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  std::string lower(media);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "application/json";
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
  if (path == "/v1/messages" || path == "/healthz" || path == "/readyz" || path == "/metrics") return path;
  if (path.rfind("/v1/messages/", 0) == 0) return "/v1/messages/{id}";
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

Api::Api(const config::Config& config, ApiDependencies deps) : server_(config.server), deps_(std::move(deps)) {
  for (const auto& k : config.api_keys) keys_.push_back({k.name, sha256(k.secret)});
  for (const auto& c : deps_.channels.channels()) channel_names_.insert(c->name());
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
  auto allow = [&](std::string_view allowed) {
    HttpResponse r = problem(405, "Method Not Allowed", "use " + std::string(allowed) + " on " + route);
    r.headers.emplace_back("Allow", std::string(allowed));
    counted(std::move(r));
  };

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
  std::string id = percent_decode(request.path.substr(std::string_view("/v1/messages/").size()));
  if (method == "GET") return counted(get_message(id));
  if (method == "DELETE") {
    if (draining_) return counted(problem(503, "Service Unavailable", "the gateway is shutting down"));
    return cancel_message(id, std::move(counted));
  }
  return allow("GET, DELETE");
}

void Api::submit(const HttpRequest& request, const std::string& key_name, Responder respond) {
  if (!is_json(request.header("content-type")))
    return respond(problem(415, "Unsupported Media Type", "send Content-Type: application/json"));
  Json body;
  try {
    body = Json::parse(request.body);
  } catch (const Json::parse_error& e) {
    return respond(problem(400, "Bad Request",
                           "the body is not valid JSON (at byte " + std::to_string(e.byte) + ")", {{"", e.what()}}));
  }
  bool batch = body.is_object() && body.contains("messages");
  std::vector<const Json*> items;
  if (batch) {
    std::vector<std::pair<std::string, std::string>> errors;
    const Json& list = body["messages"];
    for (auto it = body.begin(); it != body.end(); ++it)
      if (it.key() != "messages") errors.emplace_back("/" + it.key(), "is not a known field of a batch");
    if (!list.is_array() || list.empty())
      errors.emplace_back("/messages", "must be a non-empty array of messages");
    else if (list.size() > static_cast<size_t>(server_.max_batch))
      errors.emplace_back("/messages", "has " + std::to_string(list.size()) + " messages, more than the " +
                                           std::to_string(server_.max_batch) + " allowed in one request");
    if (!errors.empty()) return respond(problem(400, "Bad Request", "the batch is malformed", errors));
    for (const Json& m : list) items.push_back(&m);
  } else {
    items.push_back(&body);
  }

  core::ValidationRules rules;
  rules.channels = &channel_names_;
  int64_t now = deps_.clock.now_ms();

  // Per item: the index into the store batch, or its validation errors.
  struct Item {
    std::string id;
    int stored = -1;
    std::vector<core::FieldError> errors;
  };
  std::vector<Item> results(items.size());
  std::vector<store::NewMessage> to_store;
  for (size_t i = 0; i < items.size(); ++i) {
    std::string prefix = batch ? "/messages/" + std::to_string(i) : "";
    core::ParsedMessage parsed = core::parse_message(*items[i], rules, prefix);
    if (items[i]->is_object() && items[i]->contains("id") && (*items[i])["id"].is_string())
      results[i].id = (*items[i])["id"].get<std::string>();
    if (!parsed.message) {
      results[i].errors = std::move(parsed.errors);
      continue;
    }
    const core::Message& m = *parsed.message;
    store::NewMessage nm;
    nm.id = m.id;
    nm.api_key = key_name;
    nm.payload = core::canonical_json(*items[i]);
    nm.payload_hash = core::sha256_hex(nm.payload);
    nm.send_at_ms = m.send_at_ms;
    nm.expires_at_ms = m.expires_at_ms;
    nm.due_at_ms = m.send_at_ms.value_or(now);
    nm.events.push_back({"accepted", Json{{"api_key", key_name}}.dump()});
    nm.events.push_back({"scheduled", Json{{"due_at", format_rfc3339_ms(nm.due_at_ms)}}.dump()});
    results[i].stored = static_cast<int>(to_store.size());
    to_store.push_back(std::move(nm));
  }

  auto finish = [this, batch, results, received = request.received_at_ns, respond](
                    bool ok, const std::vector<store::AcceptResult>& stored) {
    if (!ok) {
      HttpResponse r = problem(503, "Service Unavailable", "the store could not durably record the messages; retry");
      r.headers.emplace_back("Retry-After", "1");
      return respond(std::move(r));
    }
    int64_t accepted = 0, duplicate = 0, rejected = 0, conflict = 0;
    bool wake = false;
    Json list = Json::array();
    std::vector<std::pair<std::string, std::string>> errors;
    for (size_t i = 0; i < results.size(); ++i) {
      const Item& item = results[i];
      Json r = {{"id", item.id.empty() ? Json() : Json(item.id)}};
      if (batch) r["index"] = i;
      if (item.stored < 0) {
        ++rejected;
        r["status"] = "rejected";
        Json e = Json::array();
        for (const auto& fe : item.errors) {
          e.push_back({{"pointer", fe.pointer}, {"detail", fe.detail}});
          errors.emplace_back(fe.pointer, fe.detail);
        }
        r["errors"] = e;
      } else {
        const store::AcceptResult& a = stored[item.stored];
        r["state"] = store::to_string(a.state);
        switch (a.status) {
          case store::AcceptStatus::accepted:
            ++accepted;
            wake = true;
            r["status"] = "accepted";
            break;
          case store::AcceptStatus::duplicate:
            ++duplicate;
            r["status"] = "duplicate";
            break;
          case store::AcceptStatus::conflict:
            ++conflict;
            r["status"] = "conflict";
            r["detail"] = "id \"" + item.id + "\" was already used for a different message";
            errors.emplace_back(batch ? "/messages/" + std::to_string(i) + "/id" : "/id",
                                "id \"" + item.id + "\" was already used for a different message");
            break;
        }
      }
      list.push_back(std::move(r));
    }
    deps_.metrics.count_intake("accepted", accepted);
    deps_.metrics.count_intake("duplicate", duplicate);
    deps_.metrics.count_intake("rejected", rejected);
    deps_.metrics.count_intake("conflict", conflict);
    if (wake && deps_.wake_dispatcher) deps_.wake_dispatcher();
    if (accepted + duplicate > 0) {
      auto elapsed = std::chrono::steady_clock::now().time_since_epoch() - std::chrono::nanoseconds(received);
      deps_.metrics.observe_accept_latency(std::chrono::duration<double>(elapsed).count());
    }
    if (!batch) {
      if (rejected) return respond(problem(400, "Bad Request", "the message is invalid", errors));
      if (conflict)
        return respond(problem(422, "Unprocessable Content",
                               "id \"" + results[0].id + "\" was already used for a different message", errors));
      return respond(json_response(202, list[0]));
    }
    if (accepted + duplicate == 0)
      return respond(problem(400, "Bad Request", "no message of the batch could be accepted", errors));
    return respond(json_response(202, {{"results", list},
                                       {"accepted", accepted},
                                       {"duplicate", duplicate},
                                       {"rejected", rejected},
                                       {"conflict", conflict}}));
  };
  if (to_store.empty()) return finish(true, {});
  deps_.store.accept(std::move(to_store), now, std::move(finish));
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
