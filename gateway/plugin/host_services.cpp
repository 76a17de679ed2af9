// The host services of ABI 1.1 (plugin.h tayori_host): what a plugin calls back into while it builds a
// provider request or reads an answer -- logging, the clock, JWT signing, HMAC, base64, a constant-time
// compare, the channel's token cache and a synchronous exchange for prerequisites such as an OAuth grant.
// They sit inside the channel-plugin step of the flow and keep crypto and I/O out of plugins
// (docs/architecture.md §3): each is a thin adapter over crypto/crypto.hpp, the channel's TokenCache or the
// host transport, and none lets an exception or a C++ type cross back to the plugin.
#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "plugin/channel_internal.hpp"
#include "plugin/marshal.hpp"

namespace tayori::plugin {

namespace {

void write_out(tayori_out out, std::string_view value) {
  if (out.write != nullptr) out.write(out.out_ctx, tayori_str{value.data(), value.size()});
}

}  // namespace

struct Channel::HostServices {
  static Channel& of(void* ctx) { return *static_cast<Channel*>(ctx); }

  static tayori_host table(Channel& channel) {
    tayori_host host{};
    host.struct_size = sizeof host;
    host.abi_major = TAYORI_ABI_MAJOR;
    host.abi_minor = TAYORI_ABI_MINOR;
    host.host_ctx = &channel;
    host.host_log = &write_log;
    host.host_now_ms = [](void* ctx) -> int64_t { return of(ctx).clock_.now_ms(); };
    host.host_sign_jwt = &sign_jwt;
    host.host_hmac = &hmac;
    host.host_base64 = &base64;
    host.host_equal_constant_time = &equal;
    host.host_token = &token;
    host.host_token_invalidate = &invalidate;
    host.host_exchange = &exchange_request;
    return host;
  }

  static void write_log(void* ctx, tayori_log_level level, tayori_str message) {
    log::write(static_cast<log::Level>(level), "plugin." + of(ctx).name(), std::string_view(message.data, message.len));
  }

  static tayori_status sign_jwt(void*, tayori_str alg, tayori_str header_extra, tayori_str claims, tayori_str pem,
                                tayori_out jwt, tayori_error_buf error) {
    auto r = crypto::sign_jwt(text(alg), text(header_extra), text(claims), text(pem));
    if (!r) return fail(error, r.error().message);
    write_out(jwt, r.value());
    return TAYORI_OK;
  }
  static tayori_status hmac(void*, tayori_hash hash, tayori_str key, tayori_str data, tayori_out mac,
                            tayori_error_buf error) {
    if (hash != TAYORI_HASH_SHA256 && hash != TAYORI_HASH_SHA1) return fail(error, "unknown hash");
    auto r = hash == TAYORI_HASH_SHA256 ? crypto::hmac_sha256(text(key), text(data))
                                        : crypto::hmac_sha1(text(key), text(data));
    if (!r) return fail(error, r.error().message);
    write_out(mac, r.value());
    return TAYORI_OK;
  }
  static void base64(void*, tayori_str bytes, int url_safe, tayori_out out) {
    write_out(out, url_safe ? crypto::base64url_encode(text(bytes)) : crypto::base64_encode(text(bytes)));
  }
  static int equal(void*, tayori_str a, tayori_str b) { return crypto::constant_time_equal(text(a), text(b)) ? 1 : 0; }

  static tayori_status token(void* ctx, tayori_str key, int64_t refresh_before_ms, tayori_mint_fn mint,
                             void* mint_ctx, tayori_out out, tayori_error_buf error) {
    Channel& c = of(ctx);
    if (mint == nullptr) return fail(error, "no mint function");
    bool transient = false;  // the mint said TAYORI_RETRY_LATER: pass that on, it is not a configuration error
    auto r = c.tokens_.get(std::string(text(key)), c.clock_.now_ms(), refresh_before_ms,
                           [&]() -> Result<crypto::MintedToken> {
                             std::string minted;
                             int64_t expires = 0;
                             char why[512] = {0};
                             tayori_out sink{&minted, [](void* m, tayori_str v) {
                                               static_cast<std::string*>(m)->assign(v.data ? v.data : "", v.len);
                                             }};
                             tayori_status st = mint(mint_ctx, sink, &expires, tayori_error_buf{why, sizeof why});
                             transient = st == TAYORI_RETRY_LATER;
                             if (st != TAYORI_OK)
                               return Error{ErrorCode::invalid,
                                            why[0] ? why : "the plugin's mint function failed without saying why"};
                             if (minted.empty()) return Error{ErrorCode::invalid, "minted an empty token"};
                             return crypto::MintedToken{minted, expires};
                           });
    if (!r) {
      fail(error, r.error().message);
      return transient ? TAYORI_RETRY_LATER : TAYORI_ERROR;
    }
    write_out(out, r.value());
    return TAYORI_OK;
  }
  static void invalidate(void* ctx, tayori_str key, tayori_str only_if_token) {
    of(ctx).tokens_.invalidate(std::string(text(key)), text(only_if_token));
  }
  static tayori_status exchange_request(void* ctx, const tayori_request* request, tayori_response_fn on_response,
                                        void* response_ctx) {
    Channel& c = of(ctx);
    if (request == nullptr || on_response == nullptr || c.transport_ == nullptr) return TAYORI_INVALID;
    Result<transport::Request> req = to_transport_request(request, c.pool_key());
    if (!req) {
      log::write(log::Level::warn, "plugin." + c.name_, "host_exchange refused: " + req.error().message);
      return TAYORI_INVALID;
    }
    transport::Response r = exchange(*c.transport_, std::move(req).value());
    with_response(r, [&](const tayori_response* resp) { on_response(response_ctx, resp); });
    return TAYORI_OK;
  }

 private:
  static tayori_status fail(tayori_error_buf error, std::string_view why) {
    if (error.data != nullptr && error.capacity > 0) {
      size_t n = std::min(why.size(), error.capacity - 1);
      std::memcpy(error.data, why.data(), n);
      error.data[n] = '\0';
    }
    return TAYORI_ERROR;
  }
};

tayori_host host_services_for(Channel& channel) { return Channel::HostServices::table(channel); }

}  // namespace tayori::plugin
