// The recipients, consent and suppression resources of the public API:
//   GET|PUT|DELETE /v1/recipients/{id}         profile; DELETE is the right to erasure
//   GET|PUT        /v1/recipients/{id}/consent  effective consent per channel x purpose; PUT appends
//   GET            /v1/recipients/{id}/consent/history
//   GET|POST       /v1/suppressions, GET|DELETE /v1/suppressions/{contact}
#include <future>
#include <regex>

#include "api/api.hpp"
#include "api/http_util.hpp"
#include "common/json.hpp"
#include "common/time.hpp"

namespace tayori::api {

using core::Json;

namespace {

Json consent_json(const policy::ConsentRecord& r) {
  return {{"channel", r.channel},     {"purpose", policy::to_string(r.purpose)}, {"state", policy::to_string(r.state)},
          {"source", r.source},       {"evidence", r.evidence},                {"at", format_rfc3339_ms(r.at_ms)}};
}

Json suppression_json(const policy::Suppression& s) {
  return {{"contact", s.contact}, {"reason", s.reason}, {"source", s.source}, {"at", format_rfc3339_ms(s.at_ms)}};
}

// Waits for a group-committed store write; these resources are rare writes, so blocking the handler
// thread for one commit is simpler than a continuation and costs nothing that matters.
Result<void> wait(const std::function<void(std::function<void(Result<void>)>)>& write) {
  std::promise<Result<void>> done;
  auto f = done.get_future();
  write([&done](Result<void> verdict) { done.set_value(std::move(verdict)); });
  return f.get();
}

HttpResponse invalid(const std::vector<core::FieldError>& errors, const std::string& what) {
  std::vector<std::pair<std::string, std::string>> list;
  for (const auto& e : errors) list.emplace_back(e.pointer, e.detail);
  return problem(400, "Bad Request", what, list);
}

const std::regex kSource("^[a-z][a-z0-9_.]{0,63}$");

}  // namespace

// The latest consent record per configured channel x purpose, or the configured default where there is none.
Json Api::effective_consent(const std::string& id) {
  auto current = deps_.store.consent_current(id);
  Json list = Json::array();
  for (const auto& channel : channel_names_) {
    for (policy::Purpose purpose : {policy::Purpose::transactional, policy::Purpose::marketing}) {
      const policy::ConsentRecord* found = nullptr;
      for (const auto& r : current)
        if (r.channel == channel && r.purpose == purpose) found = &r;
      if (found) {
        Json j = consent_json(*found);
        j["default"] = false;
        list.push_back(j);
      } else {
        list.push_back({{"channel", channel},
                        {"purpose", policy::to_string(purpose)},
                        {"state", policy::to_string(policy_.consent.default_for(channel, purpose))},
                        {"default", true}});
      }
    }
  }
  return list;
}

void Api::recipients(const HttpRequest& request, const std::string& route, Responder respond) {
  const std::string prefix = "/v1/recipients/";
  std::string rest = request.path.substr(prefix.size());
  std::string tail = route == "/v1/recipients/{id}/consent/history" ? "/consent/history"
                     : route == "/v1/recipients/{id}/consent"       ? "/consent"
                                                                    : "";
  std::string id = percent_decode(rest.substr(0, rest.size() - tail.size()));
  if (id.empty() || id.find('/') != std::string::npos)
    return respond(problem(404, "Not Found", "no such resource: " + request.path));
  if (id.size() > core::kMaxRecipientIdBytes)
    return respond(problem(400, "Bad Request",
                           "the recipient id in the path is " + std::to_string(id.size()) + " bytes; at most " +
                               std::to_string(core::kMaxRecipientIdBytes) + " are allowed (percent-decoded)"));
  const std::string& method = request.method;
  int64_t now = deps_.clock.now_ms();


  if (tail == "/consent/history") {
    if (method != "GET") return respond(method_not_allowed(route, "GET"));
    Json list = Json::array();
    for (const auto& r : deps_.store.consent_history(id)) list.push_back(consent_json(r));
    return respond(json_response(200, {{"recipient_id", id}, {"history", list}}));
  }

  if (tail == "/consent") {
    if (method == "GET") return respond(json_response(200, {{"recipient_id", id}, {"consent", effective_consent(id)}}));
    if (method != "PUT") return respond(method_not_allowed(route, "GET, PUT"));
    auto body = json_body(request, respond);
    if (!body) return;
    // One record, or {"consent": [records]}: each appended to the history, none overwritten.
    std::vector<const Json*> items;
    bool many = body->is_object() && body->contains("consent");
    if (many && (*body)["consent"].is_array())
      for (const auto& r : (*body)["consent"]) items.push_back(&r);
    else if (!many)
      items.push_back(&*body);
    std::vector<core::FieldError> errors;
    if (items.empty()) errors.push_back({"/consent", "must be a non-empty array of consent records"});
    std::vector<policy::ConsentRecord> records;
    for (size_t i = 0; i < items.size(); ++i) {
      const Json& j = *items[i];
      std::string p = many ? "/consent/" + std::to_string(i) : "";
      if (!j.is_object()) {
        errors.push_back({p, "must be an object {channel, purpose, state, source?, evidence?, at?}"});
        continue;
      }
      for (auto it = j.begin(); it != j.end(); ++it)
        if (it.key() != "channel" && it.key() != "purpose" && it.key() != "state" && it.key() != "source" &&
            it.key() != "evidence" && it.key() != "at")
          errors.push_back({p + "/" + it.key(), "is not a known field"});
      policy::ConsentRecord r;
      r.source = "api";
      r.at_ms = now;
      auto str = [&](const char* key) -> std::optional<std::string> {
        if (!j.contains(key)) return std::nullopt;
        if (!j[key].is_string()) {
          errors.push_back({p + "/" + key, "must be a string"});
          return std::nullopt;
        }
        return j[key].get<std::string>();
      };
      auto channel = str("channel");
      if (!channel)
        errors.push_back({p + "/channel", "is required"});
      else if (!channel_names_.count(*channel))
        errors.push_back({p + "/channel", "is not a configured channel \"" + *channel + "\""});
      else
        r.channel = *channel;
      auto purpose = str("purpose");
      if (purpose && (*purpose == "marketing" || *purpose == "transactional"))
        r.purpose = *purpose == "marketing" ? policy::Purpose::marketing : policy::Purpose::transactional;
      else
        errors.push_back({p + "/purpose", "must be \"marketing\" or \"transactional\""});
      auto state = str("state");
      auto parsed_state = state ? policy::parse_consent_state(*state) : std::nullopt;
      if (!parsed_state)
        errors.push_back({p + "/state", "must be \"opted_in\" or \"opted_out\""});
      else
        r.state = *parsed_state;
      if (auto v = str("source")) {
        if (!std::regex_match(*v, kSource))
          errors.push_back({p + "/source", "must be lower-case letters, digits, _ and . (e.g. api, web_form, line_follow)"});
        else
          r.source = *v;
      }
      if (auto v = str("evidence")) {
        if (v->size() > 2048)
          errors.push_back({p + "/evidence", "must be at most 2048 characters"});
        else
          r.evidence = *v;
      }
      if (auto v = str("at")) {
        auto at = parse_rfc3339_ms(*v);
        if (!at || *at > now + 60'000)
          errors.push_back({p + "/at", "must be an RFC 3339 date-time with an offset, not in the future"});
        else
          r.at_ms = *at;
      }
      records.push_back(r);
    }
    if (!errors.empty()) return respond(invalid(errors, "the consent record is invalid"));
    // One store operation for every record: one group commit, all of them or none, answered when it is
    // durable (as intake is) instead of an HTTP thread waiting for a commit per record.
    deps_.store.append_consent(id, std::move(records), [this, id, respond](const Result<void>& stored) {
      if (!stored) return respond(store_unavailable("the change", stored.error().message));
      answer_reading(respond, [&] {
        respond(json_response(200, {{"recipient_id", id}, {"consent", effective_consent(id)}}));
      });
    });
    return;
  }

  auto profile_json = [&](const store::RecipientProfile& p) {
    Json contacts = parse_json_or_discarded(p.contacts_json);
    Json suppressed = Json::array();
    std::vector<std::string> points;
    if (contacts.is_object())
      for (auto it = contacts.begin(); it != contacts.end(); ++it) {
        if (it->is_string()) points.push_back(*it);
        if (it.key() == "push" && it->is_array())
          for (const auto& t : *it)
            if (t.contains("token") && t["token"].is_string()) points.push_back(t["token"]);
      }
    for (const auto& s : deps_.store.suppressions(points)) suppressed.push_back(suppression_json(s));
    return Json{{"id", p.id},
                {"timezone", p.timezone.empty() ? Json() : Json(p.timezone)},
                {"locale", p.locale.empty() ? Json() : Json(p.locale)},
                {"contacts", contacts.is_discarded() ? Json::object() : contacts},
                {"updated_at", format_rfc3339_ms(p.updated_at_ms)},
                {"erased", p.erased},
                {"suppressed_contacts", suppressed},
                {"consent", effective_consent(id)}};
  };

  if (method == "GET") {
    auto p = deps_.store.recipient(id);
    if (!p) return respond(problem(404, "Not Found", "no recipient with id \"" + id + "\""));
    return respond(json_response(200, profile_json(*p)));
  }
  if (method == "PUT") {
    auto body = json_body(request, respond);
    if (!body) return;
    core::Recipient parsed;
    std::vector<core::FieldError> errors;
    core::parse_recipient(*body, "", false, parsed, errors);
    if (!errors.empty()) return respond(invalid(errors, "the recipient is invalid"));
    store::RecipientProfile p{id, parsed.timezone, parsed.locale,
                              core::canonical_json(body->value("contacts", Json::object())), now, false};
    Result<void> stored = wait([&](auto done) { deps_.store.put_recipient(p, now, done); });
    if (!stored) return respond(store_unavailable("the change", stored.error().message));
    return respond(json_response(200, profile_json(*deps_.store.recipient(id))));
  }
  if (method == "DELETE") {
    deps_.store.erase_recipient(id, now, [id, respond](const Result<bool>& found) {
      if (!found) return respond(store_unavailable("the change", found.error().message));
      if (!*found) return respond(problem(404, "Not Found", "no recipient with id \"" + id + "\""));
      respond(json_response(200, {{"id", id}, {"erased", true}}));
    });
    return;
  }
  respond(method_not_allowed(route, "GET, PUT, DELETE"));
}

void Api::suppressions(const HttpRequest& request, const std::string& route, const Responder& respond) {
  const std::string& method = request.method;
  if (route == "/v1/suppressions") {
    if (method == "GET") {
      int limit = 100;
      std::string l = query_param(request.query, "limit");
      if (!l.empty()) {
        if (l.size() > 4 || l.find_first_not_of("0123456789") != std::string::npos || std::stoi(l) < 1 ||
            std::stoi(l) > 1000)
          return respond(problem(400, "Bad Request", "the query parameter limit must be a number from 1 to 1000"));
        limit = std::stoi(l);
      }
      auto list = deps_.store.list_suppressions(query_param(request.query, "after"), limit);
      Json items = Json::array();
      for (const auto& s : list) items.push_back(suppression_json(s));
      Json next = static_cast<int>(list.size()) == limit ? Json(list.back().contact) : Json();
      return respond(json_response(200, {{"suppressions", items}, {"next_after", next}}));
    }
    if (method != "POST") return respond(method_not_allowed(route, "GET, POST"));
    auto body = json_body(request, respond);
    if (!body) return;
    std::vector<core::FieldError> errors;
    policy::Suppression s;
    s.source = "api";
    s.at_ms = deps_.clock.now_ms();
    if (!body->is_object()) {
      errors.push_back({"", "must be an object {contact, reason, source?}"});
    } else {
      for (auto it = body->begin(); it != body->end(); ++it)
        if (it.key() != "contact" && it.key() != "reason" && it.key() != "source")
          errors.push_back({"/" + it.key(), "is not a known field"});
      auto contact = body->find("contact");
      if (contact == body->end() || !contact->is_string() || contact->get<std::string>().empty() ||
          contact->get<std::string>().size() > 512)
        errors.push_back({"/contact", "must be the contact point: an address, E.164 number, user id or token"});
      else
        s.contact = *contact;
      auto reason = body->find("reason");
      if (reason == body->end() || !reason->is_string() || !std::regex_match(reason->get<std::string>(), kSource))
        errors.push_back({"/reason", "must name the reason (e.g. hard_bounce, complaint, manual)"});
      else
        s.reason = *reason;
      auto source = body->find("source");
      if (source != body->end()) {
        if (!source->is_string() || !std::regex_match(source->get<std::string>(), kSource))
          errors.push_back({"/source", "must be lower-case letters, digits, _ and ."});
        else
          s.source = *source;
      }
    }
    if (!errors.empty()) return respond(invalid(errors, "the suppression is invalid"));
    Result<void> stored = wait([&](auto done) { deps_.store.add_suppression(s, done); });
    if (!stored) return respond(store_unavailable("the change", stored.error().message));
    return respond(json_response(201, suppression_json(s)));
  }
  std::string contact = percent_decode(request.path.substr(std::string_view("/v1/suppressions/").size()));
  if (method == "GET") {
    auto found = deps_.store.suppressions({contact});
    if (found.empty()) return respond(problem(404, "Not Found", "\"" + contact + "\" is not suppressed"));
    return respond(json_response(200, suppression_json(found[0])));
  }
  if (method == "DELETE") {
    deps_.store.remove_suppression(contact, [contact, respond](const Result<bool>& found) {
      if (!found) return respond(store_unavailable("the change", found.error().message));
      if (!*found) return respond(problem(404, "Not Found", "\"" + contact + "\" is not suppressed"));
      respond(json_response(200, {{"contact", contact}, {"suppressed", false}}));
    });
    return;
  }
  respond(method_not_allowed(route, "GET, DELETE"));
}

}  // namespace tayori::api
