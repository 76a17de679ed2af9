// Private to gateway/plugin/: what the files that implement Channel share beyond marshalling (marshal.hpp).
// Callers use channel.hpp.
#pragma once

#include <tayori/plugin.h>

#include <string>

#include "plugin/channel.hpp"
#include "plugin/marshal.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::plugin {

// The tayori_host table a channel hands its plugin: every host callback, with `channel` as host_ctx
// (host_services.cpp).
tayori_host host_services_for(Channel& channel);

// Sends one request and waits: the calling worker blocks, the transport thread does the I/O (delivery.cpp).
transport::Response exchange(transport::OutboundTransport& transport, transport::Request req);

// One delivery on its way (delivery.cpp, batching.cpp). Its answer may be classified on another thread after
// deliver() has returned, so it owns the request its C view points into; it is neither copied nor moved.
struct Channel::Attempt {
  Attempt(DeliveryRequest r, const std::string& channel, std::string unsubscribe_url, std::string callback_url)
      : request(std::move(r)), view(request, channel, std::move(unsubscribe_url), std::move(callback_url)) {}
  Attempt(const Attempt&) = delete;
  Attempt& operator=(const Attempt&) = delete;

  // Hands the verdict over, once: a second call (a completion that failed after the first) does nothing.
  void finish(DeliveryOutcome outcome) {
    DeliveryDone d = std::move(done);
    done = nullptr;
    if (d) d(std::move(outcome));
  }

  DeliveryRequest request;
  DeliveryView view;                          // view.c is what the plugin reads
  DeliveryDone done;
  std::vector<transport::Request> requests;  // built by the plugin, sent one after another
  size_t next = 0;                            // the next of them to send
  bool probe = false;  // admitted while the circuit was open: this delivery is its probe
};

// A retry the host gives when it fails itself while delivering (memory, a completion that threw).
DeliveryOutcome host_error(const std::string& what);

// The metrics word for a retry the plugin made of this answer (DeliveryOutcome::cause; delivery.cpp).
std::string retry_cause(const transport::Response& r);

}  // namespace tayori::plugin
