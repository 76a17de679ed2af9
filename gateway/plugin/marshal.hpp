// Private to gateway/plugin/: the conversions between the host's C++ types and the C structs of
// include/tayori/plugin.h, shared by delivery, batching, inbound calls and host services. Nothing here
// outlives the call it serves: every C view points into buffers its caller keeps alive (docs/architecture.md §3).
#pragma once

#include <tayori/plugin.h>

#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "plugin/channel.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::plugin {

inline tayori_str view(const std::string& s) { return {s.data(), s.size()}; }
inline std::string_view text(tayori_str s) { return s.len == 0 ? std::string_view{} : std::string_view{s.data, s.len}; }

// An enum field a plugin filled in, as the integer the C ABI passes. A plugin of a later minor (or a broken
// one) may put a value there that this host has no enumerator for, and in C++ reading an enum object that
// holds a value outside its enumerators' range is undefined behaviour (UBSan: "load of value 99, which is not
// a valid value for type 'tayori_event_type'"), even when the code goes on to refuse it: such a field is
// only ever read through this, and compared with the enumerators as integers.
template <typename E>
std::underlying_type_t<E> abi_value(const E& field) {
  static_assert(std::is_enum_v<E>);
  std::underlying_type_t<E> value;
  std::memcpy(&value, &field, sizeof value);
  return value;
}

// `text` with each byte that is not part of valid UTF-8 replaced by U+FFFD.
std::string valid_utf8(std::string_view text);

// A tayori_outcome with host-owned buffers, preset to RETRY as plugin.h promises. The fake host of
// include/tayori/testing.hpp presets its outcomes the same way in its own words, on purpose: that header is
// installed for plugins built out of tree, which cannot include this one.
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

// The verdict a plugin wrote into `out`, with the status its callback returned.
DeliveryOutcome to_outcome(tayori_status st, tayori_outcome& out);

// A plugin's request as the transport takes it, or why it is refused. Fields appended in ABI 1.1 are read
// only when the plugin's struct carries them.
Result<transport::Request> to_transport_request(const tayori_request* r, const std::string& pool_key);

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

// The C view of one delivery, with the buffers it points into: `c` is valid while this object lives, so
// it is neither copied nor moved. The links back to the gateway are the channel's to mint.
struct DeliveryView {
  DeliveryView(const DeliveryRequest& r, const std::string& channel, std::string unsubscribe_url,
               std::string callback_url);
  DeliveryView(const DeliveryView&) = delete;
  DeliveryView& operator=(const DeliveryView&) = delete;

  std::vector<tayori_kv> content;
  std::vector<tayori_response_option> responses;
  std::string unsubscribe_url;
  std::string callback_url;
  tayori_delivery c{};
};

// The C view of a provider's webhook call, with the buffers it points into (as DeliveryView).
struct InboundRequestView {
  explicit InboundRequestView(const InboundRequest& request);
  InboundRequestView(const InboundRequestView&) = delete;
  InboundRequestView& operator=(const InboundRequestView&) = delete;

  std::vector<tayori_kv> headers;
  std::string path;
  tayori_inbound_request c{};
};

// The requests a plugin adds during on_build / on_build_batch, copied as it adds them (plugin.h: a request
// is valid only during host_add_request).
struct CollectedRequests {
  std::string pool_key;
  std::vector<transport::Request> requests;
  std::string refused;  // why the last refused request was refused

  tayori_request_sink sink() { return {this, &add}; }
  static tayori_status add(void* ctx, const tayori_request* r);
};

// What on_inbound reports through its tayori_inbound_sink, copied as it reports it (plugin.h: the plugin's
// strings are valid only during the call). Fields appended in 1.2 are read only when the plugin's event
// carries them; plugin text is made valid UTF-8, since it ends up in JSON events.
struct CollectedInbound {
  std::string channel;
  std::vector<ProviderReport> reports;
  bool answered = false;
  InboundAnswer answer;

  tayori_inbound_sink sink() { return {this, &emit, &respond}; }
  static void emit(void* ctx, const tayori_inbound_event* e);
  static void respond(void* ctx, int status, tayori_str content_type, tayori_str body);
};

}  // namespace tayori::plugin
