// The HTTP server's own guard at the top of its I/O threads: a handler that throws costs its request a 500
// problem+json, never the process, and a handler that throws after answering is not answered twice.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>

#include "api/http_server.hpp"

namespace tayori::api {
namespace {

class ThrowingHandler : public Handler {
 public:
  void handle(HttpRequest request, Responder respond) override {
    if (request.path == "/throw") throw std::out_of_range("number overflow parsing '1e400'");
    if (request.path == "/throw-after-answering") {
      respond({201, "text/plain", {}, "answered"});
      throw std::runtime_error("failed after answering");
    }
    if (request.path == "/never-answered") {
      // As a store completion that throws on the writer thread: the Responder is dropped, never called.
      std::thread([dropped = std::move(respond)] {}).join();
      return;
    }
    respond({200, "text/plain", {}, "ok"});
  }
  void observe_rejected(int status) override {
    if (status == 500) ++server_errors;
  }
  std::atomic<int> server_errors{0};
};

struct Answer {
  long status = 0;
  std::string body;
};

Answer get(uint16_t port, const std::string& path) {
  Answer a;
  CURL* curl = curl_easy_init();
  std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* u) {
    static_cast<std::string*>(u)->append(d, s * n);
    return s * n;
  });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &a.body);
  if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a.status);
  curl_easy_cleanup(curl);
  return a;
}

TEST(HttpServerGuard, AThrowingHandlerCostsItsRequestA500AndTheServerGoesOn) {
  ThrowingHandler handler;
  HttpServer server(handler, ServerLimits{}, 2);
  uint16_t port = server.start("127.0.0.1", 0);

  for (int i = 0; i < 3; ++i) {
    Answer a = get(port, "/throw");
    EXPECT_EQ(a.status, 500);
    EXPECT_NE(a.body.find(R"("status":500)"), std::string::npos) << a.body;
    EXPECT_EQ(a.body.find("1e400"), std::string::npos) << "the exception's text stays in the log: " << a.body;
  }
  EXPECT_EQ(handler.server_errors, 3);

  Answer after = get(port, "/throw-after-answering");
  EXPECT_EQ(after.status, 201);
  EXPECT_EQ(after.body, "answered");
  EXPECT_EQ(handler.server_errors, 3);

  EXPECT_EQ(get(port, "/fine").status, 200);
  server.stop();
}

// A Responder dropped without an answer (a completion that threw where the store's writer caught it) left the
// client waiting for ever: the stream has no deadline while a handler works. The last copy going answers 500.
TEST(HttpServerGuard, ARequestWhoseResponderIsDroppedUnansweredGetsA500) {
  ThrowingHandler handler;
  HttpServer server(handler, ServerLimits{}, 2);
  uint16_t port = server.start("127.0.0.1", 0);
  Answer a = get(port, "/never-answered");
  EXPECT_EQ(a.status, 500);
  EXPECT_NE(a.body.find(R"("status":500)"), std::string::npos) << a.body;
  EXPECT_EQ(handler.server_errors, 1);
  EXPECT_EQ(get(port, "/fine").status, 200);
  server.stop();
}

}  // namespace
}  // namespace tayori::api
