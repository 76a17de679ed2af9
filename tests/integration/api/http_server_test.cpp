// The HTTP server's own guard at the top of its I/O threads: a handler that throws costs its request a 500
// problem+json, never the process, and a handler that throws after answering is not answered twice. And how a
// connection reads its requests: a body that came with its head, one that comes later, several requests in one
// write, over raw sockets. And how connections share the server's threads.
#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "api/http_server.hpp"
#include "raw_connection.hpp"

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

// Answers each request with its method, path and body, as "METHOD PATH=BODY" (bytes left of one request in
// front of the next would show in the method: any token is one).
class EchoHandler : public Handler {
 public:
  void handle(HttpRequest request, Responder respond) override {
    respond({200, "text/plain", {}, request.method + " " + request.path + "=" + request.body});
  }
};

std::string post(const std::string& path, const std::string& body) {
  return "POST " + path +
         " HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

// The bodies of the responses in `bytes`, in order (each response's head ends in a Content-Length).
std::vector<std::string> response_bodies(const std::string& bytes) {
  std::vector<std::string> bodies;
  size_t at = 0;
  for (;;) {
    size_t end = bytes.find("\r\n\r\n", at);
    if (end == std::string::npos) return bodies;
    size_t length_at = bytes.find("Content-Length: ", at);
    if (length_at == std::string::npos || length_at > end) return bodies;
    size_t length = std::stoul(bytes.substr(length_at + 16));
    if (bytes.size() < end + 4 + length) return bodies;
    bodies.push_back(bytes.substr(end + 4, length));
    at = end + 4 + length;
  }
}

// A small body usually arrives in the same read as its head and is parsed from the connection's buffer at once
// (Session::read_body); the rest of the buffer is the next request's. Three requests in one write, the last
// one's body cut short, then its rest: each is answered with its own body, in order, on the one connection.
TEST(HttpServerReading, RequestsInOneWriteAndABodyThatComesLaterAreEachAnsweredWithTheirOwnBody) {
  EchoHandler handler;
  HttpServer server(handler, ServerLimits{}, 2);
  uint16_t port = server.start("127.0.0.1", 0);
  auto c = std::make_unique<testing::RawConnection>(port);
  ASSERT_TRUE(c->connected());
  const std::string late_body(3000, 'z');
  std::string third = post("/third", late_body);
  ASSERT_TRUE(c->send(post("/first", "one") + post("/second", "") + third.substr(0, third.size() - 1000)));
  // The third request's head and part of its body wait in the server's buffer for the rest.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(c->send(third.substr(third.size() - 1000) + post("/fourth", "four")));
  std::string received;
  for (int i = 0; i < 50 && response_bodies(received).size() < 4; ++i)
    received += c->read_until_closed(std::chrono::milliseconds(100)).text;
  EXPECT_THAT(
      response_bodies(received),
      ::testing::ElementsAre("POST /first=one", "POST /second=", "POST /third=" + late_body, "POST /fourth=four"));
  c.reset();  // closed first: stop() would wait out the open connection's drain
  server.stop();
}

// A body over the limit that arrives with its head is refused as one read in pieces is: 413, then closed.
TEST(HttpServerReading, ABodyOverTheLimitThatArrivesWithItsHeadIsRefusedWith413) {
  EchoHandler handler;
  ServerLimits limits;
  limits.max_body_bytes = 10;
  HttpServer server(handler, limits, 2);
  uint16_t port = server.start("127.0.0.1", 0);
  testing::RawConnection c(port);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(post("/big", std::string(20, 'x')) + post("/after", "never")));
  auto read = c.read_until_closed(std::chrono::seconds(5));
  EXPECT_TRUE(read.closed);
  EXPECT_EQ(read.text.rfind("HTTP/1.1 413", 0), 0u) << read.text;
  EXPECT_EQ(read.text.find("/after="), std::string::npos) << read.text;
  server.stop();
}

// Holds a request to /hold on its thread until released (at most 10 s); answers any other at once.
class HoldingHandler : public Handler {
 public:
  void handle(HttpRequest request, Responder respond) override {
    if (request.path == "/hold") {
      std::unique_lock lock(mutex_);
      holding_ = true;
      changed_.notify_all();
      changed_.wait_for(lock, std::chrono::seconds(10), [&] { return released_; });
    }
    respond({200, "text/plain", {}, request.path});
  }
  bool wait_until_holding() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(10), [&] { return holding_; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool holding_ = false, released_ = false;
};

// Each thread runs an event loop of its own, and connections are spread over them as they are accepted: a
// handler that blocks its thread (a store read, a PUT waiting for its commit) holds the connections of its own
// loop, not the next connection, which is accepted on a loop of its own and served by another thread.
TEST(HttpServerLoops, AHandlerThatBlocksItsThreadHoldsNeitherTheAcceptorNorTheNextConnection) {
  HoldingHandler handler;
  HttpServer server(handler, ServerLimits{}, 2);
  uint16_t port = server.start("127.0.0.1", 0);
  auto held = std::async(std::launch::async, [port] { return get(port, "/hold"); });
  ASSERT_TRUE(handler.wait_until_holding());
  auto next = std::async(std::launch::async, [port] { return get(port, "/next"); });
  ASSERT_EQ(next.wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "the next connection waited for the held request's thread";
  Answer answer = next.get();
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.body, "/next");
  EXPECT_EQ(held.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  handler.release();
  EXPECT_EQ(held.get().body, "/hold");
  server.stop();
}

}  // namespace
}  // namespace tayori::api
