// Twilio's webhook (POST /inbound/sms_twilio/<channel>: incoming SMS and status callbacks) through the real
// plugin and its C ABI: the input is the raw form body, signed here as Twilio signs it (X-Twilio-Signature =
// base64(HMAC-SHA1(auth token, URL + each parameter's name and value, sorted by name))) so that every input
// reaches the plugin's reading of the parameters and the keywords, not just its signature check.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include <tayori/plugin.hpp>
#include <tayori/provider_helpers.hpp>

#include "fuzz_support.hpp"
#include "crypto/crypto.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tayori;
  constexpr const char* kToken = "twilio-token";
  static plugin::Channel& channel = fuzz::one_channel(
      "sms", "sms_twilio",
      "      base_url: http://127.0.0.1:1\n      account_sid: AC0123456789abcdef0123456789abcdef\n"
      "      auth_token_env: TWILIO_TOKEN\n      from: '+15005550006'\n",
      {{"TWILIO_TOKEN", kToken}});
  plugin::InboundRequest r;
  r.method = "POST";
  r.url = "https://gw.example/inbound/sms_twilio/sms?fuzz=1";
  r.query = "fuzz=1";
  r.body = std::string(fuzz::text(data, size));
  auto params = sdk::parse_form(r.body);
  std::sort(params.begin(), params.end());
  std::string signed_text = r.url;
  for (const auto& [name, value] : params) signed_text += name + value;
  r.headers = {{"content-type", "application/x-www-form-urlencoded"},
               {"x-twilio-signature", crypto::base64_encode(crypto::hmac_sha1(kToken, signed_text).value())}};
  fuzz::signed_call(channel, std::move(r));
  return 0;
}
