// A configured channel's life: one plugin instance, created with the settings registry.cpp checked and
// destroyed with the channel. The flow's channel-plugin step (delivery.cpp, batching.cpp) and the inbound
// calls (inbound.cpp) both work through the instance made here; the tayori_host table it is created with
// is the host's side of that conversation (host_services.cpp).
#include "plugin/channel.hpp"

#include "plugin/channel_internal.hpp"
#include "plugin/marshal.hpp"

namespace tayori::plugin {

Channel::Channel(std::string name, std::string contact, std::shared_ptr<Library> library, const ChannelHost& host)
    : name_(std::move(name)),
      contact_(std::move(contact)),
      library_(std::move(library)),
      clock_(host.clock),
      transport_(host.transport),
      links_(host.links),
      link_ttl_ms_(host.link_ttl_ms) {
  host_ = host_services_for(*this);
}

Channel::Channel(std::string name, std::string contact, std::shared_ptr<Library> library, const Clock& clock,
                 transport::OutboundTransport* transport)
    : Channel(std::move(name), std::move(contact), std::move(library), ChannelHost{clock, transport, {}, 0}) {}

Channel::~Channel() {
  if (instance_ != nullptr) library_->descriptor().on_destroy(instance_);
}

Result<void> Channel::create(const std::vector<std::pair<std::string, std::string>>& settings) {
  std::vector<tayori_kv> kv;
  for (auto& [k, v] : settings) kv.push_back({view(k), view(v)});
  char buffer[1024] = {0};
  tayori_status st = library_->descriptor().on_create(&host_, kv.data(), kv.size(), &instance_,
                                                      tayori_error_buf{buffer, sizeof buffer});
  if (st != TAYORI_OK) {
    instance_ = nullptr;
    return Error{ErrorCode::invalid, buffer[0] ? buffer : "the plugin refused its settings without saying why"};
  }
  if (instance_ == nullptr) return Error{ErrorCode::internal, "the plugin reported success but created no instance"};
  return {};
}

}  // namespace tayori::plugin
