// tayori/plugin.hpp — a header-only C++20 layer over plugin.h that makes writing a plugin pleasant.
//
// A plugin is a class constructed from (const Host&, const Settings&) that implements some of:
//   Outcome deliver(const Delivery&)                               — direct I/O plugins
//   void build(const Delivery&, RequestSink&) +
//   Outcome classify(const Delivery&, const Response&)             — sans-I/O plugins (the host sends)
//   void inbound(const InboundRequest&, InboundSink&)              — provider webhooks
//   void build_batch(const std::vector<Delivery>&, RequestSink&) +
//   static constexpr uint32_t kBatchMax = N                        — one request for many deliveries of
//                                                                    identical content (plugin.h on_build_batch)
// and TAYORI_PLUGIN(Class, "name", "version", "description", "default_contact", settings, settings_count)
// exports it.
// The adapters catch every exception at the boundary (nothing C++ crosses into the host): a throwing
// constructor fails on_create with the exception's message; a throwing deliver/classify becomes a RETRY
// outcome whose reason carries the message; a throwing build, build_batch or inbound returns TAYORI_ERROR
// (RetryLater: TAYORI_RETRY_LATER; Refused from inbound: TAYORI_INVALID with its 4xx answer).
// This header is the contract's C++ face only. What channels share beyond it (Retry-After, form bodies, UUIDs
// from delivery ids, attempt tokens, content conventions) is in tayori/provider_helpers.hpp, and a fake host
// for a plugin's own tests is in tayori/testing.hpp.
#ifndef TAYORI_PLUGIN_HPP
#define TAYORI_PLUGIN_HPP

#include <tayori/plugin.h>
#include <tayori/text.hpp>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace tayori::sdk {

inline std::string_view view(tayori_str s) { return s.len == 0 ? std::string_view{} : std::string_view{s.data, s.len}; }
inline tayori_str str(std::string_view s) { return tayori_str{s.data(), s.size()}; }

// Copies `text` into a host-owned buffer, NUL-terminated and truncated to its capacity.
inline void copy_to(char* buffer, size_t capacity, std::string_view text) {
  if (buffer == nullptr || capacity == 0) return;
  size_t n = text.size() < capacity - 1 ? text.size() : capacity - 1;
  std::memcpy(buffer, text.data(), n);
  buffer[n] = '\0';
}

// A plugin-side error that names the setting or field at fault: "path: must be absolute".
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Thrown from build(): nothing can be built now for a transient reason (an OAuth grant timed out); the
// host retries later instead of giving up on the channel.
struct RetryLater : Error {
  using Error::Error;
};
// Thrown from inbound(): the call is refused and nothing it says is believed -- 401 for a signature that does
// not verify, 400 for a body that cannot be read. The message is the answer's body (never a secret).
struct Refused : Error {
  Refused(int status, const std::string& why) : Error(why), status(status) {}
  int status;
};

using text::ascii_lower;
using text::iequals;

namespace detail {
// A tayori_out that copies the host's bytes into a std::string.
inline tayori_out out_to(std::string& target) {
  return tayori_out{&target, [](void* ctx, tayori_str v) { static_cast<std::string*>(ctx)->assign(v.data ? v.data : "", v.len); }};
}
}  // namespace detail

struct Request {
  tayori_request_kind kind = TAYORI_REQUEST_HTTP;
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string mail_from;
  std::vector<std::string> mail_rcpt;
  std::string username;  // SMTP AUTH
  std::string password;
  bool allow_plaintext = false;  // SMTP without TLS: loopback relays only

  // Calls `use` with the C view of this request (valid only during the call).
  template <class F>
  decltype(auto) with_raw(F&& use) const {
    std::vector<tayori_kv> raw_headers;
    for (auto& [k, v] : headers) raw_headers.push_back({str(k), str(v)});
    std::vector<tayori_str> rcpt;
    for (auto& a : mail_rcpt) rcpt.push_back(str(a));
    tayori_request raw{};
    raw.struct_size = sizeof raw;
    raw.kind = kind;
    raw.method = str(method);
    raw.url = str(url);
    raw.headers = raw_headers.data();
    raw.header_count = raw_headers.size();
    raw.body = str(body);
    raw.mail_from = str(mail_from);
    raw.mail_rcpt = rcpt.data();
    raw.mail_rcpt_count = rcpt.size();
    raw.username = str(username);
    raw.password = str(password);
    raw.allow_plaintext = allow_plaintext ? 1 : 0;
    return use(static_cast<const tayori_request*>(&raw));
  }
};

// A provider's answer owned by the plugin (what Host::exchange returns).
struct Exchanged {
  int transport_error = 0;
  std::string transport_error_text;
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  bool transport_failed() const { return transport_error != 0; }
  std::optional<std::string_view> header(std::string_view name) const {
    for (auto& [k, v] : headers)
      if (iequals(k, name)) return std::string_view(v);
    return std::nullopt;
  }
};

struct MintedToken {
  std::string token;
  int64_t expires_at_ms = 0;  // absolute, on the host clock (Host::now_ms)
};

class Host {
 public:
  explicit Host(const tayori_host* host) : host_(host) {}
  void log(tayori_log_level level, std::string_view message) const {
    if (host_ && host_->host_log) host_->host_log(host_->host_ctx, level, str(message));
  }
  int64_t now_ms() const { return host_ && host_->host_now_ms ? host_->host_now_ms(host_->host_ctx) : 0; }
  const tayori_host* raw() const { return host_; }

  // ---- 1.1 services; each throws Error when the host is older or the operation fails ----

  std::string sign_jwt(std::string_view alg, std::string_view header_extra_json, std::string_view claims_json,
                       std::string_view pem_private_key) const {
    require(TAYORI_HAS_FIELD(host_, host_sign_jwt), "host_sign_jwt");
    std::string jwt;
    char error[256] = {0};
    if (host_->host_sign_jwt(host_->host_ctx, str(alg), str(header_extra_json), str(claims_json), str(pem_private_key),
                             detail::out_to(jwt), tayori_error_buf{error, sizeof error}) != TAYORI_OK)
      throw Error(std::string("jwt: ") + (error[0] ? error : "signing failed"));
    return jwt;
  }
  std::string hmac(tayori_hash hash, std::string_view key, std::string_view data) const {
    require(TAYORI_HAS_FIELD(host_, host_hmac), "host_hmac");
    std::string mac;
    char error[256] = {0};
    if (host_->host_hmac(host_->host_ctx, hash, str(key), str(data), detail::out_to(mac),
                         tayori_error_buf{error, sizeof error}) != TAYORI_OK)
      throw Error(std::string("hmac: ") + (error[0] ? error : "failed"));
    return mac;
  }
  std::string base64(std::string_view bytes, bool url_safe = false) const {
    require(TAYORI_HAS_FIELD(host_, host_base64), "host_base64");
    std::string text;
    host_->host_base64(host_->host_ctx, str(bytes), url_safe ? 1 : 0, detail::out_to(text));
    return text;
  }
  bool equal_constant_time(std::string_view a, std::string_view b) const {
    require(TAYORI_HAS_FIELD(host_, host_equal_constant_time), "host_equal_constant_time");
    return host_->host_equal_constant_time(host_->host_ctx, str(a), str(b)) != 0;
  }
  // Does `signature` (the base64 text a provider sent in a header) equal base64(HMAC-<hash>(key, data))?
  // The comparison takes constant time (host_equal_constant_time), so a forger learns nothing from how
  // long a refusal took. LINE x-line-signature (SHA-256 over the raw body), Twilio X-Twilio-Signature
  // (SHA-1 over URL + sorted params). Surrounding whitespace in the header is not part of the value.
  bool verify_hmac_base64(tayori_hash hash, std::string_view key, std::string_view data,
                          std::string_view signature) const {
    while (!signature.empty() && (signature.front() == ' ' || signature.front() == '\t')) signature.remove_prefix(1);
    while (!signature.empty() && (signature.back() == ' ' || signature.back() == '\t')) signature.remove_suffix(1);
    if (signature.empty()) return false;
    return equal_constant_time(base64(hmac(hash, key, data)), signature);
  }
  // The cached token under `key`, minted by `mint()` (returning MintedToken) when missing or due.
  template <class Mint>
  std::string token(std::string_view key, int64_t refresh_before_ms, Mint&& mint) const {
    require(TAYORI_HAS_FIELD(host_, host_token), "host_token");
    struct Ctx {
      Mint* mint;
    } ctx{&mint};
    tayori_mint_fn fn = [](void* c, tayori_out out, int64_t* expires_at_ms, tayori_error_buf err) -> tayori_status {
      try {
        MintedToken t = (*static_cast<Ctx*>(c)->mint)();
        out.write(out.out_ctx, str(t.token));
        *expires_at_ms = t.expires_at_ms;
        return TAYORI_OK;
      } catch (const RetryLater& e) {
        copy_to(err.data, err.capacity, e.what());
        return TAYORI_RETRY_LATER;
      } catch (const std::exception& e) {
        copy_to(err.data, err.capacity, e.what());
      } catch (...) {
        copy_to(err.data, err.capacity, "unknown exception while minting a token");
      }
      return TAYORI_ERROR;
    };
    std::string token;
    char error[512] = {0};
    tayori_status st = host_->host_token(host_->host_ctx, str(key), refresh_before_ms, fn, &ctx, detail::out_to(token),
                                         tayori_error_buf{error, sizeof error});
    if (st == TAYORI_RETRY_LATER) throw RetryLater(std::string("token: ") + (error[0] ? error : "minting failed"));
    if (st != TAYORI_OK) throw Error(std::string("token: ") + (error[0] ? error : "minting failed"));
    return token;
  }
  void invalidate_token(std::string_view key, std::string_view only_if_token = {}) const {
    require(TAYORI_HAS_FIELD(host_, host_token_invalidate), "host_token_invalidate");
    host_->host_token_invalidate(host_->host_ctx, str(key), str(only_if_token));
  }
  // One request through the host transport, waited for. Only from build, deliver or a mint function.
  Exchanged exchange(const Request& request) const {
    require(TAYORI_HAS_FIELD(host_, host_exchange), "host_exchange");
    Exchanged answer;
    tayori_response_fn on_response = [](void* ctx, const tayori_response* r) {
      auto* a = static_cast<Exchanged*>(ctx);
      a->transport_error = r->transport_error;
      a->transport_error_text = std::string(view(r->transport_error_text));
      a->status = r->status;
      for (size_t i = 0; i < r->header_count; ++i)
        a->headers.emplace_back(std::string(view(r->headers[i].key)), std::string(view(r->headers[i].value)));
      a->body = std::string(view(r->body));
    };
    tayori_status st = request.with_raw(
        [&](const tayori_request* raw) { return host_->host_exchange(host_->host_ctx, raw, on_response, &answer); });
    if (st != TAYORI_OK) throw Error("the host refused the request to " + request.url);
    return answer;
  }

 private:
  static void require(bool present, const char* service) {
    if (!present) throw Error(std::string("this host does not offer ") + service + " (it needs Tayori ABI 1.1)");
  }
  const tayori_host* host_;
};

// The channel's settings, checked by the host against the declared map, defaults applied.
class Settings {
 public:
  Settings(const tayori_kv* kv, size_t n) {
    for (size_t i = 0; i < n; ++i) values_.emplace(std::string(view(kv[i].key)), std::string(view(kv[i].value)));
  }
  std::optional<std::string> find(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  std::string get(const std::string& key) const {
    auto v = find(key);
    if (!v) throw Error(key + ": is required");
    return *v;
  }
  long long get_int(const std::string& key) const {
    std::string v = get(key);
    try {
      size_t used = 0;
      long long n = std::stoll(v, &used);
      if (used != v.size()) throw std::invalid_argument(v);
      return n;
    } catch (const std::logic_error&) {
      throw Error(key + ": expected an integer, got \"" + v + "\"");
    }
  }
  bool get_bool(const std::string& key) const { return get(key) == "true"; }
  const std::map<std::string, std::string>& all() const { return values_; }

 private:
  std::map<std::string, std::string> values_;
};

// One response option of a delivery (plugin.h tayori_response_option), borrowed from the host.
struct ResponseOption {
  std::string_view id, label, ref, url;
};

class Delivery {
 public:
  explicit Delivery(const tayori_delivery* d) : d_(d) {}
  std::string_view message_id() const { return view(d_->message_id); }
  std::string_view delivery_id() const { return view(d_->delivery_id); }
  uint32_t attempt() const { return d_->attempt; }
  std::string_view channel() const { return view(d_->channel); }
  std::string_view recipient_id() const { return view(d_->recipient_id); }
  std::string_view contact() const { return view(d_->contact); }
  tayori_purpose purpose() const { return d_->purpose; }
  std::string_view purpose_name() const { return d_->purpose == TAYORI_PURPOSE_MARKETING ? "marketing" : "transactional"; }
  std::string_view category() const { return view(d_->category); }
  std::string_view locale() const { return view(d_->locale); }
  std::string_view timezone() const { return view(d_->timezone); }
  int64_t expires_at_ms() const { return d_->expires_at_ms; }
  std::string_view metadata_json() const { return view(d_->metadata_json); }
  // Empty when the host is older than 1.1, the delivery is transactional, or no public URL is configured.
  std::string_view unsubscribe_url() const { return TAYORI_HAS_FIELD(d_, unsubscribe_url) ? view(d_->unsubscribe_url) : std::string_view{}; }
  std::string_view callback_url() const { return TAYORI_HAS_FIELD(d_, callback_url) ? view(d_->callback_url) : std::string_view{}; }
  // 1.2: the message's response options in display order; empty when it asks nothing or the host is older.
  std::vector<ResponseOption> responses() const {
    std::vector<ResponseOption> out;
    if (!TAYORI_HAS_FIELD(d_, response_count) || d_->responses == nullptr) return out;
    for (size_t i = 0; i < d_->response_count; ++i) {
      const tayori_response_option& o = d_->responses[i];
      out.push_back({view(o.id), view(o.label), view(o.ref), view(o.url)});
    }
    return out;
  }
  std::optional<std::string_view> content(std::string_view key) const {
    for (size_t i = 0; i < d_->content_count; ++i)
      if (view(d_->content[i].key) == key) return view(d_->content[i].value);
    return std::nullopt;
  }
  std::vector<std::pair<std::string_view, std::string_view>> content_fields() const {
    std::vector<std::pair<std::string_view, std::string_view>> out;
    for (size_t i = 0; i < d_->content_count; ++i) out.emplace_back(view(d_->content[i].key), view(d_->content[i].value));
    return out;
  }
  const tayori_delivery* raw() const { return d_; }

 private:
  const tayori_delivery* d_;
};

struct Outcome {
  tayori_outcome_kind kind = TAYORI_OUTCOME_DELIVERED;
  std::string reason;
  std::string provider_message_id;
  int64_t retry_after_ms = 0;
  bool deactivate_contact = false;

  static Outcome delivered(std::string provider_message_id = {}) {
    Outcome o;
    o.provider_message_id = std::move(provider_message_id);
    return o;
  }
  static Outcome retry(std::string reason, int64_t after_ms = 0) {
    Outcome o;
    o.kind = TAYORI_OUTCOME_RETRY;
    o.reason = std::move(reason);
    o.retry_after_ms = after_ms;
    return o;
  }
  static Outcome permanent(std::string reason, bool deactivate_contact = false) {
    Outcome o;
    o.kind = TAYORI_OUTCOME_PERMANENT;
    o.reason = std::move(reason);
    o.deactivate_contact = deactivate_contact;
    return o;
  }
  void write_to(tayori_outcome* out) const {
    out->kind = kind;
    out->retry_after_ms = retry_after_ms;
    out->deactivate_contact = deactivate_contact ? 1 : 0;
    copy_to(out->reason, out->reason_capacity, reason);
    copy_to(out->provider_message_id, out->provider_message_id_capacity, provider_message_id);
  }
};

class RequestSink {
 public:
  explicit RequestSink(const tayori_request_sink* sink) : sink_(sink) {}
  void add(const Request& r) const {
    tayori_status st = r.with_raw([&](const tayori_request* raw) { return sink_->host_add_request(sink_->sink_ctx, raw); });
    if (st != TAYORI_OK) throw Error("the host refused the request to " + r.url);
  }

 private:
  const tayori_request_sink* sink_;
};

class Response {
 public:
  explicit Response(const tayori_response* r) : r_(r) {}
  bool transport_failed() const { return r_->transport_error != 0; }
  std::string_view transport_error_text() const { return view(r_->transport_error_text); }
  int status() const { return r_->status; }
  std::string_view body() const { return view(r_->body); }
  // Header lookup, case-insensitive (RFC 9110 §5.1).
  std::optional<std::string_view> header(std::string_view name) const {
    for (size_t i = 0; i < r_->header_count; ++i)
      if (iequals(view(r_->headers[i].key), name)) return view(r_->headers[i].value);
    return std::nullopt;
  }

 private:
  const tayori_response* r_;
};

class InboundRequest {
 public:
  explicit InboundRequest(const tayori_inbound_request* r) : r_(r) {}
  std::string_view method() const { return view(r_->method); }
  std::string_view url() const { return view(r_->url); }
  std::string_view path() const { return view(r_->path); }
  std::string_view query() const { return view(r_->query); }
  std::string_view body() const { return view(r_->body); }
  // Header lookup, case-insensitive (RFC 9110 §5.1; the host lower-cases names, a test host may not).
  std::optional<std::string_view> header(std::string_view name) const {
    for (size_t i = 0; i < r_->header_count; ++i)
      if (iequals(view(r_->headers[i].key), name)) return view(r_->headers[i].value);
    return std::nullopt;
  }
  const tayori_inbound_request* raw() const { return r_; }

 private:
  const tayori_inbound_request* r_;
};

// One normalised inbound event (plugin.h tayori_inbound_event). Build it with the named constructors, which
// set what each kind needs, then add what else applies: `.with_id(webhook_event_id).at(ms)`.
struct InboundEvent {
  tayori_event_type type = TAYORI_EVENT_RESPONDED;
  std::string provider_event_id, message_ref, contact, response_id, text;
  int64_t occurred_at_ms = 0;
  std::string ref;                  // 1.2
  bool deactivate_contact = false;  // 1.2
  bool reactivate_contact = false;  // 1.2

  // The recipient chose an option: the `ref` the provider echoed back (a LINE postback's data).
  static InboundEvent responded(std::string contact, std::string ref) {
    InboundEvent e = of(TAYORI_EVENT_RESPONDED, std::move(contact));
    e.ref = std::move(ref);
    return e;
  }
  // Free text; `option` is the number of a numbered choice ("2"), when the text is one.
  static InboundEvent replied(std::string contact, std::string text, std::string option = {}) {
    InboundEvent e = of(TAYORI_EVENT_REPLIED, std::move(contact));
    e.text = std::move(text);
    e.response_id = std::move(option);
    return e;
  }
  static InboundEvent opted_in(std::string contact, bool reactivate_contact) {
    InboundEvent e = of(TAYORI_EVENT_OPTED_IN, std::move(contact));
    e.reactivate_contact = reactivate_contact;
    return e;
  }
  static InboundEvent opted_out(std::string contact, bool deactivate_contact) {
    InboundEvent e = of(TAYORI_EVENT_OPTED_OUT, std::move(contact));
    e.deactivate_contact = deactivate_contact;
    return e;
  }
  // A receipt for the message the provider knows as `provider_message_id`.
  static InboundEvent delivered(std::string contact, std::string provider_message_id) {
    InboundEvent e = of(TAYORI_EVENT_DELIVERED, std::move(contact));
    e.message_ref = std::move(provider_message_id);
    return e;
  }
  static InboundEvent failed(std::string contact, std::string provider_message_id, std::string reason,
                             bool deactivate_contact) {
    InboundEvent e = of(TAYORI_EVENT_FAILED, std::move(contact));
    e.message_ref = std::move(provider_message_id);
    e.text = std::move(reason);
    e.deactivate_contact = deactivate_contact;
    return e;
  }
  InboundEvent&& with_id(std::string id) && {
    provider_event_id = std::move(id);
    return std::move(*this);
  }
  InboundEvent&& at(int64_t ms) && {
    occurred_at_ms = ms;
    return std::move(*this);
  }

 private:
  static InboundEvent of(tayori_event_type type, std::string contact) {
    InboundEvent e;
    e.type = type;
    e.contact = std::move(contact);
    return e;
  }
};

class InboundSink {
 public:
  explicit InboundSink(const tayori_inbound_sink* sink) : sink_(sink) {}
  void emit(const InboundEvent& e) const {
    tayori_inbound_event raw{};
    raw.struct_size = sizeof raw;
    raw.type = e.type;
    raw.provider_event_id = str(e.provider_event_id);
    raw.message_ref = str(e.message_ref);
    raw.contact = str(e.contact);
    raw.response_id = str(e.response_id);
    raw.text = str(e.text);
    raw.occurred_at_ms = e.occurred_at_ms;
    raw.ref = str(e.ref);
    raw.deactivate_contact = e.deactivate_contact ? 1 : 0;
    raw.reactivate_contact = e.reactivate_contact ? 1 : 0;
    sink_->host_emit_event(sink_->sink_ctx, &raw);
  }
  // The HTTP answer the provider gets (default 200, empty). Call it once.
  void respond(int status, std::string_view content_type, std::string_view body) const {
    sink_->host_set_response(sink_->sink_ctx, status, str(content_type), str(body));
  }
  void answer(std::string_view content_type, std::string_view body) const { respond(200, content_type, body); }

 private:
  const tayori_inbound_sink* sink_;
};

// ---- Adapters: C entry points over a plugin class T. Every one catches everything. -------------

namespace detail {

inline void fail(tayori_error_buf err, std::string_view message) { copy_to(err.data, err.capacity, message); }

inline std::string current_exception_text() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

template <class T>
struct Adapter {
  static tayori_status on_create(const tayori_host* host, const tayori_kv* kv, size_t n, void** instance,
                                 tayori_error_buf err) {
    try {
      *instance = new T(Host(host), Settings(kv, n));
      return TAYORI_OK;
    } catch (...) {
      fail(err, current_exception_text());
      return TAYORI_INVALID;
    }
  }
  static void on_destroy(void* instance) {
    try {
      delete static_cast<T*>(instance);
    } catch (...) {
      // A destructor that throws has nowhere to report to; swallowing is the only option at a C boundary.
    }
  }
  // Runs a build: RetryLater becomes TAYORI_RETRY_LATER, any other exception TAYORI_ERROR, with its text.
  template <class F>
  static tayori_status guarded_build(tayori_error_buf err, F&& build) {
    try {
      build();
      return TAYORI_OK;
    } catch (const RetryLater& e) {
      fail(err, e.what());
      return TAYORI_RETRY_LATER;
    } catch (...) {
      fail(err, current_exception_text());
      return TAYORI_ERROR;
    }
  }
  static tayori_status on_build(void* instance, const tayori_delivery* d, const tayori_request_sink* sink,
                                tayori_error_buf err) {
    return guarded_build(err, [&] {
      RequestSink s(sink);
      static_cast<T*>(instance)->build(Delivery(d), s);
    });
  }
  static tayori_status on_build_batch(void* instance, const tayori_delivery* const* ds, size_t count,
                                      const tayori_request_sink* sink, tayori_error_buf err) {
    return guarded_build(err, [&] {
      std::vector<Delivery> deliveries;
      deliveries.reserve(count);
      for (size_t i = 0; i < count; ++i) deliveries.emplace_back(ds[i]);
      RequestSink s(sink);
      static_cast<T*>(instance)->build_batch(static_cast<const std::vector<Delivery>&>(deliveries), s);
    });
  }
  static tayori_status on_classify(void* instance, const tayori_delivery* d, const tayori_response* r,
                                   tayori_outcome* out) {
    try {
      static_cast<T*>(instance)->classify(Delivery(d), Response(r)).write_to(out);
      return TAYORI_OK;
    } catch (...) {
      Outcome::retry("plugin_error: " + current_exception_text()).write_to(out);
      return TAYORI_ERROR;
    }
  }
  static tayori_status on_deliver(void* instance, const tayori_delivery* d, tayori_outcome* out) {
    try {
      static_cast<T*>(instance)->deliver(Delivery(d)).write_to(out);
      return TAYORI_OK;
    } catch (...) {
      Outcome::retry("plugin_error: " + current_exception_text()).write_to(out);
      return TAYORI_ERROR;
    }
  }
  static tayori_status on_inbound(void* instance, const tayori_inbound_request* r, const tayori_inbound_sink* sink,
                                  tayori_error_buf err) {
    try {
      InboundSink s(sink);
      static_cast<T*>(instance)->inbound(InboundRequest(r), s);
      return TAYORI_OK;
    } catch (const Refused& e) {
      fail(err, e.what());
      InboundSink(sink).respond(e.status, "text/plain; charset=utf-8", e.what());
      return TAYORI_INVALID;
    } catch (...) {
      fail(err, current_exception_text());
      return TAYORI_ERROR;
    }
  }

  static tayori_plugin descriptor(const char* name, const char* version, const char* description,
                                  const char* default_contact, const tayori_setting_spec* settings,
                                  size_t settings_count) {
    tayori_plugin p{};
    p.struct_size = sizeof p;
    p.abi_major = TAYORI_ABI_MAJOR;
    p.abi_minor = TAYORI_ABI_MINOR;
    p.name = name;
    p.version = version;
    p.description = description;
    p.default_contact = default_contact;
    p.settings = settings;
    p.settings_count = settings_count;
    p.on_create = &on_create;
    p.on_destroy = &on_destroy;
    if constexpr (requires(T& t, const Delivery& d, RequestSink& s, const Response& r) {
                    t.build(d, s);
                    { t.classify(d, r) } -> std::same_as<Outcome>;
                  }) {
      p.on_build = &on_build;
      p.on_classify = &on_classify;
    }
    if constexpr (requires(T& t, const Delivery& d) {
                    { t.deliver(d) } -> std::same_as<Outcome>;
                  }) {
      p.on_deliver = &on_deliver;
    }
    if constexpr (requires(T& t, const InboundRequest& r, InboundSink& s) { t.inbound(r, s); }) {
      p.on_inbound = &on_inbound;
    }
    constexpr bool kBuildsBatches = requires(T& t, const std::vector<Delivery>& v, RequestSink& s) {
                                      t.build_batch(v, s);
                                    };
    constexpr bool kDeclaresBatchMax = requires {
                                         { T::kBatchMax } -> std::convertible_to<uint32_t>;
                                       };
    static_assert(kBuildsBatches == kDeclaresBatchMax,
                  "a plugin class batches with both build_batch(const std::vector<Delivery>&, RequestSink&) and "
                  "static constexpr uint32_t kBatchMax, or with neither");
    if constexpr (kBuildsBatches && kDeclaresBatchMax) {
      p.batch_max = static_cast<uint32_t>(T::kBatchMax);
      p.on_build_batch = &on_build_batch;
    }
    // A plugin class whose inbound() needs something of the host says so: static constexpr uint32_t
    // kInboundFlags = TAYORI_INBOUND_SIGNS_URL.
    if constexpr (requires {
                    { T::kInboundFlags } -> std::convertible_to<uint32_t>;
                  }) {
      p.inbound_flags = static_cast<uint32_t>(T::kInboundFlags);
    }
    return p;
  }
};

}  // namespace detail
}  // namespace tayori::sdk

// Exports plugin class T. `settings` is a static array of tayori_setting_spec (may be empty: pass nullptr, 0).
#define TAYORI_PLUGIN(T, name, version, description, default_contact, settings, settings_count)                  \
  extern "C" TAYORI_EXPORT const tayori_plugin* tayori_plugin_entry(void) {                                    \
    static const tayori_plugin descriptor =                                                                    \
        ::tayori::sdk::detail::Adapter<T>::descriptor(name, version, description, default_contact, settings,   \
                                                      settings_count);                                         \
    return &descriptor;                                                                                        \
  }

#endif  // TAYORI_PLUGIN_HPP
