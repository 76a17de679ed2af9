// The sans-I/O path end to end inside the process: a plugin builds an HTTP request, the host transport
// (libcurl multi) sends it to a real local HTTP server, and the plugin classifies the real answer.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <nlohmann/json.hpp>

#include "api/http_server.hpp"
#include "config/config.hpp"
#include "plugin/channel.hpp"
#include "plugin/channel_internal.hpp"
#include "plugin_test_support.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::plugin {
namespace {

using testing::ManualClock;

// A provider stand-in: answers by the recipient number, records what it received.
class Provider final : public api::Handler {
 public:
  void handle(api::HttpRequest request, api::Responder respond) override {
    {
      std::unique_lock lock(mutex_);
      received.push_back(request);
      arrived_.notify_all();
      // Held: the request stays on the wire until the test lets it go.
      released_.wait_for(lock, std::chrono::seconds(10), [&] { return !hold; });
    }
    auto body = nlohmann::json::parse(request.body, nullptr, false);
    std::string to = body.is_object() ? body.value("to", "") : "";
    api::HttpResponse r;
    if (to == "+819000000429") {
      r.status = 429;
      r.headers.emplace_back("Retry-After", "7");
    } else if (to == "+819000000404") {
      r.status = 404;
    } else if (to == "+819000000503") {
      r.status = 503;
    } else {
      r.status = 200;
      r.headers.emplace_back("X-Message-Id", "prov-" + body.value("message_id", ""));
    }
    respond(r);
  }
  // Waits until `n` requests have arrived (false after 10 s).
  bool wait_for_requests(size_t n) {
    std::unique_lock lock(mutex_);
    return arrived_.wait_for(lock, std::chrono::seconds(10), [&] { return received.size() >= n; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    hold = false;
    released_.notify_all();
  }
  size_t count() {
    std::lock_guard lock(mutex_);
    return received.size();
  }

  std::mutex mutex_;
  std::condition_variable arrived_, released_;
  bool hold = false;
  std::vector<api::HttpRequest> received;
};

// A delivery's verdicts as they come, from whichever thread.
struct Verdicts {
  Channel::DeliveryDone done() {
    return [this](DeliveryOutcome o) {
      std::lock_guard lock(mutex);
      outcomes.push_back(std::move(o));
      came.notify_all();
    };
  }
  std::vector<DeliveryOutcome> wait_for(size_t n) {
    std::unique_lock lock(mutex);
    came.wait_for(lock, std::chrono::seconds(10), [&] { return outcomes.size() >= n; });
    return outcomes;
  }
  std::mutex mutex;
  std::condition_variable came;
  std::vector<DeliveryOutcome> outcomes;
};

class SansIoChannel : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<api::HttpServer>(provider_, api::ServerLimits{}, 4);
    port_ = server_->start("127.0.0.1", 0);
    registry_ = build("http://127.0.0.1:" + std::to_string(port_), &transport_);
    ASSERT_TRUE(registry_.registry) << registry_.errors.at(0).to_string();
  }
  void TearDown() override { server_->stop(0); }

  RegistryResult build(const std::string& url, transport::OutboundTransport* transport, const std::string& extra = "") {
    std::string yaml = "api_keys: [{name: t, key_env: K}]\nplugin_dirs: [" TAYORI_FIXTURE_DIR "]\n"
                       "channels:\n  - name: sms\n    plugin: fixture_http\n    settings:\n      url: " + url + "\n" +
                       extra;
    auto loaded = config::load_string(yaml, "t.yaml", "/tmp", [](const std::string&) { return std::string("k"); });
    EXPECT_TRUE(loaded.config);
    return build_registry(*loaded.config, clock_, transport);
  }

  static DeliveryRequest sms(const std::string& to, const std::string& text = "こんにちは") {
    return testing::delivery_to(to, text);
  }
  DeliveryOutcome send(const std::string& to, const std::string& text = "こんにちは") {
    return registry_.registry->find("sms")->deliver(sms(to, text));
  }

  ManualClock clock_;  // the channel's circuit breaker reads it; only the test moves it
  Provider provider_;
  std::unique_ptr<api::HttpServer> server_;
  uint16_t port_ = 0;
  transport::OutboundTransport transport_{transport::TransportOptions{}};
  RegistryResult registry_;
};

TEST_F(SansIoChannel, BuildsSendsAndClassifiesARealExchange) {
  DeliveryOutcome o = send("+819012345678");
  EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
  EXPECT_EQ(o.provider_message_id, "prov-m-+819012345678");
  ASSERT_EQ(provider_.received.size(), 1u);
  const api::HttpRequest& r = provider_.received[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/send");
  EXPECT_EQ(r.header("authorization"), "Bearer fixture-token");
  EXPECT_EQ(r.header("idempotency-key"), "d-+819012345678");
  EXPECT_EQ(nlohmann::json::parse(r.body)["text"], "こんにちは");
}

TEST_F(SansIoChannel, ProviderAnswersBecomeOutcomes) {
  DeliveryOutcome throttled = send("+819000000429");
  EXPECT_EQ(throttled.kind, OutcomeKind::retry);
  EXPECT_EQ(throttled.retry_after_ms, 7000);
  DeliveryOutcome dead = send("+819000000404");
  EXPECT_EQ(dead.kind, OutcomeKind::permanent);
  EXPECT_TRUE(dead.deactivate_contact);
  DeliveryOutcome down = send("+819000000503");
  EXPECT_EQ(down.kind, OutcomeKind::retry);
  EXPECT_EQ(down.reason, "http.503");
}

TEST_F(SansIoChannel, ABuildFailureIsPermanentAndSendsNothing) {
  DeliveryOutcome o = send("+819012345678", "build_fails");
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_EQ(o.reason, "plugin_error: build: text: refused");
  EXPECT_TRUE(provider_.received.empty());
}

TEST_F(SansIoChannel, AnUnreachableProviderIsATransportRetry) {
  registry_ = build("http://127.0.0.1:1", &transport_);  // nothing listens on port 1: refused at once
  ASSERT_TRUE(registry_.registry);
  DeliveryOutcome o = send("+819012345678");
  EXPECT_EQ(o.kind, OutcomeKind::retry);
  EXPECT_EQ(o.reason.rfind("http.transport: ", 0), 0u) << o.reason;
}

TEST_F(SansIoChannel, ProviderFailuresOpenTheCircuitAndAProbeClosesIt) {
  registry_ = build("http://127.0.0.1:" + std::to_string(port_), &transport_,
                    "    circuit_breaker: {failures: 2, probe_interval: 200ms}\n");
  ASSERT_TRUE(registry_.registry);
  const Channel& channel = *registry_.registry->find("sms");
  // A refusal of one recipient (404) is an answer from a provider that is up: it does not count.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(send("+819000000404").kind, OutcomeKind::permanent);
  EXPECT_EQ(channel.circuit().state(), transport::CircuitState::closed);
  DeliveryOutcome first = send("+819000000503");
  EXPECT_EQ(first.kind, OutcomeKind::retry);
  EXPECT_EQ(first.cause, "server_error");
  EXPECT_FALSE(first.circuit_open);
  send("+819000000503");
  EXPECT_EQ(channel.circuit().state(), transport::CircuitState::open);

  // Open: nothing is sent; the delivery is told when the next probe may go.
  size_t received = provider_.received.size();
  DeliveryOutcome waiting = send("+819012345678");
  EXPECT_EQ(waiting.kind, OutcomeKind::retry);
  EXPECT_TRUE(waiting.circuit_open);
  EXPECT_EQ(waiting.cause, "circuit_open");
  EXPECT_EQ(waiting.retry_after_ms, 200);  // the clock has not moved since the circuit opened
  EXPECT_EQ(provider_.received.size(), received);

  // Until the probe interval has passed, the circuit stays open however often it is asked.
  ASSERT_TRUE(channel.circuit().next_probe_ms() > 0);
  clock_.now = channel.circuit().next_probe_ms() - 1;
  EXPECT_TRUE(send("+819012345678").circuit_open);
  EXPECT_EQ(provider_.received.size(), received);

  // After the probe interval one delivery probes; its success closes the circuit.
  clock_.now = channel.circuit().next_probe_ms();
  EXPECT_EQ(send("+819012345678").kind, OutcomeKind::delivered);
  EXPECT_EQ(channel.circuit().state(), transport::CircuitState::closed);
  EXPECT_EQ(provider_.received.size(), received + 1);
  EXPECT_EQ(channel.circuit().times_opened(), 1u);
}

TEST_F(SansIoChannel, AnUnreachableProviderOpensTheCircuitToo) {
  registry_ = build("http://127.0.0.1:1", &transport_, "    circuit_breaker: {failures: 1, probe_interval: 1h}\n");
  ASSERT_TRUE(registry_.registry);
  DeliveryOutcome o = send("+819012345678");
  EXPECT_EQ(o.cause, "transport_error");
  EXPECT_TRUE(send("+819012345678").circuit_open);
}

// A delivery holds no thread while its request is on the wire: one caller fills the channel's concurrency,
// and the verdicts come back on the transport's thread once the provider answers.
TEST_F(SansIoChannel, OneCallerKeepsSeveralDeliveriesOnTheWireAtOnce) {
  Channel& channel = *registry_.registry->find("sms");
  provider_.hold = true;
  Verdicts verdicts;
  for (int i = 0; i < 4; ++i) channel.deliver(sms("+81900000000" + std::to_string(i)), verdicts.done());
  EXPECT_TRUE(provider_.wait_for_requests(4)) << "on the wire at once: " << provider_.count();
  EXPECT_TRUE(verdicts.outcomes.empty());
  provider_.release();
  auto outcomes = verdicts.wait_for(4);
  ASSERT_EQ(outcomes.size(), 4u);
  for (const auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
}

// Deliveries queued behind the channel's concurrency were admitted while the circuit was closed; once it
// opens they do not start (as they would not have been admitted then): they wait for the probe, unsent.
TEST_F(SansIoChannel, DeliveriesQueuedWhenTheCircuitOpensAreNotSent) {
  registry_ = build("http://127.0.0.1:" + std::to_string(port_), &transport_,
                    "    concurrency: 1\n    circuit_breaker: {failures: 1, probe_interval: 1h}\n");
  ASSERT_TRUE(registry_.registry);
  Channel& channel = *registry_.registry->find("sms");
  provider_.hold = true;
  Verdicts verdicts;
  channel.deliver(sms("+819000000503"), verdicts.done());
  ASSERT_TRUE(provider_.wait_for_requests(1));
  for (int i = 0; i < 3; ++i) channel.deliver(sms("+81901234567" + std::to_string(i)), verdicts.done());
  provider_.release();  // the first answers 503 and opens the circuit; the others are still queued
  auto outcomes = verdicts.wait_for(4);
  ASSERT_EQ(outcomes.size(), 4u);
  EXPECT_EQ(provider_.count(), 1u);
  EXPECT_EQ(channel.circuit().state(), transport::CircuitState::open);
  int waiting = 0;
  for (const auto& o : outcomes) waiting += o.circuit_open ? 1 : 0;
  EXPECT_EQ(waiting, 3);
}

// on_classify runs on the transport's thread: a waiting exchange from there (a plugin calling host_exchange in
// on_classify) would wait for the loop it blocks. It is answered at once with an error and not sent.
TEST_F(SansIoChannel, AnExchangeFromTheTransportsOwnThreadIsRefusedNotAwaited) {
  transport::Request first;
  first.method = "POST";
  first.url = "http://127.0.0.1:" + std::to_string(port_) + "/";
  first.body = R"({"to":"+819012345678"})";
  std::promise<transport::Response> inner;
  transport_.submit(first, [&](const transport::Response&) {
    EXPECT_TRUE(transport_.on_transport_thread());
    inner.set_value(exchange(transport_, first));
  });
  auto answered = inner.get_future();
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "the exchange waited";
  transport::Response r = answered.get();
  EXPECT_EQ(r.transport_error, CURLE_RECURSIVE_API_CALL);
  EXPECT_EQ(provider_.count(), 1u);
  EXPECT_FALSE(transport_.on_transport_thread());
}

TEST_F(SansIoChannel, WithoutATransportASansIoPluginIsRefused) {
  RegistryResult r = build("http://127.0.0.1:1", nullptr);
  ASSERT_FALSE(r.registry);
  EXPECT_NE(r.errors.at(0).message.find("sans-I/O"), std::string::npos) << r.errors.at(0).to_string();
}

}  // namespace
}  // namespace tayori::plugin
