// Signed links (gateway/links): any token a client sends to /r/ or /u/ is verified without a crash and is
// accepted only when this gateway signed it; claims signed here come back unchanged.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "links/links.hpp"

namespace {

// Message ids and option ids reach a token from parsed JSON, and channel names from the YAML config: UTF-8.
bool utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tayori::links;
  // Mid-rotation: a key with an id signs, an older one with an id and the unnamed one still verify.
  static const LinkSigner signer(
      "https://gw.example/tayori",
      std::vector<LinkKey>{{"k2", "second-secret"}, {"k1", "first-secret"}, {"", "link-secret"}});
  static const LinkSigner first("https://gw.example/tayori", std::vector<LinkKey>{{"k1", "first-secret"}});
  static const LinkSigner unnamed("https://gw.example/tayori", "link-secret");
  constexpr int64_t kNow = 1'780'000'000;
  FuzzedDataProvider in(data, size);
  if (in.ConsumeBool()) {
    // A token from outside: a forged one must not verify (the fuzzer cannot find a 128-bit MAC), so one that
    // verifies is exactly what one of the keys signs for its claims.
    std::string token = in.ConsumeRemainingBytesAsString();
    Verified v = signer.verify(token, kNow);
    if (v.ok() && signer.token(v.claims) != token && first.token(v.claims) != token &&
        unnamed.token(v.claims) != token)
      __builtin_trap();
    return 0;
  }
  LinkClaims c;
  c.kind = in.ConsumeBool() ? LinkKind::response : LinkKind::unsubscribe;
  c.message_id = in.ConsumeRandomLengthString(200);
  c.channel = in.ConsumeRandomLengthString(50);
  c.option = c.kind == LinkKind::response ? in.ConsumeRandomLengthString(50) : "";
  c.expires_at_s = in.ConsumeIntegral<int64_t>();
  if (!utf8(c.message_id) || !utf8(c.channel) || !utf8(c.option)) return 0;
  Verified v = signer.verify(signer.token(c), kNow);
  if (c.expires_at_s > kNow) {
    if (!v.ok() || v.claims.kind != c.kind || v.claims.message_id != c.message_id || v.claims.channel != c.channel ||
        v.claims.option != c.option || v.claims.expires_at_s != c.expires_at_s)
      __builtin_trap();
  } else if (v.error != LinkError::expired) {
    __builtin_trap();
  }
  return 0;
}
