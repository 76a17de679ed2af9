// Fault injection (see sim_faults.hpp for the control document and the scope rules).
#include "sim_faults.hpp"

#include <algorithm>
#include <set>

namespace tayori::sim {

using nlohmann::json;

namespace {

const std::set<std::string> kKeys = {"provider",   "latency_ms", "error_share",      "error_status",
                                     "status",     "count",      "rate_limit_count", "retry_after",
                                     "drop_count", "drop_share", "unregistered",     "contact_errors"};

// Reads an integer key within [lo, hi]; returns an error text.
std::string read_int(const json& doc, const char* key, int64_t lo, int64_t hi, std::optional<int64_t>& out) {
  if (!doc.contains(key)) return {};
  const json& v = doc[key];
  if (!v.is_number_integer()) return std::string("\"") + key + "\" must be an integer";
  int64_t n = v.get<int64_t>();
  if (n < lo || n > hi)
    return std::string("\"") + key + "\" must be between " + std::to_string(lo) + " and " + std::to_string(hi);
  out = n;
  return {};
}

std::string read_share(const json& doc, const char* key, std::optional<double>& out) {
  if (!doc.contains(key)) return {};
  const json& v = doc[key];
  if (!v.is_number()) return std::string("\"") + key + "\" must be a number between 0 and 1";
  double d = v.get<double>();
  if (!(d >= 0.0 && d <= 1.0)) return std::string("\"") + key + "\" must be a number between 0 and 1";
  out = d;
  return {};
}

}  // namespace

std::string FaultTable::apply(const json& doc, const std::vector<std::string>& scopes, const CodeCheck& check) {
  std::map<std::string, Scope> next = scopes_;
  if (doc.is_array()) {
    for (const json& one : doc)
      if (auto err = apply_one(one, scopes, check, next); !err.empty()) return err;
  } else if (auto err = apply_one(doc, scopes, check, next); !err.empty()) {
    return err;
  }
  scopes_ = std::move(next);
  return {};
}

std::string FaultTable::apply_one(const json& doc, const std::vector<std::string>& scopes, const CodeCheck& check,
                                  std::map<std::string, Scope>& into) const {
  if (!doc.is_object()) return "a fault document is a JSON object (or an array of them)";
  for (const auto& [key, value] : doc.items())
    if (!kKeys.count(key)) return "unknown key \"" + key + "\"";
  std::string scope = "*";
  if (doc.contains("provider")) {
    if (!doc["provider"].is_string()) return "\"provider\" must be a string";
    scope = doc["provider"].get<std::string>();
    if (scope != "*" && std::find(scopes.begin(), scopes.end(), scope) == scopes.end()) {
      std::string known;
      for (const auto& s : scopes) known += (known.empty() ? "" : ", ") + s;
      return "unknown provider \"" + scope + "\" (known: " + known + ", or \"*\")";
    }
  }
  std::optional<int64_t> latency, error_status, status, count, rate_count, retry_after, drop_count;
  std::optional<double> error_share, drop_share;
  for (auto err :
       {read_int(doc, "latency_ms", 0, 600'000, latency), read_int(doc, "error_status", 500, 599, error_status),
        read_int(doc, "status", 100, 599, status), read_int(doc, "count", 0, 1'000'000, count),
        read_int(doc, "rate_limit_count", 0, 1'000'000, rate_count),
        read_int(doc, "retry_after", 0, 86'400, retry_after), read_int(doc, "drop_count", 0, 1'000'000, drop_count),
        read_share(doc, "error_share", error_share), read_share(doc, "drop_share", drop_share)})
    if (!err.empty()) return err;
  if (count && !status) return "\"count\" needs \"status\"";

  std::map<std::string, std::string> contacts;
  if (doc.contains("unregistered")) {
    if (!doc["unregistered"].is_array()) return "\"unregistered\" must be an array of strings";
    for (const json& c : doc["unregistered"]) {
      if (!c.is_string() || c.get_ref<const std::string&>().empty())
        return "\"unregistered\" must be an array of non-empty strings";
      contacts[c.get<std::string>()] = "unregistered";
    }
  }
  if (doc.contains("contact_errors")) {
    if (!doc["contact_errors"].is_object()) return "\"contact_errors\" must be an object {contact: code}";
    for (const auto& [contact, code] : doc["contact_errors"].items()) {
      if (!code.is_string()) return "\"contact_errors\" values must be strings";
      if (auto err = check(scope, code.get<std::string>()); !err.empty()) return err;
      contacts[contact] = code.get<std::string>();
    }
  }

  Scope& s = into[scope];
  if (latency) s.latency_ms = *latency;
  if (error_share) s.error_share = *error_share;
  if (error_status) s.error_status = static_cast<int>(*error_status);
  if (status) {
    // The original form {"status":503,"count":N}: the next N requests (1 when count is absent).
    s.status = static_cast<int>(*status);
    s.status_count = static_cast<int>(count.value_or(1));
  }
  if (rate_count) s.rate_limit_count = static_cast<int>(*rate_count);
  if (retry_after) s.retry_after = static_cast<int>(*retry_after);
  if (drop_count) s.drop_count = static_cast<int>(*drop_count);
  if (drop_share) s.drop_share = *drop_share;
  for (auto& [contact, code] : contacts) s.contacts[contact] = code;
  return {};
}

double FaultTable::draw() {
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;  // 53 random bits: uniform in [0, 1)
}

FaultDecision FaultTable::decide(const std::string& provider) {
  FaultDecision d;
  Scope none;
  Scope& p = scopes_.count(provider) ? scopes_[provider] : none;
  Scope& all = scopes_.count("*") ? scopes_["*"] : none;
  auto pick = [&](auto member) { return (p.*member) ? (p.*member) : (all.*member); };
  // A counted fault is consumed from the provider's scope first, then from "*".
  auto take = [&](int Scope::*counter) -> Scope* {
    for (Scope* s : {&p, &all})
      if (s->*counter > 0) {
        --(s->*counter);
        return s;
      }
    return nullptr;
  };

  d.latency_ms = pick(&Scope::latency_ms).value_or(0);
  if (take(&Scope::drop_count)) {
    d.drop = true;
    return d;
  }
  if (double share = pick(&Scope::drop_share).value_or(0.0); share > 0.0 && draw() < share) {
    d.drop = true;
    return d;
  }
  d.retry_after = pick(&Scope::retry_after);
  if (Scope* s = take(&Scope::status_count)) {
    d.status = s->status;
    return d;
  }
  if (take(&Scope::rate_limit_count)) {
    d.status = 429;
    if (!d.retry_after) d.retry_after = 1;
    return d;
  }
  if (double share = pick(&Scope::error_share).value_or(0.0); share > 0.0 && draw() < share) {
    d.status = pick(&Scope::error_status).value_or(503);
    return d;
  }
  d.retry_after.reset();
  return d;
}

std::optional<std::string> FaultTable::contact_code(const std::string& provider, const std::string& contact) const {
  for (const char* scope : {provider.c_str(), "*"}) {
    auto s = scopes_.find(scope);
    if (s == scopes_.end()) continue;
    auto c = s->second.contacts.find(contact);
    if (c != s->second.contacts.end()) return c->second;
  }
  return std::nullopt;
}

json FaultTable::to_json() const {
  json out = json::object();
  for (const auto& [name, s] : scopes_) {
    json j = json::object();
    if (s.latency_ms) j["latency_ms"] = *s.latency_ms;
    if (s.error_share) j["error_share"] = *s.error_share;
    if (s.error_status) j["error_status"] = *s.error_status;
    if (s.status_count > 0) {
      j["status"] = s.status;
      j["count"] = s.status_count;
    }
    if (s.rate_limit_count > 0) j["rate_limit_count"] = s.rate_limit_count;
    if (s.retry_after) j["retry_after"] = *s.retry_after;
    if (s.drop_count > 0) j["drop_count"] = s.drop_count;
    if (s.drop_share) j["drop_share"] = *s.drop_share;
    if (!s.contacts.empty()) j["contacts"] = s.contacts;
    out[name] = j;
  }
  return out;
}

}  // namespace tayori::sim
