// Injected faults: what the simulated infrastructure in front of each provider does to a request before the
// provider sees it (latency, 5xx, 429 with Retry-After, dropped connections), and which contacts get the
// provider's dead-contact (or another named) answer.
//
// Faults are kept per scope: one per provider name, plus "*" for every provider. A request to provider P
// consults P's scope first, then "*": counted faults are consumed from P before "*"; a setting (latency,
// shares, statuses) set on P overrides the one on "*"; contact lists are the union of both.
//
// The control document (POST /_sim/faults, and --faults at start) is a JSON object, or an array of them:
//   {"provider": "fcm"|"apns"|"line"|"twilio"|"oauth"|"*"   (default "*"),
//    "latency_ms": 250,                         added before the answer (and before a drop)
//    "error_share": 0.25, "error_status": 503,  that share of requests get the provider's 5xx body
//    "status": 503, "count": 2,                 the next N requests get that status (the original form)
//    "rate_limit_count": 3, "retry_after": 7,   the next N get 429 (+ Retry-After: 7 where the provider sends it)
//    "drop_count": 1, "drop_share": 0.1,        close the connection without answering
//    "unregistered": ["token", "+15551234567"], the provider's dead-contact answer for these contacts
//    "contact_errors": {"token": "SENDER_ID_MISMATCH"}}   a provider-specific answer per contact
// Each document changes only the keys it names; lists are added to. DELETE /_sim/faults clears everything.
// Shares draw from a PRNG seeded at start (--seed), so a run is reproducible request for request.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

namespace tayori::sim {

// What the infrastructure does to one request.
struct FaultDecision {
  int64_t latency_ms = 0;
  bool drop = false;
  int status = 0;                  // 0: let the provider answer
  std::optional<int> retry_after;  // seconds, for an injected 429/5xx
};

class FaultTable {
 public:
  // Checks a contact code for a scope ("*" or a provider name); returns an error text, empty when valid.
  using CodeCheck = std::function<std::string(const std::string& scope, const std::string& code)>;

  explicit FaultTable(uint64_t seed) : rng_(seed) {}

  // Applies a control document (object or array of objects). `scopes` are the valid provider names. All or
  // nothing: on error (returned as text) the table is unchanged.
  std::string apply(const nlohmann::json& doc, const std::vector<std::string>& scopes, const CodeCheck& check);
  void clear() { scopes_.clear(); }

  // Decides the fate of one request to `provider`, consuming counted faults and drawing shares.
  FaultDecision decide(const std::string& provider);
  // The code configured for `contact` at `provider` (provider scope first, then "*").
  std::optional<std::string> contact_code(const std::string& provider, const std::string& contact) const;

  nlohmann::json to_json() const;

 private:
  struct Scope {
    std::optional<int64_t> latency_ms;
    std::optional<double> error_share;
    std::optional<int> error_status;
    int status_count = 0;
    int status = 0;
    int rate_limit_count = 0;
    std::optional<int> retry_after;
    int drop_count = 0;
    std::optional<double> drop_share;
    std::map<std::string, std::string> contacts;  // contact -> code ("unregistered" or provider-specific)
  };

  std::string apply_one(const nlohmann::json& doc, const std::vector<std::string>& scopes, const CodeCheck& check,
                        std::map<std::string, Scope>& into) const;
  double draw();  // uniform in [0, 1)

  std::map<std::string, Scope> scopes_;
  std::mt19937_64 rng_;  // the standard fixes mt19937_64's output sequence: same seed, same run
};

}  // namespace tayori::sim
