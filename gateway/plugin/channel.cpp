#include "plugin/channel.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>

#include <future>
#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "transport/http_transport.hpp"

namespace tayori::plugin {

namespace {

std::string version_text(unsigned major, unsigned minor) { return std::to_string(major) + "." + std::to_string(minor); }

}  // namespace

std::shared_ptr<Library> Library::open(const std::string& path, std::string& error) {
  // RTLD_NOW: an unresolved symbol fails here, not at the first delivery. RTLD_LOCAL: two plugins never
  // see each other's symbols.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    error = "cannot load plugin \"" + path + "\": " + (why ? why : "unknown dlopen error");
    return nullptr;
  }
  std::shared_ptr<Library> lib(new Library());
  lib->handle_ = handle;
  lib->path_ = path;
  auto entry = reinterpret_cast<tayori_plugin_entry_fn>(::dlsym(handle, TAYORI_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) {
    error = "incompatible plugin \"" + path + "\": it does not export " TAYORI_PLUGIN_ENTRY_SYMBOL
            " (is it a Tayori plugin? build it with TAYORI_PLUGIN from tayori/plugin.hpp)";
    return nullptr;
  }
  const tayori_plugin* d = entry();
  if (d == nullptr) {
    error = "incompatible plugin \"" + path + "\": " TAYORI_PLUGIN_ENTRY_SYMBOL " returned NULL";
    return nullptr;
  }
  // Read the three leading fields first: they are the same in every ABI version.
  if (d->abi_major != TAYORI_ABI_MAJOR) {
    error = "incompatible plugin \"" + path + "\": version mismatch: the host speaks plugin ABI " +
            version_text(TAYORI_ABI_MAJOR, TAYORI_ABI_MINOR) + ", the plugin was built for ABI " +
            version_text(d->abi_major, d->abi_minor);
    return nullptr;
  }
  if (d->struct_size < TAYORI_PLUGIN_V1_0_SIZE) {
    error = "incompatible plugin \"" + path + "\": its descriptor is " + std::to_string(d->struct_size) +
            " bytes, shorter than the " + std::to_string(TAYORI_PLUGIN_V1_0_SIZE) + " bytes of ABI " +
            version_text(TAYORI_ABI_MAJOR, 0) + " (plugin says ABI " + version_text(d->abi_major, d->abi_minor) + ")";
    return nullptr;
  }
  // A newer minor's longer descriptor: take the part this host knows. An older one: the rest stays zero.
  std::memcpy(&lib->descriptor_, d, std::min<size_t>(d->struct_size, sizeof(tayori_plugin)));
  const tayori_plugin& p = lib->descriptor_;
  std::string problem;
  if (p.name == nullptr || !std::regex_match(p.name, std::regex("^[a-z][a-z0-9_]*$")))
    problem = "its name \"" + std::string(p.name ? p.name : "(null)") + "\" is not [a-z][a-z0-9_]*";
  else if (p.version == nullptr)
    problem = "it has no version";
  else if (p.on_create == nullptr || p.on_destroy == nullptr)
    problem = "on_create and on_destroy are required";
  else if ((p.on_build == nullptr) != (p.on_classify == nullptr))
    problem = "on_build and on_classify come as a pair";
  else if (p.on_build == nullptr && p.on_deliver == nullptr)
    problem = "it implements neither on_build/on_classify nor on_deliver, so it cannot deliver anything";
  else if (p.batch_max > 0 && p.on_build_batch == nullptr)
    problem = "batch_max is " + std::to_string(p.batch_max) + " but on_build_batch is NULL";
  else if (p.on_build_batch != nullptr && p.on_build == nullptr)
    problem = "on_build_batch needs the on_build/on_classify pair (a batch is classified per delivery)";
  else if (p.settings_count > 0 && p.settings == nullptr)
    problem = "settings_count is set but settings is NULL";
  for (size_t i = 0; problem.empty() && i < p.settings_count; ++i) {
    const tayori_setting_spec& s = p.settings[i];
    std::string which = "setting #" + std::to_string(i);
    if (s.name == nullptr || !std::regex_match(s.name, std::regex("^[a-z][a-z0-9_]*$")))
      problem = which + " has no name or one that is not [a-z][a-z0-9_]*";
    else if (s.type < TAYORI_SETTING_STRING || s.type > TAYORI_SETTING_PATH)
      problem = "setting " + std::string(s.name) + " has a type this host does not know (" + std::to_string(s.type) + ")";
    else if (s.type == TAYORI_SETTING_SECRET && s.default_value != nullptr)
      problem = "setting " + std::string(s.name) + " is a secret and cannot have a default";
  }
  if (!problem.empty()) {
    error = "incompatible plugin \"" + path + "\": " + problem;
    return nullptr;
  }
  return lib;
}

Library::~Library() {
  if (handle_ != nullptr) ::dlclose(handle_);
}

std::string find_plugin(const std::string& name_or_path, const std::vector<std::string>& dirs,
                        const std::string& base_dir, std::string& searched) {
  namespace fs = std::filesystem;
  if (name_or_path.find('/') != std::string::npos || name_or_path.ends_with(".so")) {
    std::string p = config::resolve_path(base_dir, name_or_path);
    searched = p;
    return fs::exists(p) ? p : std::string();
  }
  searched.clear();
  for (const auto& dir : dirs) {
    fs::path candidate = fs::path(dir) / (name_or_path + ".so");
    searched += (searched.empty() ? "" : ", ") + candidate.string();
    if (fs::exists(candidate)) return candidate.string();
  }
  if (dirs.empty()) searched = "(no plugin_dirs configured)";
  return {};
}

// ---- Channel ---------------------------------------------------------------------------------

namespace {

void host_log(void* ctx, tayori_log_level level, tayori_str message) {
  auto* channel = static_cast<Channel*>(ctx);
  log::write(static_cast<log::Level>(level), "plugin." + channel->name(), std::string_view(message.data, message.len));
}

tayori_str view(const std::string& s) { return {s.data(), s.size()}; }
std::string_view text(tayori_str s) { return s.len == 0 ? std::string_view{} : std::string_view{s.data, s.len}; }

// A tayori_outcome with host-owned buffers, preset to RETRY as plugin.h promises.
struct OutcomeBuffers {
  char reason[512] = {0};
  char provider_id[256] = {0};
  tayori_outcome out{};
  OutcomeBuffers() {
    out.struct_size = sizeof out;
    out.kind = TAYORI_OUTCOME_RETRY;
    out.reason = reason;
    out.reason_capacity = sizeof reason;
    out.provider_message_id = provider_id;
    out.provider_message_id_capacity = sizeof provider_id;
  }
};

// `text` with each byte that is not part of valid UTF-8 replaced by U+FFFD.
std::string valid_utf8(std::string_view text) {
  std::string quoted = nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return nlohmann::json::parse(quoted).get<std::string>();
}

DeliveryOutcome to_outcome(tayori_status st, tayori_outcome& out) {
  DeliveryOutcome result;
  out.reason[out.reason_capacity - 1] = '\0';
  out.provider_message_id[out.provider_message_id_capacity - 1] = '\0';
  // Plugin text ends up in JSON events; a provider's bytes quoted in it need not be UTF-8.
  result.reason = valid_utf8(out.reason);
  result.provider_message_id = valid_utf8(out.provider_message_id);
  if (st != TAYORI_OK) {
    result.kind = OutcomeKind::retry;
    if (result.reason.empty()) result.reason = "plugin_error";
    return result;
  }
  switch (out.kind) {
    case TAYORI_OUTCOME_DELIVERED: result.kind = OutcomeKind::delivered; break;
    case TAYORI_OUTCOME_PERMANENT: result.kind = OutcomeKind::permanent; break;
    case TAYORI_OUTCOME_RETRY: result.kind = OutcomeKind::retry; break;
    default:
      result.kind = OutcomeKind::retry;
      result.reason = "plugin_error: unknown outcome kind " + std::to_string(static_cast<int>(out.kind));
  }
  // A provider's Retry-After is honoured, within reason: a day at most, so a bad value cannot park a message.
  result.retry_after_ms = std::clamp<int64_t>(out.retry_after_ms, 0, 86'400'000);
  result.deactivate_contact = out.deactivate_contact != 0;
  return result;
}

// A plugin's request as the transport takes it; empty `problem` when acceptable. Fields appended in ABI
// 1.1 are read only when the plugin's struct carries them.
transport::Request to_transport_request(const tayori_request* r, const std::string& pool_key, std::string& problem) {
  transport::Request req;
  if (r->kind != TAYORI_REQUEST_HTTP && r->kind != TAYORI_REQUEST_SMTP) {
    problem = "host.unknown_request_kind: " + std::to_string(static_cast<int>(r->kind));
    return req;
  }
  req.method = std::string(text(r->method));
  req.url = std::string(text(r->url));
  for (size_t i = 0; i < r->header_count; ++i) req.headers.emplace_back(text(r->headers[i].key), text(r->headers[i].value));
  req.body = std::string(text(r->body));
  req.pool_key = pool_key;
  if (r->kind == TAYORI_REQUEST_SMTP) {
    req.kind = transport::RequestKind::Smtp;
    req.method.clear();
    req.mail_from = std::string(text(r->mail_from));
    for (size_t i = 0; i < r->mail_rcpt_count; ++i) req.mail_rcpt.emplace_back(text(r->mail_rcpt[i]));
    if (r->struct_size >= offsetof(tayori_request, allow_plaintext) + sizeof r->allow_plaintext) {  // 1.1 fields
      req.username = std::string(text(r->username));
      req.password = std::string(text(r->password));
      req.allow_plaintext = r->allow_plaintext != 0;
    }
  }
  return req;
}

// Sends one request and waits: the calling worker blocks, the transport thread does the I/O.
transport::Response exchange(transport::HttpTransport& transport, transport::Request req) {
  std::promise<transport::Response> answered;
  auto future = answered.get_future();
  transport.submit(std::move(req), [&answered](transport::Response r) { answered.set_value(std::move(r)); });
  return future.get();
}

// Did the provider fail as a whole (the circuit breaker counts these), rather than answer? A transport
// error, an HTTP 5xx, or SMTP 421 (RFC 5321 §4.2.2: service not available). A 4xx, or an SMTP 5xx
// refusing one recipient, is an answer from a provider that is up.
bool provider_failed(transport::RequestKind kind, const transport::Response& r) {
  if (r.transport_error != 0) return true;
  return kind == transport::RequestKind::Smtp ? r.status == 421 : r.status >= 500;
}

// The metrics word for a retry the plugin made of this answer (DeliveryOutcome::cause).
std::string retry_cause(const transport::Response& r) {
  if (r.transport_error != 0) return "transport_error";
  if (r.status >= 500 || r.status == 421) return "server_error";
  if (r.status == 429) return "throttled";
  return "refused";
}

// Calls `use` with the C view of a transport response (valid only during the call).
template <class F>
auto with_response(const transport::Response& r, F&& use) {
  std::vector<tayori_kv> headers;
  for (auto& [k, v] : r.headers) headers.push_back({view(k), view(v)});
  tayori_response resp{};
  resp.struct_size = sizeof resp;
  resp.transport_error = r.transport_error;
  resp.transport_error_text = view(r.error_text);
  resp.status = r.status;
  resp.headers = headers.data();
  resp.header_count = headers.size();
  resp.body = view(r.body);
  return use(static_cast<const tayori_response*>(&resp));
}

void write_out(tayori_out out, std::string_view value) {
  if (out.write != nullptr) out.write(out.out_ctx, tayori_str{value.data(), value.size()});
}

// The requests a plugin adds during on_build / on_build_batch, copied as it adds them (plugin.h: a request
// is valid only during host_add_request).
struct CollectedRequests {
  std::string pool_key;
  std::vector<transport::Request> requests;
  std::string refused;  // why the last refused request was refused

  tayori_request_sink sink() { return {this, &add}; }
  static tayori_status add(void* ctx, const tayori_request* r) {
    auto* c = static_cast<CollectedRequests*>(ctx);
    std::string problem;
    transport::Request req = to_transport_request(r, c->pool_key, problem);
    if (!problem.empty()) {
      c->refused = problem;
      return TAYORI_INVALID;
    }
    c->requests.push_back(std::move(req));
    return TAYORI_OK;
  }
};

// Deliveries share a batch only when what the plugin may put in the shared request is identical
// (plugin.h on_build_batch): purpose, category, and every content field in order. Length-prefixed, so
// no two different deliveries produce the same key.
std::string batch_key(const tayori_delivery& d) {
  std::string key(1, d.purpose == TAYORI_PURPOSE_MARKETING ? 'm' : 't');
  auto add = [&key](tayori_str s) {
    key += std::to_string(s.len);
    key += ':';
    key += text(s);
  };
  add(d.category);
  for (size_t i = 0; i < d.content_count; ++i) {
    add(d.content[i].key);
    add(d.content[i].value);
  }
  return key;
}

}  // namespace

// The ABI 1.1 host services (plugin.h): thin adapters over transport/crypto and the channel's token cache.
struct Channel::HostServices {
  static Channel& of(void* ctx) { return *static_cast<Channel*>(ctx); }

  static tayori_status sign_jwt(void*, tayori_str alg, tayori_str header_extra, tayori_str claims, tayori_str pem,
                                tayori_out jwt, tayori_error_buf error) {
    auto r = transport::sign_jwt(text(alg), text(header_extra), text(claims), text(pem));
    if (!r) return fail(error, r.error);
    write_out(jwt, r.value);
    return TAYORI_OK;
  }
  static tayori_status hmac(void*, tayori_hash hash, tayori_str key, tayori_str data, tayori_out mac,
                            tayori_error_buf error) {
    if (hash != TAYORI_HASH_SHA256 && hash != TAYORI_HASH_SHA1) return fail(error, "unknown hash");
    auto r = hash == TAYORI_HASH_SHA256 ? transport::hmac_sha256(text(key), text(data))
                                        : transport::hmac_sha1(text(key), text(data));
    if (!r) return fail(error, r.error);
    write_out(mac, r.value);
    return TAYORI_OK;
  }
  static void base64(void*, tayori_str bytes, int url_safe, tayori_out out) {
    write_out(out, url_safe ? transport::base64url_encode(text(bytes)) : transport::base64_encode(text(bytes)));
  }
  static int equal(void*, tayori_str a, tayori_str b) { return transport::constant_time_equal(text(a), text(b)) ? 1 : 0; }

  static tayori_status token(void* ctx, tayori_str key, int64_t refresh_before_ms, tayori_mint_fn mint,
                             void* mint_ctx, tayori_out out, tayori_error_buf error) {
    Channel& c = of(ctx);
    if (mint == nullptr) return fail(error, "no mint function");
    bool transient = false;  // the mint said TAYORI_RETRY_LATER: pass that on, it is not a configuration error
    auto r = c.tokens_.get(std::string(text(key)), c.clock_.now_ms(), refresh_before_ms,
                           [&]() -> transport::CryptoResult<transport::MintedToken> {
                             std::string minted;
                             int64_t expires = 0;
                             char why[512] = {0};
                             tayori_out sink{&minted, [](void* m, tayori_str v) {
                                               static_cast<std::string*>(m)->assign(v.data ? v.data : "", v.len);
                                             }};
                             tayori_status st = mint(mint_ctx, sink, &expires, tayori_error_buf{why, sizeof why});
                             transient = st == TAYORI_RETRY_LATER;
                             if (st != TAYORI_OK)
                               return transport::CryptoResult<transport::MintedToken>::failure(
                                   why[0] ? why : "the plugin's mint function failed without saying why");
                             if (minted.empty())
                               return transport::CryptoResult<transport::MintedToken>::failure("minted an empty token");
                             return transport::CryptoResult<transport::MintedToken>::success({minted, expires});
                           });
    if (!r) {
      fail(error, r.error);
      return transient ? TAYORI_RETRY_LATER : TAYORI_ERROR;
    }
    write_out(out, r.value);
    return TAYORI_OK;
  }
  static void invalidate(void* ctx, tayori_str key, tayori_str only_if_token) {
    of(ctx).tokens_.invalidate(std::string(text(key)), text(only_if_token));
  }
  static tayori_status exchange_request(void* ctx, const tayori_request* request, tayori_response_fn on_response,
                                        void* response_ctx) {
    Channel& c = of(ctx);
    if (request == nullptr || on_response == nullptr || c.transport_ == nullptr) return TAYORI_INVALID;
    std::string problem;
    transport::Request req = to_transport_request(request, c.pool_key(), problem);
    if (!problem.empty()) {
      log::write(log::Level::warn, "plugin." + c.name_, "host_exchange refused: " + problem);
      return TAYORI_INVALID;
    }
    transport::Response r = exchange(*c.transport_, std::move(req));
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

Channel::Channel(std::string name, std::string contact, std::shared_ptr<Library> library, const ChannelHost& host)
    : name_(std::move(name)),
      contact_(std::move(contact)),
      library_(std::move(library)),
      clock_(host.clock),
      transport_(host.transport),
      links_(host.links),
      link_ttl_ms_(host.link_ttl_ms) {
  host_.struct_size = sizeof host_;
  host_.abi_major = TAYORI_ABI_MAJOR;
  host_.abi_minor = TAYORI_ABI_MINOR;
  host_.host_ctx = this;
  host_.host_log = &host_log;
  host_.host_now_ms = [](void* ctx) -> int64_t { return static_cast<Channel*>(ctx)->clock_.now_ms(); };
  host_.host_sign_jwt = &HostServices::sign_jwt;
  host_.host_hmac = &HostServices::hmac;
  host_.host_base64 = &HostServices::base64;
  host_.host_equal_constant_time = &HostServices::equal;
  host_.host_token = &HostServices::token;
  host_.host_token_invalidate = &HostServices::invalidate;
  host_.host_exchange = &HostServices::exchange_request;
}

Channel::Channel(std::string name, std::string contact, std::shared_ptr<Library> library, const Clock& clock,
                 transport::HttpTransport* transport)
    : Channel(std::move(name), std::move(contact), std::move(library), ChannelHost{clock, transport, {}, 0}) {}

Channel::~Channel() {
  if (instance_ != nullptr) library_->descriptor().on_destroy(instance_);
}

bool Channel::create(const std::vector<std::pair<std::string, std::string>>& settings, std::string& error) {
  std::vector<tayori_kv> kv;
  for (auto& [k, v] : settings) kv.push_back({view(k), view(v)});
  char buffer[1024] = {0};
  tayori_status st = library_->descriptor().on_create(&host_, kv.data(), kv.size(), &instance_,
                                                      tayori_error_buf{buffer, sizeof buffer});
  if (st != TAYORI_OK) {
    instance_ = nullptr;
    error = buffer[0] ? buffer : "the plugin refused its settings without saying why";
    return false;
  }
  if (instance_ == nullptr) {
    error = "the plugin reported success but created no instance";
    return false;
  }
  return true;
}

DeliveryOutcome Channel::deliver(const DeliveryRequest& r) {
  std::vector<tayori_kv> content;
  for (auto& [k, v] : r.content) content.push_back({view(k), view(v)});
  // Links back to the gateway: one-click unsubscribe for marketing only (RFC 8058 concerns bulk mail;
  // transactional mail must not offer an opt-out of itself), and this channel's inbound endpoint.
  std::string unsubscribe_url, callback_url;
  if (links_.enabled()) {
    if (r.marketing)
      unsubscribe_url = links_.url({links::LinkKind::unsubscribe, r.message_id, name_, "",
                                    (clock_.now_ms() + link_ttl_ms_) / 1000});
    callback_url = links_.public_url() + "/inbound/" + library_->descriptor().name + "/" + name_;
  }
  tayori_delivery d{};
  d.struct_size = sizeof d;
  d.message_id = view(r.message_id);
  d.delivery_id = view(r.delivery_id);
  d.attempt = r.attempt;
  d.channel = view(name_);
  d.recipient_id = view(r.recipient_id);
  d.contact = view(r.contact);
  d.purpose = r.marketing ? TAYORI_PURPOSE_MARKETING : TAYORI_PURPOSE_TRANSACTIONAL;
  d.category = view(r.category);
  d.locale = view(r.locale);
  d.timezone = view(r.timezone);
  d.expires_at_ms = r.expires_at_ms;
  d.content = content.data();
  d.content_count = content.size();
  d.metadata_json = view(r.metadata_json);
  d.unsubscribe_url = view(unsubscribe_url);
  d.callback_url = view(callback_url);
  std::vector<tayori_response_option> responses;
  for (const ResponseOption& o : r.responses) responses.push_back({view(o.id), view(o.label), view(o.ref), view(o.url)});
  d.responses = responses.data();
  d.response_count = responses.size();

  int64_t now = clock_.now_ms();
  if (!circuit_.admit(now)) {
    DeliveryOutcome waiting;
    waiting.reason = waiting.cause = "circuit_open";
    waiting.circuit_open = true;
    waiting.retry_after_ms = std::max<int64_t>(1, circuit_.next_probe_ms() - now);
    return waiting;
  }
  const tayori_plugin& p = library_->descriptor();
  // A delivery with response options carries refs minted for its own message, which one shared request
  // could not (plugin.h tayori_delivery.responses): it goes alone.
  const bool batchable = batch_window_ms_ > 0 && transport_ != nullptr && library_->batches() && responses.empty();
  if (p.on_deliver == nullptr) return batchable ? deliver_batched(d) : deliver_through_transport(d);
  // A direct-delivery plugin owns its I/O: a retry is the only sign of a provider in trouble it gives.
  OutcomeBuffers buffers;
  DeliveryOutcome outcome = to_outcome(p.on_deliver(instance_, &d, &buffers.out), buffers.out);
  circuit_.record(outcome.kind == OutcomeKind::retry, clock_.now_ms());
  if (outcome.kind == OutcomeKind::retry) outcome.cause = "plugin";
  return outcome;
}

namespace {

// What on_inbound reports through its tayori_inbound_sink, copied as it reports it (plugin.h: the plugin's
// strings are valid only during the call). Fields appended in 1.2 are read only when the plugin's event
// carries them; plugin text is made valid UTF-8, since it ends up in JSON events.
struct CollectedInbound {
  std::string channel;
  std::vector<InboundEvent> events;
  bool answered = false;
  InboundAnswer answer;

  tayori_inbound_sink sink() { return {this, &emit, &respond}; }

  static void emit(void* ctx, const tayori_inbound_event* e) {
    auto* c = static_cast<CollectedInbound*>(ctx);
    if (e == nullptr) return;
    InboundEvent out;
    switch (e->type) {
      case TAYORI_EVENT_RESPONDED: out.kind = InboundKind::response; break;
      case TAYORI_EVENT_REPLIED: out.kind = InboundKind::reply; break;
      case TAYORI_EVENT_OPTED_IN: out.kind = InboundKind::opt_in; break;
      case TAYORI_EVENT_OPTED_OUT: out.kind = InboundKind::opt_out; break;
      case TAYORI_EVENT_DELIVERED: out.kind = InboundKind::delivered; break;
      case TAYORI_EVENT_FAILED: out.kind = InboundKind::failed; break;
      case TAYORI_EVENT_CONTACT_DEACTIVATED:
        out.kind = InboundKind::failed;
        out.deactivate_contact = true;
        break;
      default:
        log::warn("plugin." + c->channel,
                  "on_inbound emitted an event of unknown type " + std::to_string(static_cast<int>(e->type)) +
                      "; dropped");
        return;
    }
    out.event_id = valid_utf8(text(e->provider_event_id));
    out.contact = valid_utf8(text(e->contact));
    out.provider_message_id = valid_utf8(text(e->message_ref));
    out.option = valid_utf8(text(e->response_id));
    // FAILED carries the provider's reason in `text` (plugin.h); every other kind its text.
    (out.kind == InboundKind::failed ? out.reason : out.text) = valid_utf8(text(e->text));
    out.at_ms = std::max<int64_t>(0, e->occurred_at_ms);
    if (e->struct_size >= offsetof(tayori_inbound_event, reactivate_contact) + sizeof e->reactivate_contact) {
      out.ref = valid_utf8(text(e->ref));
      out.deactivate_contact = out.deactivate_contact || e->deactivate_contact != 0;
      out.reactivate_contact = e->reactivate_contact != 0;
    }
    c->events.push_back(std::move(out));
  }
  static void respond(void* ctx, int status, tayori_str content_type, tayori_str body) {
    auto* c = static_cast<CollectedInbound*>(ctx);
    if (c->answered) return;  // plugin.h: once; the first answer stands
    c->answered = true;
    c->answer.status = status;
    c->answer.content_type = content_type.len > 0 ? std::string(text(content_type)) : "text/plain";
    c->answer.body = std::string(text(body));
  }
};

// The path of an absolute URL: after scheme://authority, before '?' (RFC 3986 §3).
std::string path_of(std::string_view url) {
  size_t start = url.find("://");
  start = start == std::string_view::npos ? 0 : url.find('/', start + 3);
  if (start == std::string_view::npos) return "/";
  return std::string(url.substr(start, url.find('?', start) - start));
}

}  // namespace

bool Channel::inbound(const InboundRequest& request, std::vector<InboundEvent>& events, InboundAnswer& answer) {
  events.clear();
  const tayori_plugin& p = library_->descriptor();
  if (p.on_inbound == nullptr || instance_ == nullptr) {
    answer = {404, "text/plain", "channel \"" + name_ + "\" takes no inbound calls"};
    return false;
  }
  std::vector<tayori_kv> headers;
  for (auto& [k, v] : request.headers) headers.push_back({view(k), view(v)});
  const std::string path = path_of(request.url);
  tayori_inbound_request raw{};
  raw.struct_size = sizeof raw;
  raw.method = view(request.method);
  raw.url = view(request.url);
  raw.path = view(path);
  raw.query = view(request.query);
  raw.headers = headers.data();
  raw.header_count = headers.size();
  raw.body = view(request.body);

  CollectedInbound collected{name_, {}, false, {}};
  tayori_inbound_sink sink = collected.sink();
  char error[512] = {0};
  tayori_status st = p.on_inbound(instance_, &raw, &sink, tayori_error_buf{error, sizeof error});
  std::string why = valid_utf8(error);
  if (st == TAYORI_OK) {
    events = std::move(collected.events);
    answer = collected.answered ? std::move(collected.answer) : InboundAnswer{};
    return true;
  }
  // Refused or failed: nothing the call said is applied (plugin.h on_inbound).
  if (st == TAYORI_INVALID) {
    bool refusal = collected.answered && collected.answer.status >= 400 && collected.answer.status < 500;
    answer = refusal ? std::move(collected.answer)
                     : InboundAnswer{400, "text/plain", why.empty() ? "the inbound call was refused" : why};
    log::info("plugin." + name_, "inbound call refused (" + std::to_string(answer.status) + "): " + why);
  } else {
    answer = {500, "text/plain", "the channel could not handle the call"};
    log::warn("plugin." + name_, "on_inbound failed: " + (why.empty() ? std::string("without saying why") : why));
  }
  return false;
}

transport::Response Channel::send(transport::Request request) {
  transport::RequestKind kind = request.kind;
  transport::Response r = exchange(*transport_, std::move(request));
  circuit_.record(provider_failed(kind, r), clock_.now_ms());
  return r;
}

DeliveryOutcome Channel::deliver_through_transport(const tayori_delivery& d) {
  const tayori_plugin& p = library_->descriptor();
  DeliveryOutcome result;
  if (transport_ == nullptr) {
    result.reason = "host.no_transport";  // build_registry refuses such a channel; kept as a guard
    return result;
  }
  // 1. The plugin builds its requests; the host copies them (plugin.h: valid only during the call).
  CollectedRequests collected{pool_key(), {}, {}};
  tayori_request_sink sink = collected.sink();
  char error[512] = {0};
  tayori_status st = p.on_build(instance_, &d, &sink, tayori_error_buf{error, sizeof error});
  if (st != TAYORI_OK || collected.requests.empty()) {
    circuit_.release(clock_.now_ms());  // nothing reached the provider: a probe learnt nothing
    // Nothing was sent: what the plugin cannot build now it will not build on a retry either -- unless it
    // says TAYORI_RETRY_LATER (a prerequisite such as an OAuth grant failed for a transient reason).
    if (st == TAYORI_RETRY_LATER) {
      result.kind = OutcomeKind::retry;
      result.reason = error[0] ? std::string(error) : "plugin: build: retry later";
      result.cause = "prerequisite";
      return result;
    }
    result.kind = OutcomeKind::permanent;
    result.reason = !collected.refused.empty() ? collected.refused
                    : error[0]                 ? std::string("plugin_error: build: ") + error
                                               : "plugin_error: build produced no request";
    return result;
  }
  // 2. Send each request in turn. The first answer that is not "delivered" decides.
  for (auto& req : collected.requests) {
    transport::Response r = send(std::move(req));
    // 3. The plugin reads the provider's answer.
    OutcomeBuffers buffers;
    result = with_response(r, [&](const tayori_response* resp) {
      return to_outcome(p.on_classify(instance_, &d, resp, &buffers.out), buffers.out);
    });
    if (result.kind == OutcomeKind::retry) result.cause = retry_cause(r);
    if (result.kind != OutcomeKind::delivered) return result;
  }
  return result;
}

// ---- Batching (plugin.h on_build_batch) --------------------------------------------------------
//
// Each delivery of a batching channel blocks in deliver() as usual. The first of a content opens a group
// and leads it: it waits until the batch window ends or batch_max deliveries have joined, closes the
// group, sends the one shared request and hands every member its verdict. The members' tayori_delivery
// structs stay in their own (waiting) stack frames, which is why the leader finishes with every member
// before waking any. A member told to go alone delivers itself through on_build, in its own thread, so
// the fallback of a refused batch runs in parallel and is paced by the channel's pool like any delivery.

struct Channel::BatchMember {
  const tayori_delivery* delivery = nullptr;
  bool alone = false;       // set by the leader: deliver on your own (on_build/on_classify)
  DeliveryOutcome outcome;  // set by the leader otherwise
  std::promise<void> answered;
};

struct Channel::BatchGroup {
  std::vector<BatchMember*> members;
  std::set<std::string_view> contacts;  // views into the members' deliveries
  bool closed = false;                  // no one joins any more; the group has left open_batches_
  std::condition_variable full;
};

DeliveryOutcome Channel::deliver_batched(const tayori_delivery& d) {
  const size_t batch_max = library_->descriptor().batch_max;
  const std::string key = batch_key(d);
  BatchMember me;
  me.delivery = &d;
  std::unique_lock lock(batch_mutex_);
  if (auto it = open_batches_.find(key); it != open_batches_.end()) {
    std::shared_ptr<BatchGroup> group = it->second;
    // One request naming a contact twice might reach it once: the second delivery goes on its own.
    if (!group->contacts.insert(text(d.contact)).second) {
      lock.unlock();
      return deliver_through_transport(d);
    }
    group->members.push_back(&me);
    if (group->members.size() >= batch_max) {
      group->closed = true;
      open_batches_.erase(it);
      group->full.notify_one();
    }
    std::future<void> answered = me.answered.get_future();
    lock.unlock();
    answered.wait();
    return me.alone ? deliver_through_transport(d) : me.outcome;
  }

  auto group = std::make_shared<BatchGroup>();
  group->members.push_back(&me);
  group->contacts.insert(text(d.contact));
  open_batches_.emplace(key, group);
  group->full.wait_for(lock, std::chrono::milliseconds(batch_window_ms_), [&] { return group->closed; });
  if (!group->closed) {
    group->closed = true;
    open_batches_.erase(key);  // still this group: a group leaves the map only when it closes
  }
  lock.unlock();
  // Closed: nobody else touches group->members any more.
  std::vector<BatchMember*> members = std::move(group->members);
  if (members.size() == 1) return deliver_through_transport(d);
  try {
    send_batch(members);
  } catch (const std::exception& e) {
    // Host trouble (memory). The request may have gone out, so no member is resent now: all retry later.
    for (BatchMember* m : members) {
      m->alone = false;
      m->outcome = DeliveryOutcome{};  // retry
      m->outcome.reason = std::string("host.batch_error: ") + e.what();
    }
  }
  for (BatchMember* m : members)
    if (m != &me) m->answered.set_value();
  return me.alone ? deliver_through_transport(d) : me.outcome;
}

void Channel::send_batch(const std::vector<BatchMember*>& members) {
  const tayori_plugin& p = library_->descriptor();
  std::vector<const tayori_delivery*> deliveries;
  for (BatchMember* m : members) deliveries.push_back(m->delivery);
  CollectedRequests collected{pool_key(), {}, {}};
  tayori_request_sink sink = collected.sink();
  char error[512] = {0};
  tayori_status st =
      p.on_build_batch(instance_, deliveries.data(), deliveries.size(), &sink, tayori_error_buf{error, sizeof error});
  if (st == TAYORI_RETRY_LATER) {  // a prerequisite (an OAuth grant) failed for now: nothing was sent
    circuit_.release(clock_.now_ms());
    for (BatchMember* m : members) {
      m->outcome.kind = OutcomeKind::retry;
      m->outcome.reason = error[0] ? std::string(error) : "plugin: build: retry later";
      m->outcome.cause = "prerequisite";
    }
    return;
  }
  if (st != TAYORI_OK || collected.requests.size() != 1) {
    // Nothing was sent, so delivering each on its own duplicates nothing; the single build says precisely
    // what is wrong with which delivery.
    std::string why = "it built " + std::to_string(collected.requests.size()) + " requests (a batch is one)";
    if (st != TAYORI_OK)
      why = error[0] ? std::string(error) : "it failed without saying why";
    else if (!collected.refused.empty())
      why = collected.refused;
    log::info("plugin." + name_,
              "a batch of " + std::to_string(members.size()) + " was not built, delivering each on its own: " + why);
    for (BatchMember* m : members) m->alone = true;
    return;
  }
  ++batches_sent_;
  transport::Response r = send(std::move(collected.requests.front()));
  with_response(r, [&](const tayori_response* resp) {
    for (BatchMember* m : members) {
      OutcomeBuffers buffers;
      m->outcome = to_outcome(p.on_classify(instance_, m->delivery, resp, &buffers.out), buffers.out);
      if (m->outcome.kind == OutcomeKind::retry) m->outcome.cause = retry_cause(r);
      // A refused request delivered nothing, and a batch answer cannot name the recipient at fault.
      m->alone = m->outcome.kind == OutcomeKind::permanent;
    }
  });
}

// ---- Registry ---------------------------------------------------------------------------------

Channel* Registry::find(const std::string& name) const {
  for (auto& c : channels_)
    if (c->name() == name) return c.get();
  return nullptr;
}

namespace {

bool valid_value(const config::Config& config, tayori_setting_type type, const std::string& v,
                 std::string& normalised, std::string& problem) {
  normalised = v;
  switch (type) {
    case TAYORI_SETTING_PATH:
      if (v.empty()) {
        problem = "must be a file path";
        return false;
      }
      normalised = config::resolve_path(config.base_dir, v);
      return true;
    case TAYORI_SETTING_STRING:
    case TAYORI_SETTING_SECRET:
      return true;
    case TAYORI_SETTING_INT:
      if (!std::regex_match(v, std::regex("^-?[0-9]{1,18}$"))) {
        problem = "must be an integer";
        return false;
      }
      return true;
    case TAYORI_SETTING_BOOL:
      if (v != "true" && v != "false") {
        problem = "must be true or false";
        return false;
      }
      return true;
    case TAYORI_SETTING_DURATION: {
      auto ms = parse_duration_ms(v);
      if (!ms) {
        problem = "must be a duration like 250ms, 10s, 5m, 24h or 7d";
        return false;
      }
      normalised = std::to_string(*ms);
      return true;
    }
    case TAYORI_SETTING_URL:
      if (!std::regex_match(v, std::regex("^(https?|smtps?)://[^\\s/]+(/\\S*)?$"))) {
        problem = "must be an absolute http(s):// or smtp(s):// URL";
        return false;
      }
      return true;
  }
  problem = "has a type this host does not know";
  return false;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> check_settings(const config::Config& config,
                                                                const config::ChannelConfig& ch,
                                                                const tayori_plugin& p,
                                                                std::vector<config::Diagnostic>& errors) {
  std::string base = "channels[" + std::to_string(ch.index) + "].settings";
  std::vector<std::pair<std::string, std::string>> out;
  std::set<std::string> seen;
  auto spec_of = [&](const std::string& key) -> const tayori_setting_spec* {
    for (size_t i = 0; i < p.settings_count; ++i)
      if (p.settings[i].name && key == p.settings[i].name) return &p.settings[i];
    return nullptr;
  };
  for (const auto& sv : ch.settings) {
    std::string written = sv.from_env ? sv.key + "_env" : sv.key;
    const tayori_setting_spec* spec = spec_of(sv.key);
    if (spec == nullptr) {
      std::string known;
      for (size_t i = 0; i < p.settings_count; ++i) known += (known.empty() ? "" : ", ") + std::string(p.settings[i].name);
      errors.push_back({config.file, sv.at, base + "." + written,
                        "unknown setting for plugin " + std::string(p.name) +
                            (known.empty() ? " (it takes none)" : " (it takes: " + known + ")")});
      continue;
    }
    seen.insert(sv.key);  // reported below if wrong, but never also as "missing"
    if (spec->type == TAYORI_SETTING_SECRET && !sv.from_env) {
      errors.push_back({config.file, sv.at, base + "." + written,
                        "is a secret: name an environment variable with " + sv.key + "_env instead of writing it here"});
      continue;
    }
    if (spec->type != TAYORI_SETTING_SECRET && sv.from_env) {
      errors.push_back({config.file, sv.at, base + "." + written, "is not a secret: write " + sv.key + " directly"});
      continue;
    }
    std::string normalised, problem;
    if (!valid_value(config, spec->type, sv.value, normalised, problem)) {
      errors.push_back({config.file, sv.at, base + "." + written, problem});
      continue;
    }
    seen.insert(sv.key);
    out.emplace_back(sv.key, normalised);
  }
  for (size_t i = 0; i < p.settings_count; ++i) {
    const tayori_setting_spec& spec = p.settings[i];
    if (seen.count(spec.name)) continue;
    if (spec.default_value != nullptr) {
      std::string normalised, problem;
      if (!valid_value(config, spec.type, spec.default_value, normalised, problem)) {
        errors.push_back({config.file, ch.settings_at, base + "." + spec.name,
                          "plugin " + std::string(p.name) + " declares an invalid default \"" + spec.default_value +
                              "\": " + problem});
        continue;
      }
      out.emplace_back(spec.name, normalised);
    } else if (spec.required) {
      std::string key = spec.type == TAYORI_SETTING_SECRET ? std::string(spec.name) + "_env" : spec.name;
      errors.push_back({config.file, ch.settings_at, base + "." + key, "is required by plugin " + std::string(p.name)});
    }
  }
  return out;
}

RegistryResult build_registry(const config::Config& config, const Clock& clock, transport::HttpTransport* transport) {
  RegistryResult result;
  auto registry = std::make_unique<Registry>();
  std::map<std::string, std::shared_ptr<Library>> libraries;
  ChannelHost host{clock, transport, {}, config.server.link_ttl_ms};
  if (!config.server.public_url.empty()) host.links = links::LinkSigner(config.server.public_url, config.server.link_secret);
  for (const auto& ch : config.channels) {
    std::string path_key = "channels[" + std::to_string(ch.index) + "]";
    std::string searched;
    std::string path = find_plugin(ch.plugin, config.plugin_dirs, config.base_dir, searched);
    if (path.empty()) {
      result.errors.push_back({config.file, ch.at, path_key + ".plugin",
                               "plugin \"" + ch.plugin + "\" not found (looked in: " + searched + ")"});
      continue;
    }
    std::shared_ptr<Library>& lib = libraries[path];
    if (!lib) {
      std::string error;
      lib = Library::open(path, error);
      if (!lib) {
        result.errors.push_back({config.file, ch.at, path_key + ".plugin", error});
        libraries.erase(path);
        continue;
      }
    }
    const tayori_plugin& p = lib->descriptor();
    if (lib->sans_io() && p.on_deliver == nullptr && transport == nullptr) {
      result.errors.push_back({config.file, ch.at, path_key + ".plugin",
                               "plugin " + std::string(p.name) +
                                   " is sans-I/O (on_build/on_classify) and no outbound transport was given"});
      continue;
    }
    size_t errors_before = result.errors.size();
    auto settings = check_settings(config, ch, p, result.errors);
    if (result.errors.size() != errors_before) continue;
    std::string contact = !ch.contact.empty() ? ch.contact : (p.default_contact ? p.default_contact : "");
    if (contact.empty()) {
      result.errors.push_back({config.file, ch.at, path_key + ".contact",
                               "plugin " + std::string(p.name) + " has no default contact: say which recipient contact it uses"});
      continue;
    }
    if (ch.batch_window_ms > 0 && !lib->batches()) {
      result.errors.push_back({config.file, ch.batch_window_at, path_key + ".batch_window",
                               "plugin " + std::string(p.name) +
                                   " does not batch deliveries (it has no on_build_batch): remove batch_window"});
      continue;
    }
    auto channel = std::make_unique<Channel>(ch.name, contact, lib, host);
    channel->set_batch_window_ms(ch.batch_window_ms);
    channel->set_retry_policy(ch.retry);
    channel->set_circuit_breaker(ch.circuit_breaker);
    if (transport != nullptr && (ch.concurrency > 0 || ch.rate_per_second > 0)) {
      transport::PoolOptions pool;
      pool.max_concurrent = ch.concurrency;
      if (ch.rate_per_second > 0)
        pool.rate_limiter = std::make_shared<transport::TokenBucket>(
            ch.rate_per_second, ch.burst > 0 ? ch.burst : std::max(1.0, ch.rate_per_second));
      transport->configure_pool(channel->pool_key(), pool);
    }
    std::string error;
    if (!channel->create(settings, error)) {
      result.errors.push_back({config.file, ch.settings_at, path_key + ".settings", error});
      continue;
    }
    registry->add(std::move(channel));
  }
  if (result.errors.empty()) result.registry = std::move(registry);
  return result;
}

}  // namespace tayori::plugin
