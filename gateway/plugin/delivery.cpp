// One delivery through a channel's plugin: the step between the dispatcher, which has cleared the message
// and rendered its content, and the provider. deliver() asks the channel's circuit breaker, then either
// hands the delivery to a plugin that does its own I/O (on_deliver) or takes the sans-I/O path -- the
// plugin builds requests, the host transport sends them, the plugin classifies each answer -- alone or,
// with a batch window, through batching.cpp. The dispatcher gets back delivered, retry or permanent; the
// host, not the plugin, decides what a retry costs (docs/architecture.md §3, §6.4).
#include <algorithm>
#include <future>

#include "plugin/channel_internal.hpp"
#include "plugin/marshal.hpp"

namespace tayori::plugin {

namespace {

// Did the provider fail as a whole (the circuit breaker counts these), rather than answer? A transport
// error, an HTTP 5xx, or SMTP 421 (RFC 5321 §4.2.2: service not available). A 4xx, or an SMTP 5xx
// refusing one recipient, is an answer from a provider that is up.
bool provider_failed(transport::RequestKind kind, const transport::Response& r) {
  if (r.transport_error != 0) return true;
  return kind == transport::RequestKind::Smtp ? r.status == 421 : r.status >= 500;
}

}  // namespace

transport::Response exchange(transport::OutboundTransport& transport, transport::Request req) {
  std::promise<transport::Response> answered;
  auto future = answered.get_future();
  transport.submit(std::move(req), [&answered](transport::Response r) { answered.set_value(std::move(r)); });
  return future.get();
}

std::string retry_cause(const transport::Response& r) {
  if (r.transport_error != 0) return "transport_error";
  if (r.status >= 500 || r.status == 421) return "server_error";
  if (r.status == 429) return "throttled";
  return "refused";
}

DeliveryOutcome Channel::deliver(const DeliveryRequest& r) {
  // Links back to the gateway: one-click unsubscribe for marketing only (RFC 8058 concerns bulk mail;
  // transactional mail must not offer an opt-out of itself), and this channel's inbound endpoint.
  std::string unsubscribe_url, callback_url;
  if (links_.enabled()) {
    if (r.marketing)
      unsubscribe_url = links_.url({links::LinkKind::unsubscribe, r.message_id, name_, "",
                                    (clock_.now_ms() + link_ttl_ms_) / 1000});
    if (inbound_on_) callback_url = links_.public_url() + "/inbound/" + library_->descriptor().name + "/" + name_;
  }
  DeliveryView delivery(r, name_, std::move(unsubscribe_url), std::move(callback_url));
  const tayori_delivery& d = delivery.c;

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
  const bool batchable =
      batch_window_ms_ > 0 && transport_ != nullptr && library_->batches() && delivery.responses.empty();
  if (p.on_deliver == nullptr) return batchable ? deliver_batched(d) : deliver_through_transport(d);
  // A direct-delivery plugin owns its I/O: a retry is the only sign of a provider in trouble it gives.
  OutcomeBuffers buffers;
  DeliveryOutcome outcome = to_outcome(p.on_deliver(instance_, &d, &buffers.out), buffers.out);
  circuit_.record(outcome.kind == OutcomeKind::retry, clock_.now_ms());
  if (outcome.kind == OutcomeKind::retry) outcome.cause = "plugin";
  return outcome;
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

}  // namespace tayori::plugin
