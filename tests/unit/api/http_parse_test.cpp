// api::parse_request: the server's parser, limits and conversion without a socket (what the HTTP head's
// fuzz target drives): a request as handlers see it, nothing for a request not yet complete, and the
// server's own answers for what it refuses.
#include <gtest/gtest.h>

#include <string>

#include "api/http_server.hpp"

namespace tayori::api {
namespace {

TEST(HttpParse, ARequestBecomesWhatHandlersSee) {
  ParsedRequest p = parse_request(
      "POST /v1/messages?dry=1&x=%20 HTTP/1.1\r\nHost: gw\r\nX-Custom: Value\r\nContent-Length: 2\r\n\r\n{}", {});
  ASSERT_TRUE(p.request);
  EXPECT_EQ(p.request->method, "POST");
  EXPECT_EQ(p.request->target, "/v1/messages?dry=1&x=%20");
  EXPECT_EQ(p.request->path, "/v1/messages");
  EXPECT_EQ(p.request->query, "dry=1&x=%20");
  EXPECT_EQ(p.request->header("x-custom"), "Value");
  EXPECT_EQ(p.request->body, "{}");
}

TEST(HttpParse, AChunkedBodyIsJoined) {
  ParsedRequest p = parse_request(
      "POST /a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n3\r\na\":\r\n2\r\n1}\r\n0\r\n\r\n", {});
  ASSERT_TRUE(p.request);
  EXPECT_EQ(p.request->body, "{\"a\":1}");
}

TEST(HttpParse, AnIncompleteRequestIsNeitherAnsweredNorHandled) {
  for (const char* partial : {"", "GET / HTTP/1.1\r\nHost: g", "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"}) {
    SCOPED_TRACE(partial);
    ParsedRequest p = parse_request(partial, {});
    EXPECT_FALSE(p.request);
    EXPECT_EQ(p.status, 0);
  }
}

TEST(HttpParse, WhatTheServerRefusesGetsItsAnswer) {
  ServerLimits small;
  small.max_header_bytes = 64;
  small.max_body_bytes = 4;
  struct Case {
    std::string bytes;
    int status;
  } cases[] = {
      {"NOT HTTP\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nX-Long: " + std::string(100, 'a') + "\r\n\r\n", 431},
      {"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", 413},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.bytes);
    ParsedRequest p = parse_request(c.bytes, small);
    EXPECT_FALSE(p.request);
    EXPECT_EQ(p.status, c.status) << p.detail;
    EXPECT_FALSE(p.detail.empty());
  }
}

}  // namespace
}  // namespace tayori::api
