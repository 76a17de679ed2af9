// A provider's call back to the gateway (POST /inbound/<plugin>/<channel>): delivery receipts, replies,
// answers to response options, follows and opt-outs. This is the flow run backwards -- provider → channel
// plugin → the inbound handling in core/ -- and the plugin is the only one that can check the provider's
// signature and read its format, so the host hands it the raw call and takes back provider reports. A
// call the plugin refuses or fails applies nothing (plugin.h on_inbound).
#include "common/log.hpp"
#include "plugin/marshal.hpp"

namespace tayori::plugin {

bool Channel::takes_inbound() const {
  return inbound_on_ && instance_ != nullptr && library_->descriptor().on_inbound != nullptr;
}

bool Channel::inbound(const InboundRequest& request, std::vector<ProviderReport>& reports, InboundAnswer& answer) {
  reports.clear();
  const tayori_plugin& p = library_->descriptor();
  if (!takes_inbound()) {
    answer = {404, "text/plain", "channel \"" + name_ + "\" takes no inbound calls"};
    return false;
  }
  InboundRequestView raw(request);
  CollectedInbound collected{name_, {}, false, {}};
  tayori_inbound_sink sink = collected.sink();
  char error[512] = {0};
  tayori_status st = p.on_inbound(instance_, &raw.c, &sink, tayori_error_buf{error, sizeof error});
  std::string why = valid_utf8(error);
  if (st == TAYORI_OK) {
    reports = std::move(collected.reports);
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

}  // namespace tayori::plugin
