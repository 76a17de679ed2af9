// LINE's webhook (POST /inbound/line/<channel>) through the real plugin and its C ABI: the input is the raw
// body, signed here with the channel secret as LINE signs it (x-line-signature = base64(HMAC-SHA256)) so
// that every input reaches the plugin's JSON parsing, not just its signature check.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "crypto/crypto.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tayori;
  constexpr const char* kSecret = "line-channel-secret";
  static plugin::Channel& channel = fuzz::one_channel(
      "line", "line",
      "      base_url: http://127.0.0.1:1\n      channel_access_token_env: LINE_TOKEN\n      channel_secret_env: LINE_SECRET\n",
      {{"LINE_TOKEN", "tok"}, {"LINE_SECRET", kSecret}});
  plugin::InboundRequest r;
  r.method = "POST";
  r.url = "https://gw.example/inbound/line/line";
  r.body = std::string(fuzz::text(data, size));
  r.headers = {{"content-type", "application/json"},
               {"x-line-signature", crypto::base64_encode(crypto::hmac_sha256(kSecret, r.body).value())}};
  fuzz::signed_call(channel, std::move(r));
  return 0;
}
