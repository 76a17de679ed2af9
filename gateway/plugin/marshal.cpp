// Crossing the plugin boundary: C++ values into the C structs of include/tayori/plugin.h and back. Each
// message passes through here twice on its way dispatcher → channel plugin → transport → provider (the
// delivery going in, the plugin's requests and verdict coming out), and each provider webhook once (the
// call going in, its provider reports coming out). Only C types cross (docs/architecture.md §3), so every copy out
// of a plugin happens here, during the callback, before the plugin's buffers go away; and a plugin's
// shorter struct from an older ABI minor is read only as far as it reaches (§6.2).
#include "plugin/marshal.hpp"

#include <algorithm>
#include <cstddef>

#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include <tayori/text.hpp>

namespace tayori::plugin {

namespace {

// The path of an absolute URL: after scheme://authority, before '?' (RFC 3986 §3).
std::string path_of(std::string_view url) {
  size_t start = url.find("://");
  start = start == std::string_view::npos ? 0 : url.find('/', start + 3);
  if (start == std::string_view::npos) return "/";
  return std::string(url.substr(start, url.find('?', start) - start));
}

}  // namespace

std::string valid_utf8(std::string_view text) {
  // Nearly always valid already (every delivery's outcome passes here): check before paying for the
  // JSON round trip that replaces invalid sequences with U+FFFD.
  if (tayori::text::is_valid_utf8(text)) return std::string(text);
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
  switch (auto kind = abi_value(out.kind)) {
    case TAYORI_OUTCOME_DELIVERED: result.kind = OutcomeKind::delivered; break;
    case TAYORI_OUTCOME_PERMANENT: result.kind = OutcomeKind::permanent; break;
    case TAYORI_OUTCOME_RETRY: result.kind = OutcomeKind::retry; break;
    default:
      result.kind = OutcomeKind::retry;
      result.reason = "plugin_error: unknown outcome kind " + std::to_string(kind);
  }
  // A provider's Retry-After is honoured, within reason: a day at most, so a bad value cannot park a message.
  result.retry_after_ms = std::clamp<int64_t>(out.retry_after_ms, 0, 86'400'000);
  result.deactivate_contact = out.deactivate_contact != 0;
  return result;
}

Result<transport::Request> to_transport_request(const tayori_request* r, const std::string& pool_key) {
  transport::Request req;
  auto kind = abi_value(r->kind);
  if (kind != TAYORI_REQUEST_HTTP && kind != TAYORI_REQUEST_SMTP)
    return Error{ErrorCode::invalid, "host.unknown_request_kind: " + std::to_string(kind), "kind"};
  req.method = std::string(text(r->method));
  req.url = std::string(text(r->url));
  for (size_t i = 0; i < r->header_count; ++i) req.headers.emplace_back(text(r->headers[i].key), text(r->headers[i].value));
  req.body = std::string(text(r->body));
  req.pool_key = pool_key;
  if (kind == TAYORI_REQUEST_SMTP) {
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

DeliveryView::DeliveryView(const DeliveryRequest& r, const std::string& channel, std::string unsubscribe,
                           std::string callback)
    : unsubscribe_url(std::move(unsubscribe)), callback_url(std::move(callback)) {
  for (auto& [k, v] : r.content) content.push_back({view(k), view(v)});
  c.struct_size = sizeof c;
  c.message_id = view(r.message_id);
  c.delivery_id = view(r.delivery_id);
  c.attempt = r.attempt;
  c.channel = view(channel);
  c.recipient_id = view(r.recipient_id);
  c.contact = view(r.contact);
  c.purpose = r.marketing ? TAYORI_PURPOSE_MARKETING : TAYORI_PURPOSE_TRANSACTIONAL;
  c.category = view(r.category);
  c.locale = view(r.locale);
  c.timezone = view(r.timezone);
  c.expires_at_ms = r.expires_at_ms;
  c.content = content.data();
  c.content_count = content.size();
  c.metadata_json = view(r.metadata_json);
  c.unsubscribe_url = view(unsubscribe_url);
  c.callback_url = view(callback_url);
  for (const ResponseOption& o : r.responses) responses.push_back({view(o.id), view(o.label), view(o.ref), view(o.url)});
  c.responses = responses.data();
  c.response_count = responses.size();
}

InboundRequestView::InboundRequestView(const InboundRequest& request) : path(path_of(request.url)) {
  for (auto& [k, v] : request.headers) headers.push_back({view(k), view(v)});
  c.struct_size = sizeof c;
  c.method = view(request.method);
  c.url = view(request.url);
  c.path = view(path);
  c.query = view(request.query);
  c.headers = headers.data();
  c.header_count = headers.size();
  c.body = view(request.body);
}

tayori_status CollectedRequests::add(void* ctx, const tayori_request* r) {
  auto* c = static_cast<CollectedRequests*>(ctx);
  Result<transport::Request> req = to_transport_request(r, c->pool_key);
  if (!req) {
    c->refused = req.error().message;
    return TAYORI_INVALID;
  }
  c->requests.push_back(std::move(req).value());
  return TAYORI_OK;
}

void CollectedInbound::emit(void* ctx, const tayori_inbound_event* e) {
  auto* c = static_cast<CollectedInbound*>(ctx);
  if (e == nullptr) return;
  ProviderReport out;
  switch (auto type = abi_value(e->type)) {
    case TAYORI_EVENT_RESPONDED: out.kind = ReportKind::response; break;
    case TAYORI_EVENT_REPLIED: out.kind = ReportKind::reply; break;
    case TAYORI_EVENT_OPTED_IN: out.kind = ReportKind::opt_in; break;
    case TAYORI_EVENT_OPTED_OUT: out.kind = ReportKind::opt_out; break;
    case TAYORI_EVENT_DELIVERED: out.kind = ReportKind::delivered; break;
    case TAYORI_EVENT_FAILED: out.kind = ReportKind::failed; break;
    case TAYORI_EVENT_CONTACT_DEACTIVATED:
      out.kind = ReportKind::failed;
      out.deactivate_contact = true;
      break;
    default:
      log::warn("plugin." + c->channel,
                "on_inbound emitted an event of unknown type " + std::to_string(type) +
                    "; dropped");
      return;
  }
  out.report_id = valid_utf8(text(e->provider_event_id));
  out.contact = valid_utf8(text(e->contact));
  out.provider_message_id = valid_utf8(text(e->message_ref));
  out.option = valid_utf8(text(e->response_id));
  // FAILED carries the provider's reason in `text` (plugin.h); every other kind its text.
  (out.kind == ReportKind::failed ? out.reason : out.text) = valid_utf8(text(e->text));
  out.at_ms = std::max<int64_t>(0, e->occurred_at_ms);
  if (e->struct_size >= offsetof(tayori_inbound_event, reactivate_contact) + sizeof e->reactivate_contact) {
    out.ref = valid_utf8(text(e->ref));
    out.deactivate_contact = out.deactivate_contact || e->deactivate_contact != 0;
    out.reactivate_contact = e->reactivate_contact != 0;
  }
  c->reports.push_back(std::move(out));
}

void CollectedInbound::respond(void* ctx, int status, tayori_str content_type, tayori_str body) {
  auto* c = static_cast<CollectedInbound*>(ctx);
  if (c->answered) return;  // plugin.h: once; the first answer stands
  c->answered = true;
  c->answer.status = status;
  c->answer.content_type = content_type.len > 0 ? std::string(text(content_type)) : "text/plain";
  c->answer.body = std::string(text(body));
}

}  // namespace tayori::plugin
