// tayori/testing.hpp — a fake host for a plugin's own tests: no gateway, no network, no database.
//
//   tayori::testing::Plugin p = tayori::testing::Plugin::load(PLUGIN_PATH, {{"url", "https://hooks.example/in"}});
//   ASSERT_TRUE(p.ok()) << p.error();
//   tayori::testing::Delivery delivery;  // every field has a plausible default
//   delivery.content = {{"text", "hello"}};
//   tayori::testing::Built built = p.build(delivery);
//   // built.requests[0].url, .headers, .body: what the host would send
//   tayori::testing::Outcome o = p.classify(delivery, {503, {{"Retry-After", "5"}}});
//   // o.retry() && o.retry_after_ms == 5000
//   tayori::testing::Inbound in = p.inbound({{{"x-signature", sig}}, R"({"events":[]})"});
//
// It speaks to the plugin only through the C descriptor (tayori/plugin.h), exactly as the gateway does, so
// what a test sees is what the gateway would see: the request a delivery becomes, the outcome an answer
// becomes, the events and the HTTP answer an inbound call becomes. A plugin is loaded from its built .so
// (Plugin::load, dlopen: the artefact you ship) or taken from a descriptor linked into the test
// (Plugin::of(tayori_plugin_entry())).
//
// What the fake host does, and what it leaves to the test:
// - Settings are checked against the plugin's declared map the way the gateway checks a channel's YAML:
//   unknown keys, missing required keys and ill-typed values are refused naming the key; defaults are
//   applied; durations are handed over in milliseconds. A secret is given under its own name (the gateway
//   reads it from the environment variable `<name>_env` names).
// - Its clock is `host().now_ms`, which only the test moves.
// - host_log lines are kept in `host().logs`.
// - host_base64, host_hmac (SHA-256, SHA-1) and host_equal_constant_time are computed here, so signatures a
//   plugin makes or verifies are real. They are written for tests, not for production: the gateway's own
//   services use OpenSSL.
// - host_token caches like the gateway (refresh_before_ms, one mint per key) on the fake clock.
// - host_exchange and host_sign_jwt answer from `host().exchange` and `host().sign_jwt`, which a test sets;
//   unset, an exchange is a transport failure and signing fails, each saying so.
// Nothing here is thread-safe: a test drives one call at a time.
#ifndef TAYORI_TESTING_HPP
#define TAYORI_TESTING_HPP

#include <dlfcn.h>
#include <tayori/plugin.h>
#include <tayori/plugin.hpp>
#include <tayori/provider_helpers.hpp>
#include <tayori/text.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tayori::testing {

using Fields = std::vector<std::pair<std::string, std::string>>;

namespace detail {

// The SDK's own conversions and text helpers serve here too: one copy of each on the plugin's side.
using sdk::str;
inline std::string text(tayori_str s) { return std::string(sdk::view(s)); }
// Header lookup, case-insensitive (RFC 9110 §5.1).
inline std::optional<std::string> find_field(const Fields& fields, std::string_view name) {
  for (const auto& [k, v] : fields)
    if (sdk::iequals(k, name)) return v;
  return std::nullopt;
}
inline Fields copy_fields(const tayori_kv* kv, size_t n) {
  Fields out;
  for (size_t i = 0; i < n; ++i) out.emplace_back(text(kv[i].key), text(kv[i].value));
  return out;
}
inline std::vector<tayori_kv> raw_fields(const Fields& fields) {
  std::vector<tayori_kv> out;
  for (const auto& [k, v] : fields) out.push_back({str(k), str(v)});
  return out;
}
inline void write_error(tayori_error_buf error, std::string_view message) {
  sdk::copy_to(error.data, error.capacity, message);
}

// ---- SHA-256 (FIPS 180-4 §6.2) and SHA-1 (§6.1), and HMAC over them (RFC 2104) ------------------------
// Enough to make and check the signatures providers use (LINE: HMAC-SHA256, Twilio: HMAC-SHA1) in a test
// that links nothing but this header.

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
inline uint32_t rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

// The message padded to whole 64-byte blocks with its bit length at the end (FIPS 180-4 §5.1.1).
inline std::string md_padded(std::string_view message) {
  std::string m(message);
  const uint64_t bits = static_cast<uint64_t>(message.size()) * 8;
  m += static_cast<char>(0x80);
  while (m.size() % 64 != 56) m += '\0';
  for (int shift = 56; shift >= 0; shift -= 8) m += static_cast<char>((bits >> shift) & 0xFF);
  return m;
}
inline uint32_t be32(const std::string& m, size_t at) {
  return (uint32_t(uint8_t(m[at])) << 24) | (uint32_t(uint8_t(m[at + 1])) << 16) | (uint32_t(uint8_t(m[at + 2])) << 8) |
         uint32_t(uint8_t(m[at + 3]));
}
template <size_t N>
std::string digest_bytes(const std::array<uint32_t, N>& h) {
  std::string out;
  for (uint32_t word : h)
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((word >> shift) & 0xFF);
  return out;
}

inline std::string sha256(std::string_view message) {
  static constexpr uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
      0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
      0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
      0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
      0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
      0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
      0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2};
  std::array<uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const std::string m = md_padded(message);
  for (size_t block = 0; block < m.size(); block += 64) {
    uint32_t w[64];
    for (int t = 0; t < 16; ++t) w[t] = be32(m, block + 4 * t);
    for (int t = 16; t < 64; ++t) {
      uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; ++t) {
      uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[t] + w[t];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
  }
  return digest_bytes(h);
}

inline std::string sha1(std::string_view message) {
  std::array<uint32_t, 5> h = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  const std::string m = md_padded(message);
  for (size_t block = 0; block < m.size(); block += 64) {
    uint32_t w[80];
    for (int t = 0; t < 16; ++t) w[t] = be32(m, block + 4 * t);
    for (int t = 16; t < 80; ++t) w[t] = rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; ++t) {
      uint32_t f = t < 20 ? (b & c) | (~b & d) : t < 40 ? b ^ c ^ d : t < 60 ? (b & c) | (b & d) | (c & d) : b ^ c ^ d;
      uint32_t k = t < 20 ? 0x5A827999 : t < 40 ? 0x6ED9EBA1 : t < 60 ? 0x8F1BBCDC : 0xCA62C1D6;
      uint32_t temp = rotl(a, 5) + f + e + k + w[t];
      e = d, d = c, c = rotl(b, 30), b = a, a = temp;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  return digest_bytes(h);
}

inline std::string hmac(tayori_hash hash, std::string_view key, std::string_view data) {
  auto digest = [&](std::string_view m) { return hash == TAYORI_HASH_SHA1 ? sha1(m) : sha256(m); };
  std::string k = key.size() > 64 ? digest(key) : std::string(key);
  k.resize(64, '\0');
  std::string inner = k, outer = k;
  for (auto& c : inner) c = static_cast<char>(c ^ 0x36);
  for (auto& c : outer) c = static_cast<char>(c ^ 0x5c);
  return digest(outer + digest(inner + std::string(data)));
}

// RFC 4648 §4 (padded) or §5 (url-safe, unpadded), as host_base64 gives them: the SDK's encoder, and for §5 its
// two letters swapped and the padding dropped.
inline std::string base64(std::string_view bytes, bool url_safe) {
  std::string out = sdk::base64_encode(bytes);
  if (!url_safe) return out;
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

// "250ms", "10s", "5m", "24h", "7d" in milliseconds, as the gateway hands TAYORI_SETTING_DURATION over.
inline std::optional<int64_t> duration_ms(const std::string& v) {
  size_t digits = 0;
  while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  const int64_t n = std::stoll(v.substr(0, digits));
  const std::string unit = v.substr(digits);
  static const std::pair<const char*, int64_t> units[] = {
      {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}};
  for (const auto& [name, scale] : units)
    if (unit == name) return n * scale;
  return std::nullopt;
}

}  // namespace detail

// ---- What a test gives and gets ------------------------------------------------------------------------

// One response option of a two-way message (plugin.h tayori_response_option).
struct ResponseOption {
  std::string id, label, ref, url;
};

// A delivery as the host would hand it to the plugin. Every field has a plausible default, so a test sets
// only what it is about.
struct Delivery {
  std::string message_id = "msg-1";
  std::string delivery_id = "0123456789abcdef0123456789abcdef";
  uint32_t attempt = 1;
  std::string channel = "test";
  std::string recipient_id = "recipient-1";
  std::string contact = "contact-1";
  tayori_purpose purpose = TAYORI_PURPOSE_TRANSACTIONAL;
  std::string category = "general";
  std::string locale;
  std::string timezone;
  int64_t expires_at_ms = 0;
  Fields content;  // rendered fields: subject, text, html, title, body, ...
  std::string metadata_json = "{}";
  std::string unsubscribe_url;
  std::string callback_url;
  std::vector<ResponseOption> responses;
};

// A request the plugin built, copied out of the call.
struct Request {
  tayori_request_kind kind = TAYORI_REQUEST_HTTP;
  std::string method, url, body;
  Fields headers;
  std::string mail_from, username, password;
  std::vector<std::string> mail_rcpt;
  bool allow_plaintext = false;
  std::optional<std::string> header(std::string_view name) const { return detail::find_field(headers, name); }
};

// What a provider answered (or that nothing arrived: transport_error != 0): Response{503, {{"Retry-After", "5"}}},
// Response{200, {}, R"({"id":"p-1"})"}, Response::transport_failure("timeout").
struct Response {
  int status = 200;
  Fields headers;
  std::string body;
  int transport_error = 0;
  std::string transport_error_text;

  Response(int status = 200, Fields headers = {}, std::string body = {})
      : status(status), headers(std::move(headers)), body(std::move(body)) {}
  static Response transport_failure(std::string why) {
    Response r(0);
    r.transport_error = 1;
    r.transport_error_text = std::move(why);
    return r;
  }
};

// What build / build_batch made of deliveries.
struct Built {
  tayori_status status = TAYORI_ERROR;
  std::string error;
  std::vector<Request> requests;
  bool ok() const { return status == TAYORI_OK; }
};

// A verdict as the host reads it.
struct Outcome {
  tayori_status status = TAYORI_ERROR;  // of the callback itself
  tayori_outcome_kind kind = TAYORI_OUTCOME_RETRY;
  std::string reason, provider_message_id;
  int64_t retry_after_ms = 0;
  bool deactivate_contact = false;
  bool delivered() const { return status == TAYORI_OK && kind == TAYORI_OUTCOME_DELIVERED; }
  bool retry() const { return status != TAYORI_OK || kind == TAYORI_OUTCOME_RETRY; }
  bool permanent() const { return status == TAYORI_OK && kind == TAYORI_OUTCOME_PERMANENT; }
};

// A call that reached the plugin's inbound endpoint: InboundCall{{{"X-Signature", sig}}, body}. Header names as
// the provider sent them; the host lower-cases them, and so does this fake host before the call.
struct InboundCall {
  Fields headers;
  std::string body;
  std::string method = "POST";
  std::string url = "https://gateway.example/inbound/plugin/test";
  std::string path = "/inbound/plugin/test";
  std::string query;

  InboundCall(Fields headers = {}, std::string body = {}) : headers(std::move(headers)), body(std::move(body)) {}
};

// One event on_inbound emitted (plugin.h tayori_inbound_event), copied.
struct Event {
  tayori_event_type type = TAYORI_EVENT_RESPONDED;
  std::string provider_event_id, message_ref, contact, response_id, text, ref;
  int64_t occurred_at_ms = 0;
  bool deactivate_contact = false;
  bool reactivate_contact = false;
};

// What an inbound call became: the events and the HTTP answer the provider gets.
struct Inbound {
  tayori_status status = TAYORI_ERROR;
  std::string error;
  std::vector<Event> events;  // what the gateway applies: none when the call was refused
  size_t emitted = 0;          // what the plugin emitted, applied or not (a refusal should come before any)
  int http_status = 200;  // as the gateway answers: 400 for TAYORI_INVALID, 500 for TAYORI_ERROR, unless set
  std::string content_type = "text/plain";
  std::string body;
};

// ---- The fake host ------------------------------------------------------------------------------------

class FakeHost {
 public:
  int64_t now_ms = 1'767'225'600'000;  // 2026-01-01T00:00:00Z; only the test moves it
  std::vector<std::pair<tayori_log_level, std::string>> logs;
  // host_exchange: the answer to a prerequisite call (an OAuth grant). Unset: a transport failure.
  std::function<Response(const Request&)> exchange;
  // host_sign_jwt(alg, header_extra_json, claims_json, pem) -> the compact JWS, or nullopt to fail. Unset:
  // signing fails. (JWS signatures need RSA/ECDSA, which this header does not carry.)
  std::function<std::optional<std::string>(const std::string&, const std::string&, const std::string&,
                                           const std::string&)>
      sign_jwt;
  std::vector<Request> exchanged;  // every request host_exchange was given
  int mints = 0;                   // how often host_token called a mint function

  FakeHost() {
    raw_.struct_size = sizeof raw_;
    raw_.abi_major = TAYORI_ABI_MAJOR;
    raw_.abi_minor = TAYORI_ABI_MINOR;
    raw_.host_ctx = this;
    raw_.host_log = [](void* ctx, tayori_log_level level, tayori_str message) {
      self(ctx).logs.emplace_back(level, detail::text(message));
    };
    raw_.host_now_ms = [](void* ctx) { return self(ctx).now_ms; };
    raw_.host_sign_jwt = [](void* ctx, tayori_str alg, tayori_str header_extra, tayori_str claims, tayori_str pem,
                            tayori_out jwt, tayori_error_buf error) {
      FakeHost& h = self(ctx);
      if (!h.sign_jwt) return fail(error, "the fake host signs no JWT: set FakeHost::sign_jwt");
      auto signed_jwt = h.sign_jwt(detail::text(alg), detail::text(header_extra), detail::text(claims), detail::text(pem));
      if (!signed_jwt) return fail(error, "FakeHost::sign_jwt refused");
      jwt.write(jwt.out_ctx, detail::str(*signed_jwt));
      return TAYORI_OK;
    };
    raw_.host_hmac = [](void*, tayori_hash hash, tayori_str key, tayori_str data, tayori_out mac,
                        tayori_error_buf error) {
      if (hash != TAYORI_HASH_SHA256 && hash != TAYORI_HASH_SHA1) return fail(error, "unknown hash");
      std::string v = detail::hmac(hash, detail::text(key), detail::text(data));
      mac.write(mac.out_ctx, detail::str(v));
      return TAYORI_OK;
    };
    raw_.host_base64 = [](void*, tayori_str bytes, int url_safe, tayori_out out) {
      std::string v = detail::base64(detail::text(bytes), url_safe != 0);
      out.write(out.out_ctx, detail::str(v));
    };
    raw_.host_equal_constant_time = [](void*, tayori_str a, tayori_str b) {
      if (a.len != b.len) return 0;
      unsigned char diff = 0;
      for (size_t i = 0; i < a.len; ++i) diff |= static_cast<unsigned char>(a.data[i] ^ b.data[i]);
      return diff == 0 ? 1 : 0;
    };
    raw_.host_token = [](void* ctx, tayori_str key, int64_t refresh_before_ms, tayori_mint_fn mint, void* mint_ctx,
                         tayori_out token, tayori_error_buf error) {
      FakeHost& h = self(ctx);
      Cached& cached = h.tokens_[detail::text(key)];
      if (!cached.token.empty() && h.now_ms < cached.expires_at_ms - refresh_before_ms) {
        token.write(token.out_ctx, detail::str(cached.token));
        return TAYORI_OK;
      }
      std::string minted;
      int64_t expires = 0;
      ++h.mints;
      tayori_status st = mint(mint_ctx, out_to(minted), &expires, error);
      if (st != TAYORI_OK) {
        // As the gateway: a token that has not expired yet outlives a failed re-mint.
        if (!cached.token.empty() && h.now_ms < cached.expires_at_ms) {
          token.write(token.out_ctx, detail::str(cached.token));
          return TAYORI_OK;
        }
        return st;
      }
      cached = {minted, expires};
      token.write(token.out_ctx, detail::str(cached.token));
      return TAYORI_OK;
    };
    raw_.host_token_invalidate = [](void* ctx, tayori_str key, tayori_str only_if_token) {
      FakeHost& h = self(ctx);
      auto it = h.tokens_.find(detail::text(key));
      if (it == h.tokens_.end()) return;
      if (only_if_token.len == 0 || it->second.token == detail::text(only_if_token)) h.tokens_.erase(it);
    };
    raw_.host_exchange = [](void* ctx, const tayori_request* request, tayori_response_fn on_response,
                            void* response_ctx) {
      FakeHost& h = self(ctx);
      Request copied = copy_request(request);
      h.exchanged.push_back(copied);
      Response answer =
          h.exchange ? h.exchange(copied) : Response::transport_failure("the fake host has no exchange scripted");
      with_raw_response(answer, [&](const tayori_response* raw) { on_response(response_ctx, raw); });
      return TAYORI_OK;
    };
  }
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;

  const tayori_host* raw() const { return &raw_; }
  // True when a log line at `level` or above contains `text`.
  bool logged(std::string_view text, tayori_log_level level = TAYORI_LOG_DEBUG) const {
    for (const auto& [l, line] : logs)
      if (l >= level && line.find(text) != std::string::npos) return true;
    return false;
  }

  static Request copy_request(const tayori_request* r) {
    Request out;
    out.kind = r->kind;
    out.method = detail::text(r->method);
    out.url = detail::text(r->url);
    out.headers = detail::copy_fields(r->headers, r->header_count);
    out.body = detail::text(r->body);
    out.mail_from = detail::text(r->mail_from);
    for (size_t i = 0; i < r->mail_rcpt_count; ++i) out.mail_rcpt.push_back(detail::text(r->mail_rcpt[i]));
    if (TAYORI_HAS_FIELD(r, allow_plaintext)) {
      out.username = detail::text(r->username);
      out.password = detail::text(r->password);
      out.allow_plaintext = r->allow_plaintext != 0;
    }
    return out;
  }
  template <class F>
  static void with_raw_response(const Response& r, F&& use) {
    std::vector<tayori_kv> headers = detail::raw_fields(r.headers);
    tayori_response raw{};
    raw.struct_size = sizeof raw;
    raw.transport_error = r.transport_error;
    raw.transport_error_text = detail::str(r.transport_error_text);
    raw.status = r.status;
    raw.headers = headers.data();
    raw.header_count = headers.size();
    raw.body = detail::str(r.body);
    use(static_cast<const tayori_response*>(&raw));
  }

 private:
  struct Cached {
    std::string token;
    int64_t expires_at_ms = 0;
  };
  static FakeHost& self(void* ctx) { return *static_cast<FakeHost*>(ctx); }
  static tayori_status fail(tayori_error_buf error, std::string_view why) {
    detail::write_error(error, why);
    return TAYORI_ERROR;
  }
  static tayori_out out_to(std::string& target) {
    return tayori_out{&target, [](void* c, tayori_str v) { *static_cast<std::string*>(c) = detail::text(v); }};
  }

  tayori_host raw_{};
  std::map<std::string, Cached> tokens_;
};

// ---- A plugin instance on the fake host ----------------------------------------------------------------

class Plugin {
 public:
  // Sets up the fake host before on_create, for a plugin that uses a host service while it is created (a
  // signer it checks its key with): [&](FakeHost& h) { h.sign_jwt = ...; }.
  using Prepare = std::function<void(FakeHost&)>;

  // Loads the plugin library at `path` (RTLD_NOW | RTLD_LOCAL, as the gateway does) and creates an instance
  // with `settings`. Check ok(); error() says what failed, naming the setting where one is at fault.
  static Plugin load(const std::string& path, const std::map<std::string, std::string>& settings = {},
                     const Prepare& prepare = {}) {
    Plugin p;
    if (prepare) prepare(p.host());
    p.library_ = std::shared_ptr<void>(::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL), [](void* h) {
      if (h) ::dlclose(h);
    });
    if (!p.library_) {
      const char* why = ::dlerror();
      p.error_ = "cannot load " + path + ": " + (why ? why : "dlopen failed");
      return p;
    }
    auto entry = reinterpret_cast<tayori_plugin_entry_fn>(::dlsym(p.library_.get(), TAYORI_PLUGIN_ENTRY_SYMBOL));
    if (entry == nullptr) {
      p.error_ = path + " does not export " TAYORI_PLUGIN_ENTRY_SYMBOL;
      return p;
    }
    p.create(entry(), settings);
    return p;
  }
  // An instance of a plugin linked into the test itself: Plugin::of(tayori_plugin_entry(), settings).
  static Plugin of(const tayori_plugin* descriptor, const std::map<std::string, std::string>& settings = {},
                   const Prepare& prepare = {}) {
    Plugin p;
    if (prepare) prepare(p.host());
    p.create(descriptor, settings);
    return p;
  }

  Plugin(Plugin&& other) noexcept { *this = std::move(other); }
  Plugin& operator=(Plugin&& other) noexcept {
    destroy();
    library_ = std::move(other.library_);
    descriptor_ = other.descriptor_;
    host_ = std::move(other.host_);
    instance_ = std::exchange(other.instance_, nullptr);
    error_ = std::move(other.error_);
    settings_ = std::move(other.settings_);
    return *this;
  }
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;
  ~Plugin() { destroy(); }

  bool ok() const { return instance_ != nullptr; }
  const std::string& error() const { return error_; }
  FakeHost& host() { return *host_; }
  const tayori_plugin& descriptor() const { return descriptor_; }
  // The settings as on_create got them: defaults applied, durations in milliseconds.
  const std::map<std::string, std::string>& settings() const { return settings_; }

  Built build(const Delivery& d) {
    Built out;
    if (!require(descriptor_.on_build, "on_build", out.error)) return out;
    tayori_request_sink sink = sink_into(out.requests);
    char error[1024] = {0};
    out.status = with_raw(d, [&](const tayori_delivery* raw) {
      return descriptor_.on_build(instance_, raw, &sink, tayori_error_buf{error, sizeof error});
    });
    out.error = error;
    return out;
  }

  Built build_batch(const std::vector<Delivery>& deliveries) {
    Built out;
    if (!require(descriptor_.on_build_batch, "on_build_batch", out.error)) return out;
    tayori_request_sink sink = sink_into(out.requests);
    char error[1024] = {0};
    out.status = with_raw_all(deliveries, [&](const std::vector<const tayori_delivery*>& raw) {
      return descriptor_.on_build_batch(instance_, raw.data(), raw.size(), &sink, tayori_error_buf{error, sizeof error});
    });
    out.error = error;
    return out;
  }

  Outcome classify(const Delivery& d, const Response& response) {
    return decide(descriptor_.on_classify, "on_classify", [&](tayori_outcome* outcome) {
      tayori_status st = TAYORI_ERROR;
      FakeHost::with_raw_response(response, [&](const tayori_response* raw_response) {
        st = with_raw(d, [&](const tayori_delivery* raw) {
          return descriptor_.on_classify(instance_, raw, raw_response, outcome);
        });
      });
      return st;
    });
  }

  // For plugins that do their own I/O (on_deliver).
  Outcome deliver(const Delivery& d) {
    return decide(descriptor_.on_deliver, "on_deliver", [&](tayori_outcome* outcome) {
      return with_raw(d, [&](const tayori_delivery* raw) { return descriptor_.on_deliver(instance_, raw, outcome); });
    });
  }

  Inbound inbound(const InboundCall& call) {
    Inbound out;
    if (!require(descriptor_.on_inbound, "on_inbound", out.error)) return out;
    Fields lowered = call.headers;
    for (auto& [k, v] : lowered) k = text::ascii_lower(k);
    std::vector<tayori_kv> headers = detail::raw_fields(lowered);
    tayori_inbound_request raw{};
    raw.struct_size = sizeof raw;
    raw.method = detail::str(call.method);
    raw.url = detail::str(call.url);
    raw.path = detail::str(call.path);
    raw.query = detail::str(call.query);
    raw.headers = headers.data();
    raw.header_count = headers.size();
    raw.body = detail::str(call.body);
    bool answered = false;
    struct Ctx {
      Inbound* out;
      bool* answered;
    } ctx{&out, &answered};
    tayori_inbound_sink sink{&ctx,
                             [](void* c, const tayori_inbound_event* e) {
                               Event ev;
                               ev.type = e->type;
                               ev.provider_event_id = detail::text(e->provider_event_id);
                               ev.message_ref = detail::text(e->message_ref);
                               ev.contact = detail::text(e->contact);
                               ev.response_id = detail::text(e->response_id);
                               ev.text = detail::text(e->text);
                               ev.occurred_at_ms = e->occurred_at_ms;
                               if (TAYORI_HAS_FIELD(e, reactivate_contact)) {
                                 ev.ref = detail::text(e->ref);
                                 ev.deactivate_contact = e->deactivate_contact != 0;
                                 ev.reactivate_contact = e->reactivate_contact != 0;
                               }
                               static_cast<Ctx*>(c)->out->events.push_back(std::move(ev));
                               ++static_cast<Ctx*>(c)->out->emitted;
                             },
                             [](void* c, int status, tayori_str content_type, tayori_str body) {
                               Ctx& x = *static_cast<Ctx*>(c);
                               x.out->http_status = status;
                               x.out->content_type = detail::text(content_type);
                               x.out->body = detail::text(body);
                               *x.answered = true;
                             }};
    char error[1024] = {0};
    out.status = descriptor_.on_inbound(instance_, &raw, &sink, tayori_error_buf{error, sizeof error});
    out.error = error;
    // The gateway's reading of a refusal: nothing emitted is applied, and the answer is the plugin's 4xx
    // (TAYORI_INVALID) or a 400 / 500 of its own.
    if (out.status != TAYORI_OK) {
      out.events.clear();
      const bool own_4xx = answered && out.http_status >= 400 && out.http_status < 500;
      if (out.status == TAYORI_INVALID && !own_4xx) out.http_status = 400;
      if (out.status != TAYORI_INVALID) out.http_status = 500;
    }
    return out;
  }

 private:
  Plugin() : host_(std::make_unique<FakeHost>()) {}

  void create(const tayori_plugin* d, const std::map<std::string, std::string>& given) {
    if (d == nullptr) {
      error_ = TAYORI_PLUGIN_ENTRY_SYMBOL " returned NULL";
      return;
    }
    if (d->abi_major != TAYORI_ABI_MAJOR || d->abi_minor > TAYORI_ABI_MINOR) {
      error_ = "the plugin was built for ABI " + std::to_string(d->abi_major) + "." + std::to_string(d->abi_minor) +
               ", this header is " + std::to_string(TAYORI_ABI_MAJOR) + "." + std::to_string(TAYORI_ABI_MINOR);
      return;
    }
    // An older minor's shorter descriptor: the rest reads as zero, as in the gateway.
    std::memcpy(&descriptor_, d, d->struct_size < sizeof descriptor_ ? d->struct_size : sizeof descriptor_);
    if (!check_settings(given)) return;
    std::vector<std::pair<std::string, std::string>> ordered(settings_.begin(), settings_.end());
    std::vector<tayori_kv> kv = detail::raw_fields(ordered);
    char error[1024] = {0};
    void* instance = nullptr;
    tayori_status st =
        descriptor_.on_create(host_->raw(), kv.data(), kv.size(), &instance, tayori_error_buf{error, sizeof error});
    if (st != TAYORI_OK) {
      error_ = error[0] ? error : "on_create failed without a message";
      return;
    }
    instance_ = instance;
  }

  // The gateway's check of a channel's settings against the declared map (plugin.h tayori_setting_spec).
  bool check_settings(const std::map<std::string, std::string>& given) {
    auto refuse = [&](const std::string& key, const std::string& why) {
      error_ = key + ": " + why;
      return false;
    };
    for (const auto& [key, value] : given) {
      const tayori_setting_spec* spec = find_spec(key);
      if (spec == nullptr) return refuse(key, "is not a setting of " + std::string(descriptor_.name));
      std::string v = value;
      switch (spec->type) {
        case TAYORI_SETTING_INT:
          if (v.empty() || v.find_first_not_of("-0123456789") != std::string::npos)
            return refuse(key, "expected an integer, got \"" + v + "\"");
          break;
        case TAYORI_SETTING_BOOL:
          if (v != "true" && v != "false") return refuse(key, "expected true or false, got \"" + v + "\"");
          break;
        case TAYORI_SETTING_DURATION: {
          auto ms = detail::duration_ms(v);
          if (!ms) return refuse(key, "expected a duration such as 250ms, 10s, 5m, 24h or 7d, got \"" + v + "\"");
          v = std::to_string(*ms);
          break;
        }
        case TAYORI_SETTING_URL:
          if (v.find("://") == std::string::npos) return refuse(key, "expected an absolute URL, got \"" + v + "\"");
          break;
        default:
          break;
      }
      settings_[key] = v;
    }
    for (size_t i = 0; i < descriptor_.settings_count; ++i) {
      const tayori_setting_spec& spec = descriptor_.settings[i];
      if (settings_.count(spec.name)) continue;
      if (spec.default_value != nullptr) {
        std::string v = spec.default_value;
        if (spec.type == TAYORI_SETTING_DURATION) v = std::to_string(detail::duration_ms(v).value_or(0));
        settings_[spec.name] = v;
      } else if (spec.required) {
        return refuse(spec.name, "is required");
      }
    }
    return true;
  }
  const tayori_setting_spec* find_spec(const std::string& key) const {
    for (size_t i = 0; i < descriptor_.settings_count; ++i)
      if (key == descriptor_.settings[i].name) return &descriptor_.settings[i];
    return nullptr;
  }

  template <class Fn>
  bool require(Fn* callback, const char* name, std::string& error) const {
    if (!ok()) error = "no instance: " + error_;
    else if (callback == nullptr) error = std::string("the plugin has no ") + name;
    else return true;
    return false;
  }

  // Calls `call` with host buffers preset as the gateway presets them (kind RETRY, empty strings). The same
  // presetting as the gateway's OutcomeBuffers (gateway/plugin/marshal.hpp), written again on purpose: this
  // header is installed for plugins built out of tree, which have none of the gateway's headers.
  template <class Fn, class Call>
  Outcome decide(Fn* callback, const char* name, Call&& call) {
    Outcome out;
    if (!require(callback, name, out.reason)) return out;
    char reason[512] = {0}, provider_id[256] = {0};
    tayori_outcome raw{};
    raw.struct_size = sizeof raw;
    raw.kind = TAYORI_OUTCOME_RETRY;
    raw.reason = reason;
    raw.reason_capacity = sizeof reason;
    raw.provider_message_id = provider_id;
    raw.provider_message_id_capacity = sizeof provider_id;
    out.status = call(&raw);
    reason[sizeof reason - 1] = provider_id[sizeof provider_id - 1] = '\0';
    out.reason = reason;
    out.provider_message_id = provider_id;
    // The gateway's reading (gateway/plugin/marshal.cpp to_outcome): a failed call is a retry, "plugin_error"
    // when it gave no reason; an unknown kind is a retry saying so; Retry-After is taken within a day.
    if (out.status != TAYORI_OK) {
      out.kind = TAYORI_OUTCOME_RETRY;
      if (out.reason.empty()) out.reason = "plugin_error";
      return out;
    }
    out.kind = raw.kind;
    if (raw.kind != TAYORI_OUTCOME_DELIVERED && raw.kind != TAYORI_OUTCOME_RETRY && raw.kind != TAYORI_OUTCOME_PERMANENT) {
      out.kind = TAYORI_OUTCOME_RETRY;
      out.reason = "plugin_error: unknown outcome kind " + std::to_string(static_cast<int>(raw.kind));
    }
    out.retry_after_ms = raw.retry_after_ms < 0 ? 0 : raw.retry_after_ms > 86'400'000 ? 86'400'000 : raw.retry_after_ms;
    out.deactivate_contact = raw.deactivate_contact != 0;
    return out;
  }

  static tayori_request_sink sink_into(std::vector<Request>& requests) {
    return tayori_request_sink{&requests, [](void* ctx, const tayori_request* r) {
                                 if (r == nullptr || r->url.len == 0) return TAYORI_INVALID;
                                 static_cast<std::vector<Request>*>(ctx)->push_back(FakeHost::copy_request(r));
                                 return TAYORI_OK;
                               }};
  }

  // The C views of deliveries, valid during `use`: everything they point to lives in this frame.
  template <class F>
  static tayori_status with_raw_all(const std::vector<Delivery>& ds, F&& use) {
    std::vector<std::vector<tayori_kv>> content(ds.size());
    std::vector<std::vector<tayori_response_option>> options(ds.size());
    std::vector<tayori_delivery> raw(ds.size());
    std::vector<const tayori_delivery*> pointers;
    for (size_t i = 0; i < ds.size(); ++i) {
      const Delivery& d = ds[i];
      content[i] = detail::raw_fields(d.content);
      for (const auto& o : d.responses)
        options[i].push_back({detail::str(o.id), detail::str(o.label), detail::str(o.ref), detail::str(o.url)});
      tayori_delivery& r = raw[i];
      r.struct_size = sizeof r;
      r.message_id = detail::str(d.message_id);
      r.delivery_id = detail::str(d.delivery_id);
      r.attempt = d.attempt;
      r.channel = detail::str(d.channel);
      r.recipient_id = detail::str(d.recipient_id);
      r.contact = detail::str(d.contact);
      r.purpose = d.purpose;
      r.category = detail::str(d.category);
      r.locale = detail::str(d.locale);
      r.timezone = detail::str(d.timezone);
      r.expires_at_ms = d.expires_at_ms;
      r.content = content[i].data();
      r.content_count = content[i].size();
      r.metadata_json = detail::str(d.metadata_json);
      r.unsubscribe_url = detail::str(d.unsubscribe_url);
      r.callback_url = detail::str(d.callback_url);
      r.responses = options[i].data();
      r.response_count = options[i].size();
      pointers.push_back(&r);
    }
    return use(pointers);
  }
  template <class F>
  static tayori_status with_raw(const Delivery& d, F&& use) {
    return with_raw_all({d}, [&](const std::vector<const tayori_delivery*>& raw) { return use(raw[0]); });
  }

  void destroy() {
    if (instance_ != nullptr) descriptor_.on_destroy(instance_);
    instance_ = nullptr;
  }

  std::shared_ptr<void> library_;  // destroyed after the instance (declared first, destroyed last)
  tayori_plugin descriptor_{};
  std::unique_ptr<FakeHost> host_;
  void* instance_ = nullptr;
  std::string error_;
  std::map<std::string, std::string> settings_;
};

}  // namespace tayori::testing

#endif  // TAYORI_TESTING_HPP
