// Which SMTP connections the transport's pool may share: the key it files a connection under takes libcurl's
// default port for the scheme when the URL names none, and the host case-folded. (Delivery over a real SMTP
// server: tests/integration/transport/smtp_transport_test.cpp.)
#include <gtest/gtest.h>

#include <string>

#include "transport/outbound_transport.hpp"

namespace tayori::transport {
namespace {

TEST(SmtpPoolKey, DefaultsToLibcurlPorts) {
  auto key = [](std::string url) {
    Request r;
    r.kind = RequestKind::Smtp;
    r.url = std::move(url);
    return OutboundTransport::pool_key_for(r);
  };
  EXPECT_EQ(key("smtp://Mail.Example.jp"), "smtp://mail.example.jp:25");
  EXPECT_EQ(key("smtp://mail.example.jp:587/ehlo.example.jp"), "smtp://mail.example.jp:587");
  EXPECT_EQ(key("smtps://mail.example.jp"), "smtps://mail.example.jp:465");
}

}  // namespace
}  // namespace tayori::transport
