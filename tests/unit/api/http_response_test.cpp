// api::response_head: the head the server writes before an answer's body, for each version and keep-alive, the
// handler's headers, and the statuses that carry no content.
#include <gtest/gtest.h>

#include <string>

#include "api/http_server.hpp"

namespace tayori::api {
namespace {

HttpResponse answer(int status, std::string body, std::vector<std::pair<std::string, std::string>> headers = {}) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

TEST(HttpResponseHead, SaysTheStatusTheTypeAndTheLength) {
  EXPECT_EQ(response_head(answer(202, R"({"status":"accepted"})"), 11, true),
            "HTTP/1.1 202 Accepted\r\nServer: tayori\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n");
  HttpResponse problem = answer(422, "{}");
  problem.content_type = "application/problem+json";
  EXPECT_EQ(response_head(problem, 11, true),
            "HTTP/1.1 422 Unprocessable Entity\r\nServer: tayori\r\n"
            "Content-Type: application/problem+json\r\nContent-Length: 2\r\n\r\n");
  HttpResponse untyped = answer(200, "");
  untyped.content_type.clear();
  EXPECT_EQ(response_head(untyped, 11, true), "HTTP/1.1 200 OK\r\nServer: tayori\r\nContent-Length: 0\r\n\r\n");
}

// RFC 9112 §9.3: HTTP/1.1 stays open unless told; HTTP/1.0 closes unless told.
TEST(HttpResponseHead, SaysConnectionOnlyWhereTheVersionNeedsIt) {
  EXPECT_NE(response_head(answer(200, "x"), 11, false).find("\r\nConnection: close\r\n"), std::string::npos);
  EXPECT_EQ(response_head(answer(200, "x"), 11, true).find("Connection"), std::string::npos);
  EXPECT_EQ(response_head(answer(200, "x"), 10, true).rfind("HTTP/1.0 200 OK\r\n", 0), 0u);
  EXPECT_NE(response_head(answer(200, "x"), 10, true).find("\r\nConnection: keep-alive\r\n"), std::string::npos);
  EXPECT_EQ(response_head(answer(200, "x"), 10, false).find("Connection"), std::string::npos);
}

TEST(HttpResponseHead, TheHandlersHeadersFollowAndALaterOneReplaces) {
  std::string head = response_head(
      answer(429, "{}", {{"Retry-After", "1"}, {"content-type", "text/plain"}, {"Retry-After", "2"}, {"X-A", "b"}}), 11,
      true);
  EXPECT_EQ(head,
            "HTTP/1.1 429 Too Many Requests\r\nServer: tayori\r\nContent-Type: text/plain\r\nRetry-After: 2\r\n"
            "X-A: b\r\nContent-Length: 2\r\n\r\n");
  // The framing is the server's to say: a handler's Content-Length or Connection is not sent.
  head = response_head(answer(200, "abc", {{"Content-Length", "99"}, {"Connection", "keep-alive"}}), 11, false);
  EXPECT_EQ(head,
            "HTTP/1.1 200 OK\r\nServer: tayori\r\nContent-Type: application/json\r\nConnection: close\r\n"
            "Content-Length: 3\r\n\r\n");
}

TEST(HttpResponseHead, AValueCannotStartAnotherField) {
  std::string head = response_head(answer(302, "", {{"Location", "/a\r\nSet-Cookie: x=1"}}), 11, true);
  EXPECT_NE(head.find("\r\nLocation: /a  Set-Cookie: x=1\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("\r\nSet-Cookie"), std::string::npos);
}

// RFC 9110 §6.4.1: 1xx, 204 and 304 never have content, so they say no length and are sent without a body.
TEST(HttpResponseHead, NoContentStatusesCarryNoLength) {
  for (int status : {101, 204, 304}) {
    EXPECT_FALSE(answers_with_content(status));
    EXPECT_EQ(response_head(answer(status, ""), 11, true).find("Content-Length"), std::string::npos) << status;
  }
  for (int status : {200, 202, 404, 500}) EXPECT_TRUE(answers_with_content(status));
}

}  // namespace
}  // namespace tayori::api
