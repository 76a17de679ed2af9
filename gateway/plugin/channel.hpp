// The host side of the plugin boundary: loading plugin libraries (dlopen RTLD_NOW|RTLD_LOCAL), refusing
// the ones we cannot trust (docs/architecture.md §6.3), and the registry of configured channel instances.
// Implemented in loader.cpp (Library, find_plugin), channel.cpp (a channel's plugin instance), delivery.cpp
// and batching.cpp (Channel::deliver), inbound.cpp (Channel::inbound), host_services.cpp (the tayori_host
// callbacks) and registry.cpp (Registry, build_registry, check_settings); marshal.hpp holds the
// conversions to and from the C ABI that they share.
#pragma once

#include <tayori/plugin.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/time.hpp"
#include "config/config.hpp"

#include "links/links.hpp"
#include "transport/circuit_breaker.hpp"
#include "crypto/crypto.hpp"

namespace tayori::transport {
class OutboundTransport;
struct Request;
struct Response;
}

namespace tayori::plugin {

// A plugin library held open for as long as any channel uses it.
class Library {
 public:
  // Opens `path` and checks its descriptor. A refusal's message names the file and, for version problems,
  // both versions.
  static Result<std::shared_ptr<Library>> open(const std::string& path);
  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  const tayori_plugin& descriptor() const { return descriptor_; }
  const std::string& path() const { return path_; }
  bool sans_io() const { return descriptor_.on_build != nullptr; }
  // It can carry several deliveries of identical content in one request (plugin.h on_build_batch); only
  // the sans-I/O path batches, so a plugin that also has on_deliver (which wins) does not.
  bool batches() const {
    return descriptor_.on_build_batch != nullptr && descriptor_.batch_max > 1 && descriptor_.on_deliver == nullptr;
  }

 private:
  Library() = default;
  void* handle_ = nullptr;
  std::string path_;
  tayori_plugin descriptor_{};  // the plugin's descriptor, zero-extended to this host's size
};

// Finds a plugin by name (<dir>/<name>.so in each of `dirs`) or by path (contains '/' or ends in .so).
// Returns an empty string, with `searched` listing where it looked, when not found.
std::string find_plugin(const std::string& name_or_path, const std::vector<std::string>& dirs,
                        const std::string& base_dir, std::string& searched);

enum class OutcomeKind { delivered, retry, permanent };

// One response option of a message as its channel renders it (two-way issue). The host mints `ref` and
// `url`; the plugin shows `label` natively (LINE quick reply with `ref` as postback data, APNs category,
// FCM data, e-mail links to `url`, numbered SMS choices).
struct ResponseOption {
  std::string id;     // "interested", "later", "not_interested"
  std::string label;  // as the recipient reads it
  std::string ref;    // signed reference to (message, channel, option): LinkSigner, kind response; <= 300 chars
  std::string url;    // public_url + "/r/" + ref; empty without public_url
};

struct DeliveryRequest {
  std::string message_id;
  std::string delivery_id;
  uint32_t attempt = 1;
  std::string recipient_id;
  std::string contact;
  bool marketing = false;
  std::string category;
  std::string locale;
  std::string timezone;
  int64_t expires_at_ms = 0;
  std::vector<std::pair<std::string, std::string>> content;
  std::string metadata_json = "{}";
  std::vector<ResponseOption> responses;  // empty: the message asks nothing
};

// A provider's webhook call as the gateway received it (POST /inbound/<plugin>/<channel>).
struct InboundRequest {
  std::string method;
  std::string url;    // the full public URL the provider called (public_url + path + ?query): Twilio signs it
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;   // raw bytes: LINE signs them
};

// A provider report: what a provider's webhook call says (a receipt, a reply, an answer, a STOP, an unfollow),
// as its plugin normalised it; one call may carry several, in the provider's order. The plugin ABI calls it an
// inbound event (tayori_inbound_event); here it is a report, so that an event is only ever a timeline's
// (docs/architecture.md, "Words we use"): core/inbound.hpp decides which events a report records.
enum class ReportKind {
  response,   // an answer to a message's response options (LINE postback, an app's action): `ref` or `option`
  reply,      // free text from the recipient (`text`); a numbered SMS reply also carries `option` ("2")
  opt_in,     // LINE follow, SMS START / UNSTOP: consent given on this channel
  opt_out,    // LINE unfollow, SMS STOP family: consent withdrawn on this channel
  delivered,  // a delivery receipt for `provider_message_id`
  failed,     // a failure receipt for `provider_message_id` (`reason`; `deactivate_contact` when the contact is dead)
};
struct ProviderReport {
  ReportKind kind = ReportKind::reply;
  std::string report_id;  // the provider's id for de-duplication (LINE webhookEventId, Twilio MessageSid+status)
  std::string contact;   // the contact point it concerns (LINE user id, phone number)
  std::string ref;       // a signed reference the provider echoed back (LINE postback data)
  std::string option;    // a response option id, or the number of a numbered SMS reply
  std::string text;      // reply text, the keyword, or the failure's detail
  std::string provider_message_id;
  std::string reason;    // failed: the provider's code ("twilio.30005")
  bool deactivate_contact = false;  // failed / opt_out(unfollow): the contact point cannot be used (suppress it)
  bool reactivate_contact = false;  // opt_in(follow): a suppression this channel made for it is lifted
  int64_t at_ms = 0;     // when the provider says it happened; 0: now
};

// The answer the provider gets (TwiML for Twilio, 200 for LINE, 401 on a bad signature).
struct InboundAnswer {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

// What the host gives every channel beyond its plugin: the clock, the outbound transport (may be null:
// then sans-I/O plugins are refused), and the signer of links back to the gateway.
struct ChannelHost {
  const Clock& clock;
  transport::OutboundTransport* transport = nullptr;
  links::LinkSigner links;  // disabled when no public URL is configured
  int64_t link_ttl_ms = 60LL * 86'400'000;
};

struct DeliveryOutcome {
  OutcomeKind kind = OutcomeKind::retry;
  std::string reason;
  std::string provider_message_id;
  int64_t retry_after_ms = 0;
  bool deactivate_contact = false;
  // For a retry: what kind of trouble, a short fixed word for metrics labels (the reason is free text):
  // transport_error, server_error (5xx), throttled (429), refused (another answer the plugin retries),
  // prerequisite (the plugin could not build the request now), plugin (a direct-delivery plugin's retry),
  // host (the gateway failed while delivering: Channel::deliver).
  std::string cause;
  // The channel's circuit is open and this delivery was not the probe: nothing was sent, no attempt was
  // used; retry_after_ms says when the next probe may go.
  bool circuit_open = false;
};

// One configured channel: a plugin instance with its name and the recipient contact it uses.
class Channel {
 public:
  // `host.transport` (may be null) carries the requests of a sans-I/O plugin; it must outlive the channel.
  Channel(std::string name, std::string contact, std::shared_ptr<Library> library, const ChannelHost& host);
  // A channel without links (tests).
  Channel(std::string name, std::string contact, std::shared_ptr<Library> library, const Clock& clock,
          transport::OutboundTransport* transport = nullptr);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Creates the plugin instance; the Error says why when the plugin refuses its settings.
  Result<void> create(const std::vector<std::pair<std::string, std::string>>& settings);

  // Hands one delivery to the plugin; `done` gets its verdict exactly once, also when the host itself fails
  // (a retry, "host.error: ..."). Thread-safe as the ABI requires. The caller's thread builds the provider
  // requests and returns while they are on the wire: `done` then runs on the transport's thread, and must
  // be quick and must not throw. It runs on the caller's thread, before this returns, when nothing goes to
  // the wire (the circuit is open, the build failed) or the plugin does its own I/O (on_deliver). With a
  // batch window (and a plugin that batches) the first delivery of a content leads its batch: its caller
  // waits up to the window for deliveries of identical content to join, then sends the one request and
  // calls every member's `done`; a member's caller returns at once. The verdict is still each one's own.
  using DeliveryDone = std::function<void(DeliveryOutcome)>;
  void deliver(DeliveryRequest request, DeliveryDone done);
  // The same, waiting for the verdict.
  DeliveryOutcome deliver(const DeliveryRequest& request);

  // A provider's webhook call: the plugin verifies its signature and normalises it into `reports`. False
  // (with `answer` 401 or 400 and no reports) when it is refused; a plugin without on_inbound answers 404.
  bool inbound(const InboundRequest& request, std::vector<ProviderReport>& reports, InboundAnswer& answer);
  // The YAML's `inbound: false` turns the channel's webhook off (inbound answers 404 as without on_inbound).
  void set_inbound(bool on) { inbound_on_ = on; }
  // Whether the channel's webhook is there: its plugin has on_inbound and the YAML has not turned it off. Only
  // through it can a receipt (or anything else) come back for the channel's deliveries.
  bool takes_inbound() const;

  // The YAML's batch_window: how long a delivery waits for others to join its batch. 0 (the default):
  // never batch. Set it before the first delivery; it has effect only when library().batches().
  void set_batch_window_ms(int64_t ms) { batch_window_ms_ = ms; }
  int64_t batch_window_ms() const { return batch_window_ms_; }
  // Requests that carried a batch of deliveries (for tests and metrics).
  uint64_t batches_sent() const { return batches_sent_.load(); }

  const std::string& name() const { return name_; }
  const std::string& contact() const { return contact_; }
  const Library& library() const { return *library_; }
  bool ready() const { return instance_ != nullptr; }
  // The pool its requests share in the transport (its concurrency and rate limits apply to it).
  std::string pool_key() const { return "channel:" + name_; }
  // Tokens minted through host_token (for tests and metrics).
  uint64_t tokens_minted() const { return tokens_.mint_count(); }

  // How long a delivery that fails transiently keeps being retried on this channel (YAML `retry`).
  void set_retry_policy(const config::RetryPolicy& policy) { retry_ = policy; }
  const config::RetryPolicy& retry_policy() const { return retry_; }
  // YAML `circuit_breaker`; set before the first delivery.
  void set_circuit_breaker(const config::CircuitBreakerConfig& config) { circuit_.configure(config); }
  const transport::CircuitBreaker& circuit() const { return circuit_; }
  // YAML `track: {clicks: true}`: its messages' links become tracked /c/ links unless a message says otherwise.
  void set_track_clicks(bool track) { track_clicks_ = track; }
  bool track_clicks() const { return track_clicks_; }
  // YAML `track: {opens: true}`: its messages' html carries an open pixel unless a message says otherwise.
  void set_track_opens(bool track) { track_opens_ = track; }
  bool track_opens() const { return track_opens_; }

  struct HostServices;  // the tayori_host callbacks; defined in host_services.cpp

 private:
  struct Attempt;      // one delivery on its way, owning what the plugin's view of it points into (delivery.cpp)
  struct BatchMember;  // one delivery in a batch, and the verdict its leader hands it
  struct BatchGroup;   // the deliveries of one content gathered during a window

  // The sans-I/O path: on_build -> the host transport -> on_classify, for each request the plugin built in
  // turn; the attempt's `done` is called from the last answer's completion.
  void deliver_through_transport(std::shared_ptr<Attempt> attempt);
  void send_next(std::shared_ptr<Attempt> attempt);
  // The sans-I/O path with a batch window: join or lead a group of identical content (see batching.cpp).
  void deliver_batched(std::shared_ptr<Attempt> attempt);
  // The leader's work: on_build_batch -> one request -> on_classify per member; fills every member's verdict.
  void send_batch(std::vector<BatchMember>& members);
  // The verdict of a delivery the open circuit holds back: nothing sent, try after the next probe.
  DeliveryOutcome circuit_wait(int64_t now_ms) const;
  // One request to the provider, its answer told to the circuit breaker.
  transport::Response send(transport::Request request);

  std::string name_;
  std::string contact_;
  std::shared_ptr<Library> library_;
  const Clock& clock_;
  transport::OutboundTransport* transport_;
  links::LinkSigner links_;
  int64_t link_ttl_ms_;
  crypto::TokenCache tokens_;
  tayori_host host_{};
  void* instance_ = nullptr;
  config::RetryPolicy retry_;
  bool track_clicks_ = false;
  bool track_opens_ = false;
  transport::CircuitBreaker circuit_;

  int64_t batch_window_ms_ = 0;
  bool inbound_on_ = true;
  std::atomic<uint64_t> batches_sent_{0};
  std::mutex batch_mutex_;
  // The one open (still joinable) group per batch key; a group leaves the map when it closes.
  std::map<std::string, std::shared_ptr<BatchGroup>> open_batches_;
};

class Registry {
 public:
  Channel* find(const std::string& name) const;
  const std::vector<std::unique_ptr<Channel>>& channels() const { return channels_; }
  void add(std::unique_ptr<Channel> channel) { channels_.push_back(std::move(channel)); }

 private:
  std::vector<std::unique_ptr<Channel>> channels_;
};

struct RegistryResult {
  std::unique_ptr<Registry> registry;  // set only when there is no error
  std::vector<config::Diagnostic> errors;
};

// Loads every configured channel's plugin, checks its settings against the plugin's declared map
// (unknown keys, missing required ones, types) and creates the instances. Errors carry YAML places.
// `transport` (may be null) serves sans-I/O plugins; without one they are refused. Each channel's
// concurrency and rate limit from the YAML are set on its transport pool.
RegistryResult build_registry(const config::Config& config, const Clock& clock,
                              transport::OutboundTransport* transport = nullptr);

// Checks one channel's settings against a declared map; returns the normalised values (defaults applied,
// durations in milliseconds) and appends problems to `errors`.
std::vector<std::pair<std::string, std::string>> check_settings(const config::Config& config,
                                                                const config::ChannelConfig& channel,
                                                                const tayori_plugin& plugin,
                                                                std::vector<config::Diagnostic>& errors);

}  // namespace tayori::plugin
