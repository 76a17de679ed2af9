// The transport's own HTTP/1.1 client on bytes alone (gateway/transport/http1_wire.hpp): which requests it
// carries, what it writes, and how it reads answers -- whole, split at every byte, and hostile.
#include "transport/http1_wire.hpp"

#include <curl/curl.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace tayori::transport {
namespace {

using State = Http1ResponseReader::State;

TEST(Http1Target, ReadsOriginAndTargetOfAnHttpUrl) {
  auto t = parse_http1_target("http://API.Example.jp:8080/2010-04-01/Accounts/AC1/Messages.json?x=1#frag");
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->tls);
  EXPECT_EQ(t->host, "api.example.jp");
  EXPECT_EQ(t->port, 8080);
  EXPECT_EQ(t->host_header, "api.example.jp:8080");
  EXPECT_EQ(t->target, "/2010-04-01/Accounts/AC1/Messages.json?x=1");
  EXPECT_EQ(t->origin(), "http://api.example.jp:8080");

  t = parse_http1_target("http://127.0.0.1");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->port, 80);
  EXPECT_EQ(t->host_header, "127.0.0.1");
  EXPECT_EQ(t->target, "/");
  EXPECT_EQ(parse_http1_target("http://h?q=1")->target, "/?q=1");

  t = parse_http1_target("https://[::1]:8443/x");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->tls);
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->host_header, "[::1]:8443");
  EXPECT_EQ(t->origin(), "https://[::1]:8443");
  EXPECT_EQ(parse_http1_target("https://h/")->host_header, "h");
}

TEST(Http1Target, RefusesWhatItCannotCarryFaithfully) {
  for (const char* url :
       {"ftp://h/", "http://", "http:///x", "http://user:pw@h/", "http://h:0/", "http://h:65536/", "http://h:8o/",
        "http://h/a b", "http://h/a\r\nX: 1", "http://[::1/", "http://[zz]/", "http://h%41/", "http://h/\x7f"})
    EXPECT_FALSE(parse_http1_target(url)) << url;
}

TEST(Http1Client, CarriesHttp1RequestsOnlyAndLeavesTheRestToLibcurl) {
  const Http1Routing none;
  Request r;
  r.method = "POST";
  r.url = "http://127.0.0.1:9/x";
  ASSERT_TRUE(own_client_target(r, none));
  EXPECT_EQ(own_client_target(r, none)->target, "/x") << "the target the client goes to, parsed once";
  r.http_version = HttpVersion::Http1_1;
  EXPECT_TRUE(own_client_target(r, none));
  r.http_version = HttpVersion::Http2Tls;  // over cleartext that is HTTP/1.1 (CURL_HTTP_VERSION_2TLS)
  EXPECT_TRUE(own_client_target(r, none));
  Http1Routing proxied;
  proxied.proxy_for_http = true;
  EXPECT_FALSE(own_client_target(r, proxied)) << "a proxy in the environment: libcurl uses it";
  proxied.proxy_for_http = false;
  proxied.proxy_for_https = true;
  EXPECT_TRUE(own_client_target(r, proxied)) << "the proxy for the other scheme";

  Request h2c = r;
  h2c.http_version = HttpVersion::Http2PriorKnowledge;
  EXPECT_FALSE(own_client_target(h2c, none));
  Request smtp = r;
  smtp.kind = RequestKind::Smtp;
  EXPECT_FALSE(own_client_target(smtp, none));
  for (const char* framing : {"Content-Length", "transfer-encoding", "Connection", "Upgrade", "TE"}) {
    Request own = r;
    own.headers = {{"X-A", "1"}, {framing, "x"}};
    EXPECT_FALSE(own_client_target(own, none)) << framing;
  }
  Request userinfo = r;
  userinfo.url = "http://u:p@127.0.0.1:9/x";
  EXPECT_FALSE(own_client_target(userinfo, none));
}

// Over TLS the protocol is ALPN's choice: HTTP/2 where the server offers it (APNs requires it). The own client
// offers HTTP/1.1 alone, so it takes an https:// request only when HTTP/1.1 is what libcurl would speak too.
TEST(Http1Client, CarriesHttpsOnlyWhereHttp1IsAskedForOrTheOriginAnsweredInIt) {
  const Http1Routing none;
  Http1Routing learned;
  learned.origins_answering_http1 = {"https://api.example.jp:443"};
  Request r;
  r.method = "POST";
  r.url = "https://API.example.jp/x";
  EXPECT_FALSE(own_client_target(r, none));
  EXPECT_TRUE(own_client_target(r, learned));
  Request elsewhere = r;
  elsewhere.url = "https://api.example.jp:8443/x";
  EXPECT_FALSE(own_client_target(elsewhere, learned)) << "another origin: another server";
  r.http_version = HttpVersion::Http2Tls;
  EXPECT_FALSE(own_client_target(r, none));
  EXPECT_TRUE(own_client_target(r, learned));
  r.http_version = HttpVersion::Http1_1;
  EXPECT_TRUE(own_client_target(r, none));
  learned.proxy_for_https = true;
  EXPECT_FALSE(own_client_target(r, learned));
}

TEST(Http1Request, WritesWhatLibcurlWrites) {
  const Http1Target target = *parse_http1_target("http://sim.local:8080/v1/send?a=1");
  Request r;
  r.method = "POST";
  r.headers = {
      {"Authorization", "Basic QUM6dA=="}, {"Content-Type", "application/x-www-form-urlencoded"}, {"X-Empty", ""}};
  r.body = "To=%2B81&Body=hi";
  EXPECT_EQ(write_http1_request(r, target, "tayori"),
            "POST /v1/send?a=1 HTTP/1.1\r\n"
            "Host: sim.local:8080\r\n"
            "User-Agent: tayori\r\n"
            "Accept: */*\r\n"
            "Authorization: Basic QUM6dA==\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "X-Empty:\r\n"
            "Content-Length: 16\r\n"
            "\r\n"
            "To=%2B81&Body=hi");

  Request get;
  get.headers = {{"accept", "application/json"}, {"HOST", "other"}, {"user-agent", "mine"}};
  EXPECT_EQ(write_http1_request(get, target, "tayori"),
            "GET /v1/send?a=1 HTTP/1.1\r\naccept: application/json\r\nHOST: other\r\nuser-agent: mine\r\n\r\n");

  Request put;  // an empty PUT still says its length; a HEAD never sends a body
  put.method = "PUT";
  EXPECT_EQ(write_http1_request(put, target, ""),
            "PUT /v1/send?a=1 HTTP/1.1\r\nHost: sim.local:8080\r\nAccept: */*\r\nContent-Length: 0\r\n\r\n");
  Request head;
  head.method = "HEAD";
  head.body = "ignored";
  EXPECT_EQ(write_http1_request(head, target, ""),
            "HEAD /v1/send?a=1 HTTP/1.1\r\nHost: sim.local:8080\r\nAccept: */*\r\n\r\n");
  Request del;
  del.method = "DELETE";
  EXPECT_EQ(write_http1_request(del, target, "").find("Content-Length"), std::string::npos);
}

// Feeds `bytes` whole, then one byte at a time, and checks both readers end alike.
struct Read {
  State state;
  Response response;
  bool keep_alive;
  int error;
  size_t used;
};
Read read_response(const std::string& bytes, bool head, int64_t max_body, bool close_after, size_t step) {
  Http1ResponseReader reader(head, max_body);
  size_t used = 0;
  for (size_t at = 0; at < bytes.size() && reader.state() == State::Reading; at += step) {
    const std::string_view piece = std::string_view(bytes).substr(at, step);
    used += reader.feed(piece);
  }
  if (close_after) reader.end_of_stream();
  const bool keep = reader.state() == State::Done && reader.keep_alive();
  const int error = reader.error();
  const State state = reader.state();
  return {state, reader.take_response(), keep, error, used};
}

Read read_both_ways(const std::string& bytes, bool head = false, int64_t max_body = 1 << 20, bool close_after = false) {
  Read whole = read_response(bytes, head, max_body, close_after, bytes.size() + 1);
  Read bytewise = read_response(bytes, head, max_body, close_after, 1);
  EXPECT_EQ(whole.state, bytewise.state) << bytes;
  EXPECT_EQ(whole.response.status, bytewise.response.status) << bytes;
  EXPECT_EQ(whole.keep_alive, bytewise.keep_alive) << bytes;
  EXPECT_EQ(whole.error, bytewise.error) << bytes;
  if (whole.state == State::Failed) return whole;  // where it stopped reading differs; what it read is thrown away
  EXPECT_EQ(whole.response.body, bytewise.response.body) << bytes;
  EXPECT_EQ(whole.response.headers, bytewise.response.headers) << bytes;
  EXPECT_EQ(whole.used, bytewise.used) << bytes;
  return whole;
}

TEST(Http1Response, ReadsALengthDelimitedAnswerAndKeepsTheConnection) {
  Read r = read_both_ways(
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Twilio-Request-Id:  RQ1 \r\n"
      "Content-Length: 11\r\n\r\n{\"sid\":\"S\"}");
  ASSERT_EQ(r.state, State::Done);
  EXPECT_EQ(r.response.status, 201);
  EXPECT_EQ(r.response.http_version_used, "1.1");
  EXPECT_EQ(r.response.body, "{\"sid\":\"S\"}");
  EXPECT_EQ(r.response.header("x-twilio-request-id"), "RQ1");
  EXPECT_EQ(r.response.header("content-type"), "application/json");
  EXPECT_TRUE(r.keep_alive);
}

TEST(Http1Response, ReadsChunkedBodiesWithExtensionsAndTrailers) {
  Read r = read_both_ways(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
      "5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n");
  ASSERT_EQ(r.state, State::Done);
  EXPECT_EQ(r.response.body, "hello 0123456789");
  EXPECT_TRUE(r.keep_alive);
  EXPECT_EQ(r.response.header("x-trailer"), "") << "trailer fields are not the response's fields";
}

TEST(Http1Response, SkipsInterimAnswersAndKeepsOnlyTheFinalFields) {
  Read r = read_both_ways("HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\nHTTP/1.1 204 No Content\r\nX-Final: 2\r\n\r\n");
  ASSERT_EQ(r.state, State::Done);
  EXPECT_EQ(r.response.status, 204);
  EXPECT_EQ(r.response.header("x-early"), "");
  EXPECT_EQ(r.response.header("x-final"), "2");
}

TEST(Http1Response, KnowsWhichAnswersHaveNoBody) {
  // HEAD, 204 and 304 end at their head whatever Content-Length says (RFC 9112 §6.3 items 1-2).
  Read head = read_both_ways("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", true);
  EXPECT_EQ(head.state, State::Done);
  EXPECT_TRUE(head.keep_alive);
  EXPECT_EQ(read_both_ways("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n").state, State::Done);
}

TEST(Http1Response, ABodyWithoutLengthRunsToTheCloseAndTheConnectionGoes) {
  Read open = read_both_ways("HTTP/1.1 200 OK\r\n\r\npartial");
  EXPECT_EQ(open.state, State::Reading);
  Read closed = read_both_ways("HTTP/1.1 200 OK\r\n\r\nall of it", false, 1 << 20, true);
  ASSERT_EQ(closed.state, State::Done);
  EXPECT_EQ(closed.response.body, "all of it");
  EXPECT_FALSE(closed.keep_alive);
}

TEST(Http1Response, PersistenceFollowsVersionAndConnectionField) {
  EXPECT_FALSE(read_both_ways("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
  EXPECT_FALSE(read_both_ways("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
  Read ka = read_both_ways("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(ka.keep_alive);
  EXPECT_EQ(ka.response.http_version_used, "1.0");
  // Both framings: chunked wins, and the connection is not trusted again (RFC 9112 §6.1).
  Read both =
      read_both_ways("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n");
  EXPECT_EQ(both.response.body, "ab");
  EXPECT_FALSE(both.keep_alive);
}

TEST(Http1Response, StopsAtTheEndOfTheAnswerAndLeavesWhatFollows) {
  const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  Read r = read_both_ways(answer + "HTTP/1.1 200 OK\r\n");
  EXPECT_EQ(r.state, State::Done);
  EXPECT_EQ(r.used, answer.size());
}

TEST(Http1Response, RefusesWhatCouldBeReadTwoWays) {
  for (const char* bad :
       {"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 099 x\r\n\r\n",
        "ICY 200 OK\r\n\r\n", "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",  // whitespace before the colon
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "HTTP/1.1 200 OK\r\n: empty\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n"}) {
    Read r = read_both_ways(bad);
    EXPECT_EQ(r.state, State::Failed) << bad;
    EXPECT_EQ(r.error, CURLE_WEIRD_SERVER_REPLY) << bad;
  }
  // Repeated equal lengths are one length (RFC 9110 §8.6).
  EXPECT_EQ(read_both_ways("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok").state, State::Done);
}

TEST(Http1Response, HoldsTheBodyAndHeadLimits) {
  EXPECT_EQ(read_both_ways("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", false, 10).error, CURLE_WRITE_ERROR);
  EXPECT_EQ(read_both_ways("HTTP/1.1 200 OK\r\n\r\n01234567890", false, 10).error, CURLE_WRITE_ERROR);
  EXPECT_EQ(
      read_both_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\n", false, 10).error,
      CURLE_WRITE_ERROR);
  EXPECT_EQ(read_both_ways("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", false, 10).state, State::Done);
  const std::string huge_field = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(101 * 1024, 'a') + "\r\n\r\n";
  Read r = read_response(huge_field, false, 1 << 20, false, 4096);
  EXPECT_EQ(r.error, CURLE_WEIRD_SERVER_REPLY);
  // Many small chunks are no long head: the limit counts each chunk-size line on its own.
  std::string chunks = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 40'000; ++i) chunks += "1\r\nx\r\n";
  chunks += "0\r\n\r\n";
  Read many = read_response(chunks, false, 1 << 20, false, 8192);
  EXPECT_EQ(many.state, State::Done);
  EXPECT_EQ(many.response.body.size(), 40'000u);
}

TEST(Http1Response, AConnectionThatEndsEarlySaysHowFarItGot) {
  Read nothing = read_both_ways("", false, 1 << 20, true);
  EXPECT_EQ(nothing.error, CURLE_GOT_NOTHING);
  EXPECT_EQ(read_both_ways("HTTP/1.1 200 OK\r\nContent-Len", false, 1 << 20, true).error, CURLE_WEIRD_SERVER_REPLY);
  EXPECT_EQ(read_both_ways("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", false, 1 << 20, true).error,
            CURLE_PARTIAL_FILE);
  EXPECT_EQ(read_both_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", false, 1 << 20, true).error,
            CURLE_PARTIAL_FILE);
}

TEST(Http1Response, AcceptsBareLineFeedsAndAMissingReason) {
  Read r = read_both_ways("HTTP/1.1 200\nContent-Length: 2\n\nok");
  ASSERT_EQ(r.state, State::Done);
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.body, "ok");
}

TEST(Http1Client, ProxyVariablesAreSeenPerScheme) {
  const char* names[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
  std::vector<std::pair<std::string, std::string>> saved;
  for (const char* n : names)
    if (const char* v = std::getenv(n)) saved.emplace_back(n, v);
  for (const char* n : names) ::unsetenv(n);
  EXPECT_FALSE(proxy_in_environment(false));
  EXPECT_FALSE(proxy_in_environment(true));
  ::setenv("HTTPS_PROXY", "http://proxy:3128", 1);
  EXPECT_FALSE(proxy_in_environment(false));
  EXPECT_TRUE(proxy_in_environment(true));
  ::unsetenv("HTTPS_PROXY");
  ::setenv("ALL_PROXY", "http://proxy:3128", 1);
  EXPECT_TRUE(proxy_in_environment(false));
  EXPECT_TRUE(proxy_in_environment(true));
  ::unsetenv("ALL_PROXY");
  for (const auto& [n, v] : saved) ::setenv(n.c_str(), v.c_str(), 1);
}

}  // namespace
}  // namespace tayori::transport
