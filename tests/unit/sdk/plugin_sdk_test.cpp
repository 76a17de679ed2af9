// The ABI suite, SDK side (docs/architecture.md §6.4, §6.10): the C++ SDK's adapters must keep C++ on the plugin's side of
// the boundary. Exceptions become error statuses or RETRY outcomes ("plugin_error: ..."), never unwinding
// into the host; the descriptor declares exactly the callbacks the class implements. Tested two ways: in
// process on the public fake host (tayori/testing.hpp: a plugin class's descriptor driven as a host drives
// it), and through real .so fixtures loaded by the host (fixture_throwing, and fixture_scripted, the
// scripted plugin the integration tests use).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tayori/plugin.hpp>
#include <tayori/provider_helpers.hpp>
#include <tayori/testing.hpp>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "plugin/channel.hpp"
#include "plugin/marshal.hpp"
#include "test_support.hpp"

namespace tayori {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace tayori::sdk;

// ---- In process: the adapters on the public fake host ------------------------------------------------

// The public fake host (tayori/testing.hpp). Its Delivery, Request, Response and Outcome share their names
// with the SDK's (using namespace tayori::sdk above), so those are spelled tayori::testing::... here.
using tayori::testing::Fields;
using tayori::testing::Plugin;

class DeliverOnly {
 public:
  DeliverOnly(const Host&, const Settings&) {}
  Outcome deliver(const Delivery&) { return Outcome::delivered(); }
};

// A sans-I/O plugin whose behaviour the delivery's content and the response drive.
class SansIo {
 public:
  SansIo(const Host& host, const Settings& settings) : host_(host) {
    if (settings.find("refuse")) throw sdk::Error("refuse: told to refuse");
    retries_ = settings.find("retries") ? settings.get_int("retries") : 0;
  }
  void build(const Delivery& d, RequestSink& sink) {
    if (d.content("mode") == "throw") throw sdk::Error("text: too long for this provider");
    Request r;
    r.url = "https://api.example.com/send";
    r.headers = {{"Content-Type", "application/json"}, {"X-Retry-Key", std::string(d.delivery_id())}};
    r.body = std::string(d.content("text").value_or(""));
    sink.add(r);
  }
  Outcome classify(const Delivery&, const Response& r) {
    if (r.status() == 500) throw std::runtime_error("classify blew up");
    if (r.status() == 503) throw 7;
    if (r.status() == 429) return Outcome::retry("example.429", std::stoll(std::string(r.header("retry-after").value_or("0"))) * 1000);
    if (r.status() == 410) return Outcome::permanent("example.gone", true);
    return Outcome::delivered(std::string(r.body()));
  }
  void inbound(const InboundRequest& r, InboundSink& sink) {
    if (r.header("x-signature") != "ok") throw sdk::Error("x-signature: does not verify");
    InboundEvent e;
    e.type = TAYORI_EVENT_REPLIED;
    e.contact = "U123";
    e.text = std::string(r.body());
    e.occurred_at_ms = host_.now_ms();
    sink.emit(e);
    sink.respond(202, "text/plain", "thanks");
  }

 private:
  Host host_;
  long long retries_ = 0;
};

// Both declared as strings, so a host hands them over as given: "retries" is read with Settings::get_int, and
// it is the SDK's check that refuses "three" (a host refuses an ill-typed TAYORI_SETTING_INT itself, before
// on_create).
const tayori_setting_spec kSansIoSettings[] = {
    {"refuse", TAYORI_SETTING_STRING, 0, nullptr, "any value: the constructor throws"},
    {"retries", TAYORI_SETTING_STRING, 0, nullptr, "an integer, read with Settings::get_int"},
};

tayori_plugin descriptor_of_sans_io() {
  return detail::Adapter<SansIo>::descriptor("sans_io", "1.0.0", "test", "line", kSansIoSettings,
                                             std::size(kSansIoSettings));
}

// A delivery as the host hands it over: message "m-1", delivery "d-1", with `content`.
tayori::testing::Delivery delivery(Fields content) {
  tayori::testing::Delivery d;
  d.message_id = "m-1";
  d.delivery_id = "d-1";
  d.content = std::move(content);
  return d;
}

// A raw delivery with storage for its strings, for what is called by hand (ByHand) or read through the
// SDK's view of it.
struct TestDelivery {
  Fields fields;
  std::vector<tayori_kv> kv;
  tayori_delivery d{};
  explicit TestDelivery(Fields content) : fields(std::move(content)) {
    for (auto& [k, v] : fields) kv.push_back({str(k), str(v)});
    d.struct_size = sizeof d;
    d.message_id = str("m-1");
    d.delivery_id = str("d-1");
    d.attempt = 1;
    d.content = kv.data();
    d.content_count = kv.size();
    d.metadata_json = str("{}");
  }
};

// The host's own outcome buffers: what a plugin writes into here is what the gateway reads.
using plugin::OutcomeBuffers;

// ---- By hand: what a host that behaves like the gateway does not show ------------------------------------
//
// tayori::testing::Plugin reads every call as the gateway does, which hides a few things these tests pin
// down. For those, an instance is created on the fake host's own services (FakeHost::raw(), copied so that
// one service may be replaced) and its callbacks are called with a sink or buffers of the test's making:
// - the fake host's request sink takes every request that has a URL: a host refusing one needs a sink of
//   its own (CountingSink);
// - it presets the outcome buffers to RETRY and reads RETRY whenever the callback fails, so it cannot show
//   that the adapter overwrites a stale verdict;
// - it drops what a refused inbound call emitted (as the gateway does), so "emitted nothing" cannot be told
//   from "emitted, then discarded"; and it neither counts calls to a service nor shows an event's
//   struct_size.
struct ByHand {
  explicit ByHand(const tayori_plugin& descriptor) : p(descriptor) {
    char error[128] = {0};
    EXPECT_EQ(p.on_create(&services, nullptr, 0, &instance, {error, sizeof error}), TAYORI_OK) << error;
  }
  ~ByHand() {
    if (instance != nullptr) p.on_destroy(instance);
  }

  // From now on host_equal_constant_time calls are counted in `compares` (and answered by the gateway's
  // crypto::constant_time_equal).
  void count_compares() {
    compares = 0;
    services.host_equal_constant_time = [](void*, tayori_str a, tayori_str b) {
      ++compares;
      return crypto::constant_time_equal(view(a), view(b)) ? 1 : 0;
    };
  }

  // What on_inbound returned and emitted for a POST with `headers` and `body`, every event as emitted
  // (shallow copies: only their scalar fields are read).
  struct Emitted {
    tayori_status status = TAYORI_ERROR;
    std::vector<tayori_inbound_event> events;
  };
  Emitted inbound(std::vector<tayori_kv> headers, const std::string& body) {
    tayori_inbound_request r{};
    r.struct_size = sizeof r;
    r.method = str("POST");
    r.body = str(body);
    r.headers = headers.data();
    r.header_count = headers.size();
    Emitted out;
    tayori_inbound_sink sink{};
    sink.sink_ctx = &out.events;
    sink.host_emit_event = [](void* ctx, const tayori_inbound_event* e) {
      static_cast<std::vector<tayori_inbound_event>*>(ctx)->push_back(*e);
    };
    sink.host_set_response = [](void*, int, tayori_str, tayori_str) {};
    char error[128] = {0};
    out.status = p.on_inbound(instance, &r, &sink, {error, sizeof error});
    return out;
  }

  inline static int compares = 0;
  tayori::testing::FakeHost host;
  tayori_host services = *host.raw();
  tayori_plugin p;
  void* instance = nullptr;
};

// A request sink of the test's own: it counts the requests it takes, and refuses every one when told to.
struct CountingSink {
  int taken = 0;
  bool refuse = false;
  tayori_request_sink raw{this, [](void* ctx, const tayori_request*) {
                            auto* self = static_cast<CountingSink*>(ctx);
                            if (self->refuse) return TAYORI_INVALID;
                            ++self->taken;
                            return TAYORI_OK;
                          }};
  CountingSink() = default;
  CountingSink(const CountingSink&) = delete;
  CountingSink& operator=(const CountingSink&) = delete;
};

TEST(PluginSdk, DescriptorDeclaresExactlyTheCallbacksTheClassImplements) {
  tayori_plugin direct = detail::Adapter<DeliverOnly>::descriptor("direct", "1.2.3", "d", "email", nullptr, 0);
  EXPECT_EQ(direct.struct_size, sizeof(tayori_plugin));
  EXPECT_EQ(direct.abi_major, TAYORI_ABI_MAJOR);
  EXPECT_EQ(direct.abi_minor, TAYORI_ABI_MINOR);
  EXPECT_STREQ(direct.name, "direct");
  EXPECT_NE(direct.on_create, nullptr);
  EXPECT_NE(direct.on_destroy, nullptr);
  EXPECT_NE(direct.on_deliver, nullptr);
  EXPECT_EQ(direct.on_build, nullptr);
  EXPECT_EQ(direct.on_classify, nullptr);
  EXPECT_EQ(direct.on_inbound, nullptr);

  tayori_plugin sans = descriptor_of_sans_io();
  EXPECT_NE(sans.on_build, nullptr);
  EXPECT_NE(sans.on_classify, nullptr);
  EXPECT_NE(sans.on_inbound, nullptr);
  EXPECT_EQ(sans.on_deliver, nullptr);
}

TEST(PluginSdk, ThrowingConstructorFailsCreateWithTheMessage) {
  tayori_plugin p = descriptor_of_sans_io();
  EXPECT_EQ(Plugin::of(&p, {{"refuse", "1"}}).error(), "refuse: told to refuse");
  EXPECT_EQ(Plugin::of(&p, {{"retries", "three"}}).error(), "retries: expected an integer, got \"three\"");
}

// The tests below drive one sans_io instance, created through the descriptor on the fake host and
// destroyed after each test.
class PluginSdkSansIo : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(plugin.ok()) << plugin.error(); }
  // What a response becomes, to a delivery without content.
  tayori::testing::Outcome classify(const tayori::testing::Response& r) { return plugin.classify(delivery({}), r); }

  tayori_plugin p = descriptor_of_sans_io();
  Plugin plugin = Plugin::of(&p);
};

TEST_F(PluginSdkSansIo, BuildHandsEachRequestToTheHostSink) {
  auto built = plugin.build(delivery({{"text", "hello"}}));
  EXPECT_EQ(built.status, TAYORI_OK) << built.error;
  ASSERT_EQ(built.requests.size(), 1u);
  EXPECT_EQ(built.requests[0].url, "https://api.example.com/send");
  EXPECT_EQ(built.requests[0].body, "hello");
  EXPECT_EQ(built.requests[0].headers, (Fields{{"Content-Type", "application/json"}, {"X-Retry-Key", "d-1"}}));
}

TEST_F(PluginSdkSansIo, ThrowingBuildAndRefusedRequestReturnErrorWithTheMessage) {
  auto thrown = plugin.build(delivery({{"mode", "throw"}}));
  EXPECT_EQ(thrown.status, TAYORI_ERROR);
  EXPECT_EQ(thrown.error, "text: too long for this provider");
  EXPECT_TRUE(thrown.requests.empty());

  // A host that refuses the request (see ByHand).
  ByHand sans(p);
  CountingSink refusing;
  refusing.refuse = true;
  TestDelivery fine(Fields{{"text", "x"}});
  char buffer[128] = {0};
  EXPECT_EQ(p.on_build(sans.instance, &fine.d, &refusing.raw, {buffer, sizeof buffer}), TAYORI_ERROR);
  EXPECT_STREQ(buffer, "the host refused the request to https://api.example.com/send");
}

TEST_F(PluginSdkSansIo, ClassifyReportsVerdictsAndReadsHeadersCaseInsensitively) {
  auto later = classify({429, {{"Retry-After", "30"}}});
  EXPECT_EQ(later.status, TAYORI_OK);
  EXPECT_EQ(later.kind, TAYORI_OUTCOME_RETRY);
  EXPECT_EQ(later.retry_after_ms, 30'000);
  EXPECT_EQ(later.reason, "example.429");

  auto gone = classify({410});
  EXPECT_EQ(gone.status, TAYORI_OK);
  EXPECT_EQ(gone.kind, TAYORI_OUTCOME_PERMANENT);
  EXPECT_TRUE(gone.deactivate_contact);

  auto ok = classify({200, {}, "provider-id-1"});
  EXPECT_EQ(ok.status, TAYORI_OK);
  EXPECT_EQ(ok.kind, TAYORI_OUTCOME_DELIVERED);
  EXPECT_EQ(ok.provider_message_id, "provider-id-1");
}

TEST_F(PluginSdkSansIo, ThrowingClassifyBecomesRetryWithPluginErrorReason) {
  for (int status : {500, 503}) {
    SCOPED_TRACE(status);
    auto o = classify({status});
    EXPECT_EQ(o.status, TAYORI_ERROR);
    EXPECT_EQ(o.reason, status == 500 ? "plugin_error: classify blew up" : "plugin_error: unknown exception");
  }
  // Whatever was in the host's buffers, the adapter overwrites it (by hand: see ByHand).
  ByHand sans(p);
  TestDelivery d(Fields{});
  for (int status : {500, 503}) {
    SCOPED_TRACE(status);
    tayori_response r{};
    r.struct_size = sizeof r;
    r.status = status;
    OutcomeBuffers b;
    b.out.kind = TAYORI_OUTCOME_DELIVERED;
    EXPECT_EQ(p.on_classify(sans.instance, &d.d, &r, &b.out), TAYORI_ERROR);
    EXPECT_EQ(b.out.kind, TAYORI_OUTCOME_RETRY);
  }
}

TEST_F(PluginSdkSansIo, InboundEmitsEventsAndAnswersAndThrowingInboundIsAnError) {
  auto in = plugin.inbound({{{"x-signature", "ok"}}, "yes please"});
  EXPECT_EQ(in.status, TAYORI_OK) << in.error;
  ASSERT_EQ(in.events.size(), 1u);
  EXPECT_EQ(in.events[0].type, TAYORI_EVENT_REPLIED);
  EXPECT_EQ(in.events[0].text, "yes please");
  EXPECT_EQ(in.http_status, 202);
  EXPECT_EQ(in.body, "thanks");

  auto refused = plugin.inbound({{}, "yes please"});
  EXPECT_EQ(refused.status, TAYORI_ERROR);
  EXPECT_EQ(refused.error, "x-signature: does not verify");
  // ... having emitted nothing (by hand: see ByHand).
  ByHand sans(p);
  auto emitted = sans.inbound({}, "yes please");
  EXPECT_EQ(emitted.status, TAYORI_ERROR);
  EXPECT_TRUE(emitted.events.empty());
}

// ---- Two-way (ABI 1.2): response options, inbound verification, the event builder ----------------------

// Verifies like LINE does (the SDK helper over the host's services) and reports with the event builder.
class Verifying {
 public:
  Verifying(const Host& host, const Settings&) : host_(host) {}
  Outcome deliver(const Delivery&) { return Outcome::delivered(); }
  void inbound(const InboundRequest& r, InboundSink& sink) {
    if (!host_.verify_hmac_base64(TAYORI_HASH_SHA256, "secret", r.body(), r.header("X-Signature").value_or("")))
      throw Refused(401, "x-signature: does not verify");
    sink.emit(InboundEvent::responded("U1", std::string(r.body())).with_id("e-1").at(42));
    sink.emit(InboundEvent::opted_out("U1", true).with_id("e-2"));
    sink.emit(InboundEvent::failed("U1", "SM1", "x.30005", true));
    sink.answer("text/xml", "<Response/>");
  }

 private:
  Host host_;
};

TEST(PluginSdkTwoWay, InboundVerifiesThroughTheHostAndRefusesWithItsAnswer) {
  tayori_plugin p = detail::Adapter<Verifying>::descriptor("verifying", "1.0.0", "test", "line", nullptr, 0);
  Plugin verifying = Plugin::of(&p);
  ASSERT_TRUE(verifying.ok()) << verifying.error();
  const std::string body = "r.ref";
  const std::string good = crypto::base64_encode(crypto::hmac_sha256("secret", body).value());
  const std::string signatures[] = {"forged", "", good};
  for (const std::string& signature : signatures) {
    SCOPED_TRACE(signature);
    auto in = verifying.inbound({{{"x-signature", signature}}, body});
    if (signature != good) {
      EXPECT_EQ(in.status, TAYORI_INVALID);
      EXPECT_EQ(in.http_status, 401);
      EXPECT_EQ(in.body, "x-signature: does not verify");
      continue;
    }
    EXPECT_EQ(in.status, TAYORI_OK) << in.error;
    EXPECT_EQ(in.http_status, 200);
    EXPECT_EQ(in.content_type, "text/xml");
    ASSERT_EQ(in.events.size(), 3u);
    EXPECT_EQ(in.events[0].type, TAYORI_EVENT_RESPONDED);
    EXPECT_EQ(in.events[0].ref, "r.ref");
    EXPECT_EQ(in.events[0].occurred_at_ms, 42);
    EXPECT_EQ(in.events[1].type, TAYORI_EVENT_OPTED_OUT);
    EXPECT_TRUE(in.events[1].deactivate_contact);
    EXPECT_FALSE(in.events[1].reactivate_contact);
    EXPECT_EQ(in.events[2].type, TAYORI_EVENT_FAILED);
    EXPECT_TRUE(in.events[2].deactivate_contact);
  }
  // By hand (see ByHand): a refusal emitted nothing, the events are of this ABI's size, and an empty signature
  // is refused without asking the host while the other two were compared in constant time.
  ByHand counted(p);
  counted.count_compares();
  for (const std::string& signature : signatures) {
    SCOPED_TRACE(signature);
    auto emitted = counted.inbound({{str("x-signature"), str(signature)}}, body);
    EXPECT_EQ(emitted.status, signature == good ? TAYORI_OK : TAYORI_INVALID);
    EXPECT_EQ(emitted.events.size(), signature == good ? 3u : 0u);
    for (const tayori_inbound_event& e : emitted.events) EXPECT_EQ(e.struct_size, sizeof(tayori_inbound_event));
  }
  EXPECT_EQ(ByHand::compares, 2);
}

TEST(PluginSdkTwoWay, ResponsesAreReadOnlyWhenTheDeliveryCarriesThem) {
  TestDelivery t(Fields{{"text", "hi"}});
  tayori_response_option options[] = {{str("yes"), str("はい"), str("r.y"), str("https://gw/r/r.y")},
                                      {str("no"), str("いいえ"), str("r.n"), str("")}};
  t.d.responses = options;
  t.d.response_count = 2;
  auto got = Delivery(&t.d).responses();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, "yes");
  EXPECT_EQ(got[0].label, "はい");
  EXPECT_EQ(got[0].ref, "r.y");
  EXPECT_EQ(got[0].url, "https://gw/r/r.y");
  EXPECT_EQ(got[1].url, "");
  t.d.struct_size = offsetof(tayori_delivery, responses);  // a 1.1 host's delivery: the fields are not there
  EXPECT_TRUE(Delivery(&t.d).responses().empty());
}

TEST(PluginSdkTwoWay, FormBodiesAreDecodedInOrderWithDuplicates) {
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(parse_form("Body=%E3%81%82+b%2B1&From=%2B8190&&Flag&Empty=&Body=x%zz%4"),
            (Pairs{{"Body", "あ b+1"}, {"From", "+8190"}, {"Flag", ""}, {"Empty", ""}, {"Body", "x%zz%4"}}));
  EXPECT_TRUE(parse_form("").empty());
}

TEST(PluginSdk, TextIntoHostBuffersIsTruncatedAndNulTerminated) {
  char buffer[6];
  std::memset(buffer, 'x', sizeof buffer);
  copy_to(buffer, sizeof buffer, "plugin_error: long");
  EXPECT_STREQ(buffer, "plugi");
  char untouched = 'x';
  copy_to(&untouched, 0, "anything");  // capacity 0: write nothing at all
  EXPECT_EQ(untouched, 'x');
  copy_to(nullptr, 10, "anything");  // no buffer: no crash

  OutcomeBuffers b;
  Outcome::retry(std::string(sizeof b.reason + 100, 'r')).write_to(&b.out);
  EXPECT_EQ(std::strlen(b.reason), sizeof b.reason - 1);
}

TEST(PluginSdk, HostWrapperWorksWithAndWithoutServices) {
  tayori::testing::FakeHost fake;
  Host host(fake.raw());
  host.log(TAYORI_LOG_INFO, "hello");
  EXPECT_EQ(fake.logs, (std::vector<std::pair<tayori_log_level, std::string>>{{TAYORI_LOG_INFO, "hello"}}));
  EXPECT_EQ(host.now_ms(), fake.now_ms);
  Host none(nullptr);  // no host at all: no fake host fits this one
  none.log(TAYORI_LOG_INFO, "dropped");
  EXPECT_EQ(none.now_ms(), 0);
}

// ---- Helpers channels share ------------------------------------------------------------------------

TEST(PluginSdkHelpers, RetryAfterIsDelaySecondsOrAnImfFixdate) {
  constexpr int64_t kNow = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
  struct Case {
    std::optional<std::string_view> value;
    int64_t ms;
  };
  const Case cases[] = {
      {std::nullopt, 0},
      {"", 0},
      {"30", 30'000},
      {"0", 0},
      {" 7\t", 7'000},                 // RFC 9110 §5.5: surrounding whitespace is not part of the value
      {"999999999", 999'999'999'000},  // nine digits: taken (the host clamps long waits)
      {"1234567890", 0},               // ten: beyond any sensible wait
      {"-5", 0},
      {"1.5", 0},
      {"soon", 0},
      {"Thu, 01 Jan 2026 00:00:30 GMT", 30'000},
      {"Thu, 01 Jan 2026 00:02:00 GMT", 120'000},
      {"Thu, 01 Jan 2026 00:00:00 GMT", 0},  // now
      {"Wed, 31 Dec 2025 23:59:00 GMT", 0},  // past
      {"Thu, 1 Jan 2026 00:00:30 GMT", 0},   // not an IMF-fixdate (two-digit day)
      {"Thu, 01 Jan 2026 00:00:30 UTC", 0},
      {"Thursday, 01-Jan-26 00:00:30 GMT", 0},  // obsolete RFC 850 form
      {"Thu, 01 Foo 2026 00:00:30 GMT", 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value ? std::string(*c.value) : "(absent)");
    EXPECT_EQ(retry_after_ms(c.value, kNow), c.ms);
  }
  EXPECT_EQ(imf_fixdate_ms("Sun, 06 Nov 1994 08:49:37 GMT"), 784'111'777'000);  // RFC 9110's own example
  EXPECT_EQ(imf_fixdate_ms("Thu, 29 Feb 2024 00:00:00 GMT"), 1'709'164'800'000);
  EXPECT_EQ(imf_fixdate_ms("Sun, 06 Nov 1994 08:49:37"), std::nullopt);
  EXPECT_EQ(imf_fixdate_ms("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
  EXPECT_EQ(imf_fixdate_ms("Fri, 31 Dec 9999 23:59:59 GMT"), 253'402'300'799'000);
  // Dates that do not exist are refused, not rolled over into the next month.
  EXPECT_EQ(imf_fixdate_ms("Fri, 30 Feb 2024 00:00:00 GMT"), std::nullopt);
  EXPECT_EQ(imf_fixdate_ms("Thu, 29 Feb 2023 00:00:00 GMT"), std::nullopt);
  EXPECT_EQ(imf_fixdate_ms("Thu, 00 Jan 2026 00:00:00 GMT"), std::nullopt);

  // From a response: the header is found whatever its case.
  tayori_kv header{str("Retry-After"), str("12")};
  tayori_response raw{};
  raw.struct_size = sizeof raw;
  raw.status = 429;
  raw.headers = &header;
  raw.header_count = 1;
  EXPECT_EQ(retry_after_ms(Response(&raw), kNow), 12'000);
  raw.header_count = 0;
  EXPECT_EQ(retry_after_ms(Response(&raw), kNow), 0);
}

TEST(PluginSdkHelpers, UuidsFromDeliveryIdsAreStableAndOnlyHashedWhenNotHex) {
  constexpr uint64_t kSaltA = 0x84222325cbf29ce4ULL;  // line's retry keys
  constexpr uint64_t kSaltB = 0x6c62272e07bb0142ULL;  // push_apns's apns-ids
  // The dispatcher's ids are kept, lower-cased and dashed, whatever the salt.
  EXPECT_EQ(uuid_from("0f1e2d3c4b5a69788796a5b4c3d2e1f0", kSaltA), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
  EXPECT_EQ(uuid_from("0F1E2D3C4B5A69788796A5B4C3D2E1F0", kSaltB), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
  // Anything else is hashed. These values were on the wire before the helper existed: they must not move.
  EXPECT_EQ(uuid_from("not-hex-delivery", kSaltA), "9a83ce88-d924-3575-284f-aea93503f2f0");
  EXPECT_EQ(uuid_from("not-hex-delivery", kSaltB), "9a83ce88-d924-3575-ba3e-af4b04c57306");
  EXPECT_EQ(uuid_from("delivery-7", kSaltB), "ca8e16d8-c918-91cd-259b-5cb0e7759716");
  EXPECT_EQ(hashed_uuid("", kSaltA), "cbf29ce4-8422-2325-8422-2325cbf29ce4");  // the two seeds themselves
  EXPECT_EQ(hashed_uuid("multicast\nd-1\nd-2", kSaltA), "66a99537-9eb6-6b00-42ff-7a7ac2803667");
  EXPECT_EQ(hashed_uuid("0F1E2D3C4B5A69788796A5B4C3D2E1F0", kSaltA), "953f17a8-940f-a195-60bf-d329daa595e8");
  EXPECT_EQ(uuid_from("0f1e2d3c4b5a69788796a5b4c3d2e1f", kSaltA),  // 31 digits
            hashed_uuid("0f1e2d3c4b5a69788796a5b4c3d2e1f", kSaltA));
  EXPECT_EQ(uuid_from("0f1e2d3c4b5a69788796a5b4c3d2e1fg", kSaltA),
            hashed_uuid("0f1e2d3c4b5a69788796a5b4c3d2e1fg", kSaltA));
  EXPECT_EQ(uuid_from("delivery-7", kSaltA), uuid_from("delivery-7", kSaltA));
  EXPECT_NE(uuid_from("delivery-7", kSaltA), uuid_from("delivery-8", kSaltA));
}

// A delivery with content, metadata and attempt of the test's choosing.
struct HelperDelivery {
  Fields content;
  std::string metadata = "{}";
  std::string delivery_id = "d-1";
  uint32_t attempt = 1;
  template <class F>
  auto with(F&& use) const {
    std::vector<tayori_kv> kv;
    for (auto& [k, v] : content) kv.push_back({str(k), str(v)});
    tayori_delivery d{};
    d.struct_size = sizeof d;
    d.delivery_id = str(delivery_id);
    d.attempt = attempt;
    d.content = kv.data();
    d.content_count = kv.size();
    d.metadata_json = str(metadata);
    return use(Delivery(&d));
  }
};

TEST(PluginSdkHelpers, ContentOrMetadataPrefersNonEmptyContent) {
  auto lookup = [](Fields content, std::string metadata) {
    return HelperDelivery{std::move(content), std::move(metadata)}.with(
        [](const Delivery& d) { return content_or_metadata<nlohmann::json>(d, "collapse_id"); });
  };
  EXPECT_EQ(lookup({{"collapse_id", "c"}}, R"({"collapse_id":"m"})"), "c");
  EXPECT_EQ(lookup({{"collapse_id", ""}}, R"({"collapse_id":"m"})"), "m");
  EXPECT_EQ(lookup({}, R"({"collapse_id":"m","other":1})"), "m");
  EXPECT_EQ(lookup({}, R"({"collapse_id":""})"), std::nullopt);
  EXPECT_EQ(lookup({}, R"({"collapse_id":42})"), std::nullopt);
  EXPECT_EQ(lookup({}, R"({"nested":{"collapse_id":"m"}})"), std::nullopt);
  EXPECT_EQ(lookup({}, "not json"), std::nullopt);
  EXPECT_EQ(lookup({}, ""), std::nullopt);
}

TEST(PluginSdkHelpers, NotificationTextIsTitleAndBodyOrText) {
  auto text = [](Fields content) {
    return HelperDelivery{std::move(content)}.with([](const Delivery& d) {
      auto n = notification_text(d);
      return n ? std::string(n->title) + "|" + std::string(n->body) : std::string("(none)");
    });
  };
  EXPECT_EQ(text({{"title", "t"}, {"body", "b"}, {"text", "x"}}), "t|b");
  EXPECT_EQ(text({{"text", "x"}}), "|x");                                // no "body" field: "text" is the body
  EXPECT_EQ(text({{"title", "t"}, {"body", ""}, {"text", "x"}}), "t|");  // an empty body is still the body
  EXPECT_EQ(text({{"title", "t"}}), "t|");
  EXPECT_EQ(text({{"title", ""}, {"body", ""}}), "(none)");
  EXPECT_EQ(text({{"html", "<p>x</p>"}}), "(none)");
}

TEST(PluginSdkHelpers, AttemptTokensGiveBackTheTokenOfEachAttemptOnce) {
  CountingSink host;
  RequestSink sink(&host.raw);
  Request r;
  r.url = "https://api.example.com/send";
  AttemptTokens tokens;
  HelperDelivery first, second;
  second.attempt = 2;
  first.with([&](const Delivery& d) { tokens.add(sink, r, d, "tok-1"); });
  second.with([&](const Delivery& d) { tokens.add(sink, r, d, "tok-2"); });
  EXPECT_EQ(host.taken, 2);
  EXPECT_EQ(second.with([&](const Delivery& d) { return tokens.take(d); }), "tok-2");
  EXPECT_EQ(first.with([&](const Delivery& d) { return tokens.take(d); }), "tok-1");
  EXPECT_EQ(first.with([&](const Delivery& d) { return tokens.take(d); }), "");  // given back once

  // A request the host refuses is never classified: its token is not kept.
  host.refuse = true;
  EXPECT_THROW(first.with([&](const Delivery& d) { tokens.add(sink, r, d, "tok-3"); }), sdk::Error);
  EXPECT_EQ(first.with([&](const Delivery& d) { return tokens.take(d); }), "");
}

TEST(PluginSdkHelpers, Base64EncodeIsRfc4648AndMatchesTheHost) {
  // RFC 4648 §10's vectors.
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (auto [plain, encoded] : vectors) EXPECT_EQ(base64_encode(plain), encoded) << plain;
  // Every byte value, every remainder: the same text as Host::base64 gets from the host's OpenSSL.
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(255 - i);
  for (size_t n = 0; n <= all.size(); ++n)
    EXPECT_EQ(base64_encode(all.substr(0, n)), crypto::base64_encode(all.substr(0, n))) << n;
}

TEST(PluginSdkHelpers, SmallTextAndFileHelpers) {
  EXPECT_EQ(utf8_code_points("あいう abc"), 7u);
  EXPECT_EQ(utf8_code_points(""), 0u);
  EXPECT_EQ(without_trailing_slashes("https://api.example.com//"), "https://api.example.com");
  EXPECT_EQ(without_trailing_slashes("https://api.example.com/v1"), "https://api.example.com/v1");
  EXPECT_TRUE(is_hex('a') && is_hex('F') && is_hex('0'));
  EXPECT_FALSE(is_hex('g') || is_hex('-'));

  test::TempDir dir("plugin_sdk_test_");
  std::ofstream(dir.file("key.pem"), std::ios::binary) << "-----BEGIN KEY-----\r\n";
  EXPECT_EQ(read_setting_file("key_file", dir.file("key.pem")), "-----BEGIN KEY-----\r\n");
  try {
    read_setting_file("key_file", dir.file("missing.pem"));
    ADD_FAILURE() << "no error for a missing file";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(std::string(e.what()), "key_file: cannot read " + dir.file("missing.pem"));
  }
}

// ---- Through real .so files, loaded by the host --------------------------------------------------

using plugin::Channel;
using plugin::DeliveryOutcome;
using plugin::DeliveryRequest;
using plugin::Library;
using plugin::OutcomeKind;

std::string fixture(const std::string& name) { return std::string(TAYORI_FIXTURE_DIR) + "/" + name + ".so"; }

class PinnedClock final : public Clock {
 public:
  int64_t now_ms() const override { return 1'795'474'800'000; }
};

using test::TempDir;

std::vector<nlohmann::json> read_json_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not a JSON line: " << line;
    lines.push_back(j);
  }
  return lines;
}

// A loaded fixture with one created channel.
struct Loaded {
  PinnedClock clock;
  std::shared_ptr<Library> library;
  std::unique_ptr<Channel> channel;
  std::string error;

  Loaded(const std::string& name, const std::vector<std::pair<std::string, std::string>>& settings) {
    auto opened = Library::open(fixture(name));
    if (!opened) {
      error = opened.error().message;
      return;
    }
    library = *opened;
    channel = std::make_unique<Channel>("test_channel", "email", library, clock);
    if (Result<void> created = channel->create(settings); !created) {
      error = created.error().message;
      channel.reset();
    }
  }
};

DeliveryRequest request(std::vector<std::pair<std::string, std::string>> content, uint32_t attempt = 1) {
  DeliveryRequest r;
  r.message_id = "msg-1";
  r.delivery_id = "dlv-1";
  r.attempt = attempt;
  r.recipient_id = "user-1";
  r.contact = "a@example.com";
  r.content = std::move(content);
  return r;
}

TEST(PluginSdkThrowing, StdExceptionInDeliverBecomesRetryNamingIt) {
  Loaded t("fixture_throwing", {});
  ASSERT_NE(t.channel, nullptr) << t.error;
  DeliveryOutcome out = t.channel->deliver(request({{"throw", "std"}}));
  EXPECT_EQ(out.kind, OutcomeKind::retry);
  EXPECT_EQ(out.reason, "plugin_error: boom");
}

TEST(PluginSdkThrowing, NonStdExceptionInDeliverBecomesRetry) {
  Loaded t("fixture_throwing", {});
  ASSERT_NE(t.channel, nullptr) << t.error;
  DeliveryOutcome out = t.channel->deliver(request({{"throw", "other"}}));
  EXPECT_EQ(out.kind, OutcomeKind::retry);
  EXPECT_THAT(out.reason, StartsWith("plugin_error"));
  EXPECT_EQ(out.reason, "plugin_error: unknown exception");
}

TEST(PluginSdkThrowing, ChannelKeepsDeliveringAfterThrows) {
  Loaded t("fixture_throwing", {});
  ASSERT_NE(t.channel, nullptr) << t.error;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t.channel->deliver(request({{"throw", "std"}})).kind, OutcomeKind::retry);
    EXPECT_EQ(t.channel->deliver(request({{"throw", "other"}})).kind, OutcomeKind::retry);
    DeliveryOutcome fine = t.channel->deliver(request({}));
    EXPECT_EQ(fine.kind, OutcomeKind::delivered);
    EXPECT_EQ(fine.reason, "");
    EXPECT_EQ(fine.provider_message_id, "throwing:dlv-1");
  }
}

TEST(PluginSdkThrowing, ThrowingConstructorFailsCreationWithItsMessage) {
  Loaded t("fixture_throwing", {{"fail_create", "true"}});
  EXPECT_EQ(t.channel, nullptr);
  EXPECT_EQ(t.error, "fail_create: this fixture was told to refuse its settings");
}

TEST(PluginSdkThrowing, ThrowingConstructorIsReportedByBuildRegistryAtTheSettings) {
  std::string yaml =
      "api_keys:\n"
      "  - name: test\n"
      "    key_env: KEY\n"
      "plugin_dirs: [" TAYORI_FIXTURE_DIR "]\n"
      "channels:\n"
      "  - name: thrower\n"
      "    plugin: fixture_throwing\n"
      "    settings:\n"
      "      fail_create: true\n";
  TempDir dir;
  auto loaded = config::load_string(yaml, "test.yaml", dir.path(), [](const std::string&) -> std::optional<std::string> {
    return "k";
  });
  ASSERT_TRUE(loaded.config);
  PinnedClock clock;
  auto result = plugin::build_registry(*loaded.config, clock);
  EXPECT_EQ(result.registry, nullptr);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].to_string(),
            "test.yaml:9:7: channels[0].settings: fail_create: this fixture was told to refuse its settings");
}

// ---- fixture_scripted: the deterministic plugin the dispatcher's integration tests drive ------------

class PluginScripted : public ::testing::Test {
 protected:
  void SetUp() override {
    t_ = std::make_unique<Loaded>("fixture_scripted", std::vector<std::pair<std::string, std::string>>{{"path", log_}});
    ASSERT_NE(t_->channel, nullptr) << t_->error;
  }
  DeliveryOutcome deliver(std::vector<std::pair<std::string, std::string>> content, uint32_t attempt = 1) {
    return t_->channel->deliver(request(std::move(content), attempt));
  }
  TempDir dir_;
  std::string log_ = dir_.file("attempts.jsonl");
  std::unique_ptr<Loaded> t_;
};

TEST_F(PluginScripted, DeliversByDefaultAndRecordsTheAttempt) {
  DeliveryOutcome out = deliver({{"subject", "Hi"}, {"text", "line1\nline2"}}, 3);
  EXPECT_EQ(out.kind, OutcomeKind::delivered);
  EXPECT_EQ(out.provider_message_id, "scripted-dlv-1-3");
  EXPECT_EQ(out.reason, "");
  auto lines = read_json_lines(log_);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["message_id"], "msg-1");
  EXPECT_EQ(lines[0]["delivery_id"], "dlv-1");
  EXPECT_EQ(lines[0]["attempt"], 3);
  EXPECT_EQ(lines[0]["channel"], "test_channel");
  EXPECT_EQ(lines[0]["recipient_id"], "user-1");
  EXPECT_EQ(lines[0]["contact"], "a@example.com");
  EXPECT_EQ(lines[0]["content"], (nlohmann::json{{"subject", "Hi"}, {"text", "line1\nline2"}}));
  EXPECT_EQ(lines[0]["outcome"], "delivered");
}

TEST_F(PluginScripted, ScriptedOutcomes) {
  DeliveryOutcome retry = deliver({{"test_outcome", "retry"}});
  EXPECT_EQ(retry.kind, OutcomeKind::retry);
  EXPECT_EQ(retry.reason, "scripted.retry");
  EXPECT_EQ(retry.retry_after_ms, 0);

  DeliveryOutcome later = deliver({{"test_outcome", "retry"}, {"test_retry_after_ms", "1500"}});
  EXPECT_EQ(later.kind, OutcomeKind::retry);
  EXPECT_EQ(later.retry_after_ms, 1500);

  // The host caps a plugin's Retry-After at a day, so a bad value cannot park a message for ever.
  DeliveryOutcome capped = deliver({{"test_outcome", "retry"}, {"test_retry_after_ms", "999999999999"}});
  EXPECT_EQ(capped.retry_after_ms, 86'400'000);

  DeliveryOutcome permanent = deliver({{"test_outcome", "permanent"}});
  EXPECT_EQ(permanent.kind, OutcomeKind::permanent);
  EXPECT_EQ(permanent.reason, "scripted.permanent");
  EXPECT_FALSE(permanent.deactivate_contact);

  DeliveryOutcome dead = deliver({{"test_outcome", "permanent_deactivate"}});
  EXPECT_EQ(dead.kind, OutcomeKind::permanent);
  EXPECT_EQ(dead.reason, "scripted.permanent_deactivate");
  EXPECT_TRUE(dead.deactivate_contact);

  DeliveryOutcome thrown = deliver({{"test_outcome", "throw"}});
  EXPECT_EQ(thrown.kind, OutcomeKind::retry);
  EXPECT_EQ(thrown.reason, "plugin_error: scripted.throw");

  auto lines = read_json_lines(log_);
  ASSERT_EQ(lines.size(), 6u);  // every attempt is recorded, the throwing one included
  std::vector<std::string> outcomes;
  for (auto& l : lines) outcomes.push_back(l["outcome"]);
  EXPECT_THAT(outcomes,
              ::testing::ElementsAre("retry", "retry", "retry", "permanent", "permanent_deactivate", "throw"));
}

TEST_F(PluginScripted, SucceedsFromTheGivenAttempt) {
  for (uint32_t attempt = 1; attempt <= 4; ++attempt) {
    DeliveryOutcome out = deliver({{"test_succeed_from_attempt", "3"}, {"test_retry_after_ms", "20"}}, attempt);
    if (attempt < 3) {
      EXPECT_EQ(out.kind, OutcomeKind::retry) << attempt;
      EXPECT_EQ(out.reason, "scripted.retry");
      EXPECT_EQ(out.retry_after_ms, 20);
    } else {
      EXPECT_EQ(out.kind, OutcomeKind::delivered) << attempt;
    }
  }
  EXPECT_EQ(read_json_lines(log_).size(), 4u);
}

TEST_F(PluginScripted, MalformedScriptIsPermanentNotDelivered) {
  DeliveryOutcome typo = deliver({{"test_outcome", "delivred"}});
  EXPECT_EQ(typo.kind, OutcomeKind::permanent);
  EXPECT_EQ(typo.reason, "scripted.invalid: test_outcome \"delivred\"");
  EXPECT_EQ(deliver({{"test_succeed_from_attempt", "two"}}).kind, OutcomeKind::permanent);
  EXPECT_EQ(deliver({{"test_outcome", "retry"}, {"test_retry_after_ms", "-5"}}).kind, OutcomeKind::permanent);
}

TEST_F(PluginScripted, ConcurrentDeliveriesWriteWholeLines) {
  constexpr int kThreads = 4, kEach = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        DeliveryRequest r = request({{"text", std::string(300, static_cast<char>('a' + t))}});
        r.message_id = "m-" + std::to_string(t) + "-" + std::to_string(i);
        t_->channel->deliver(r);
      }
    });
  for (auto& th : threads) th.join();
  auto lines = read_json_lines(log_);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kEach));
  std::set<std::string> ids;
  for (auto& l : lines) ids.insert(l["message_id"].get<std::string>());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kEach));
}

TEST(PluginScriptedSettings, PathIsRequired) {
  Loaded t("fixture_scripted", {});
  EXPECT_EQ(t.channel, nullptr);
  EXPECT_EQ(t.error, "path: is required");
}

TEST(PluginScriptedSettings, UnopenablePathFailsCreation) {
  TempDir dir;
  Loaded t("fixture_scripted", {{"path", dir.file("missing/attempts.jsonl")}});
  EXPECT_EQ(t.channel, nullptr);
  EXPECT_THAT(t.error, HasSubstr("path: cannot open \"" + dir.file("missing/attempts.jsonl") + "\""));
}

}  // namespace
}  // namespace tayori
