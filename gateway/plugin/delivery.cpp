// One delivery through a channel's plugin: the step between the dispatcher, which has cleared the message
// and rendered its content, and the provider. deliver() asks the channel's circuit breaker, then either
// hands the delivery to a plugin that does its own I/O (on_deliver) or takes the sans-I/O path -- the
// plugin builds requests, the host transport sends them, the plugin classifies each answer -- alone or,
// with a batch window, through batching.cpp. The dispatcher gets back delivered, retry or permanent; the
// host, not the plugin, decides what a retry costs (docs/architecture.md §3, §6.4).
#include <algorithm>
#include <future>

#include <curl/curl.h>

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
  if (transport.on_transport_thread()) {
    // A plugin's on_classify runs on the transport's thread (Channel::send_next): a host_exchange from there
    // (or a host_token that must mint) would wait for the very loop it blocks.
    transport::Response refused;
    refused.transport_error = CURLE_RECURSIVE_API_CALL;
    refused.error_text = "a request cannot wait on the transport's own thread (on_classify must not exchange)";
    return refused;
  }
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

DeliveryOutcome host_error(const std::string& what) {
  DeliveryOutcome o;  // retry
  o.reason = "host.error: " + what;
  o.cause = "host";
  return o;
}

DeliveryOutcome Channel::deliver(const DeliveryRequest& r) {
  auto answered = std::make_shared<std::promise<DeliveryOutcome>>();
  auto verdict = answered->get_future();
  deliver(r, [answered](DeliveryOutcome o) { answered->set_value(std::move(o)); });
  return verdict.get();
}

void Channel::deliver(DeliveryRequest r, DeliveryDone done) {
  std::shared_ptr<Attempt> a;
  try {
    // Links back to the gateway: one-click unsubscribe for marketing only (RFC 8058 concerns bulk mail;
    // transactional mail must not offer an opt-out of itself), and this channel's inbound endpoint.
    std::string unsubscribe_url, callback_url;
    if (links_.enabled()) {
      if (r.marketing)
        unsubscribe_url = links_.url({links::LinkKind::unsubscribe, r.message_id, name_, "",
                                      (clock_.now_ms() + link_ttl_ms_) / 1000});
      if (inbound_on_) callback_url = links_.public_url() + "/inbound/" + library_->descriptor().name + "/" + name_;
    }
    a = std::make_shared<Attempt>(std::move(r), name_, std::move(unsubscribe_url), std::move(callback_url));
  } catch (const std::exception& e) {
    done(host_error(e.what()));
    return;
  }
  a->done = std::move(done);
  // From here the attempt owns `done`: whatever fails, it is called once (Attempt::finish).
  try {
    int64_t now = clock_.now_ms();
    if (!circuit_.admit(now)) {
      a->finish(circuit_wait(now));
      return;
    }
    a->probe = circuit_.state() != transport::CircuitState::closed;
    const tayori_plugin& p = library_->descriptor();
    // A delivery with response options carries refs minted for its own message, which one shared request
    // could not (plugin.h tayori_delivery.responses): it goes alone.
    const bool batchable =
        batch_window_ms_ > 0 && transport_ != nullptr && library_->batches() && a->view.responses.empty();
    if (p.on_deliver == nullptr) {
      if (batchable)
        deliver_batched(a);
      else
        deliver_through_transport(a);
      return;
    }
    // A direct-delivery plugin owns its I/O, on this thread: a retry is the only sign of a provider in
    // trouble it gives.
    OutcomeBuffers buffers;
    DeliveryOutcome outcome = to_outcome(p.on_deliver(instance_, &a->view.c, &buffers.out), buffers.out);
    circuit_.record(outcome.kind == OutcomeKind::retry, clock_.now_ms());
    if (outcome.kind == OutcomeKind::retry) outcome.cause = "plugin";
    a->finish(std::move(outcome));
  } catch (const std::exception& e) {
    a->finish(host_error(e.what()));
  }
}

DeliveryOutcome Channel::circuit_wait(int64_t now_ms) const {
  DeliveryOutcome waiting;
  waiting.reason = waiting.cause = "circuit_open";
  waiting.circuit_open = true;
  waiting.retry_after_ms = std::max<int64_t>(1, circuit_.next_probe_ms() - now_ms);
  return waiting;
}

transport::Response Channel::send(transport::Request request) {
  transport::RequestKind kind = request.kind;
  transport::Response r = exchange(*transport_, std::move(request));
  circuit_.record(provider_failed(kind, r), clock_.now_ms());
  return r;
}

void Channel::deliver_through_transport(std::shared_ptr<Attempt> a) {
  const tayori_plugin& p = library_->descriptor();
  DeliveryOutcome result;
  if (transport_ == nullptr) {
    result.reason = "host.no_transport";  // build_registry refuses such a channel; kept as a guard
    a->finish(std::move(result));
    return;
  }
  // 1. The plugin builds its requests; the host copies them (plugin.h: valid only during the call).
  CollectedRequests collected{pool_key(), {}, {}};
  tayori_request_sink sink = collected.sink();
  char error[512] = {0};
  tayori_status st = p.on_build(instance_, &a->view.c, &sink, tayori_error_buf{error, sizeof error});
  if (st != TAYORI_OK || collected.requests.empty()) {
    circuit_.release(clock_.now_ms());  // nothing reached the provider: a probe learnt nothing
    // Nothing was sent: what the plugin cannot build now it will not build on a retry either -- unless it
    // says TAYORI_RETRY_LATER (a prerequisite such as an OAuth grant failed for a transient reason).
    if (st == TAYORI_RETRY_LATER) {
      result.kind = OutcomeKind::retry;
      result.reason = error[0] ? std::string(error) : "plugin: build: retry later";
      result.cause = "prerequisite";
      a->finish(std::move(result));
      return;
    }
    result.kind = OutcomeKind::permanent;
    result.reason = !collected.refused.empty() ? collected.refused
                    : error[0]                 ? std::string("plugin_error: build: ") + error
                                               : "plugin_error: build produced no request";
    a->finish(std::move(result));
    return;
  }
  a->requests = std::move(collected.requests);
  send_next(std::move(a));
}

void Channel::send_next(std::shared_ptr<Attempt> a) {
  // 2. Send each request in turn, without waiting: the answer comes back on the transport's thread. The
  // first answer that is not "delivered" decides.
  transport::Request& request = a->requests[a->next++];
  const transport::RequestKind kind = request.kind;
  // The request may wait in the channel's pool behind others (its concurrency): if the circuit opens
  // meanwhile, it does not start, as it would not have been admitted then. Its probe always starts.
  request.admit = [this, probe = a->probe] { return probe || circuit_.state() == transport::CircuitState::closed; };
  transport_->submit(std::move(request), [this, a, kind](transport::Response r) {
    // The transport swallows what a completion throws: the attempt would never be finished.
    try {
      if (r.not_started) {
        a->finish(circuit_wait(clock_.now_ms()));
        return;
      }
      circuit_.record(provider_failed(kind, r), clock_.now_ms());
      // 3. The plugin reads the provider's answer.
      OutcomeBuffers buffers;
      DeliveryOutcome result = with_response(r, [&](const tayori_response* resp) {
        return to_outcome(library_->descriptor().on_classify(instance_, &a->view.c, resp, &buffers.out), buffers.out);
      });
      if (result.kind == OutcomeKind::retry) result.cause = retry_cause(r);
      if (result.kind == OutcomeKind::delivered && a->next < a->requests.size()) {
        send_next(a);
        return;
      }
      a->finish(std::move(result));
    } catch (const std::exception& e) {
      a->finish(host_error(e.what()));
    }
  });
}

}  // namespace tayori::plugin
