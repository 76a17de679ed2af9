// Private to gateway/plugin/: what the files that implement Channel share beyond marshalling (marshal.hpp).
// Callers use channel.hpp.
#pragma once

#include <tayori/plugin.h>

#include <string>

#include "plugin/channel.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::plugin {

// The tayori_host table a channel hands its plugin: every host callback, with `channel` as host_ctx
// (host_services.cpp).
tayori_host host_services_for(Channel& channel);

// Sends one request and waits: the calling worker blocks, the transport thread does the I/O (delivery.cpp).
transport::Response exchange(transport::OutboundTransport& transport, transport::Request req);

// The metrics word for a retry the plugin made of this answer (DeliveryOutcome::cause; delivery.cpp).
std::string retry_cause(const transport::Response& r);

}  // namespace tayori::plugin
