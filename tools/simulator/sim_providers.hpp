// The simulated providers and their settings (filled from the command line in main.cpp). One file each:
// sim_line.cpp, sim_fcm.cpp (FCM HTTP v1 and the Google OAuth2 token endpoint), sim_apns.cpp, sim_twilio.cpp.
// docs/providers.md lists the wire facts they reproduce.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sim_types.hpp"

namespace tayori::sim {

struct LineConfig {
  std::string channel_token = "sim-line-token";                   // the accepted channel access token
  std::string channel_secret;                                     // default secret for /_sim/webhooks/line
  std::string destination = "U00000000000000000000000000000000";  // the bot's user id, in webhooks
};
std::unique_ptr<Provider> make_line(LineConfig config);

struct FcmConfig {
  std::string public_key_pem;  // the service account's public key; empty: every assertion is refused
  std::string client_email;    // when set, the assertion's iss must equal it
  std::string project;         // when set, messages:send for another project is refused
  std::string token_audience;  // when set, the only accepted aud; otherwise this simulator's own /token URL
  int64_t token_ttl_s = 3600;
};
// Two providers sharing the issued-token store: "oauth" (POST /token) and "fcm" (messages:send). The token
// endpoint is a different Google service (oauth2.googleapis.com), so it has its own fault scope.
std::vector<std::unique_ptr<Provider>> make_fcm(FcmConfig config);

struct ApnsConfig {
  std::string public_key_pem;       // the .p8 key's public half; empty: every provider token is refused
  std::string key_id;               // expected JWT header kid
  std::string team_id;              // expected JWT claim iss
  std::vector<std::string> topics;  // accepted bundle ids; empty: any well-formed topic
  int max_token_updates = 3;        // distinct new provider tokens accepted per 20 minutes
};
std::unique_ptr<Provider> make_apns(ApnsConfig config);

struct TwilioConfig {
  std::string account_sid = "AC00000000000000000000000000000000";
  std::string auth_token = "sim-twilio-token";
  std::vector<std::string> from_numbers;  // owned senders; empty: any valid From (magic numbers still apply)
  int64_t callback_delay_ms = 100;        // delay before the StatusCallback POST
};
std::unique_ptr<Provider> make_twilio(TwilioConfig config);

}  // namespace tayori::sim
