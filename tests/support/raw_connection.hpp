// A raw TCP connection to a server on loopback, for requests curl would not send as they are: pipelined,
// malformed, or cut in pieces at chosen bytes.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace tayori::testing {

class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }
  bool send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  struct Read {
    std::string text;
    bool closed = false;  // the peer closed (or reset) the connection; false: `timeout` passed first
  };
  // What arrives until the peer closes, or until `timeout` passes with nothing new (a response that never
  // comes reads as "", not closed).
  Read read_until_closed(std::chrono::milliseconds timeout) {
    Read out;
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return out;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        out.closed = true;
        return out;
      }
      out.text.append(buf, static_cast<size_t>(n));
    }
  }
  // One keep-alive request's answer: what arrives until a full response head and `Content-Length` bytes.
  std::string exchange(const std::string& request, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    if (!send(request)) return "";
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      size_t end = out.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t at = out.find("Content-Length: ");
        size_t length = at == std::string::npos ? 0 : std::stoul(out.substr(at + 16));
        if (out.size() >= end + 4 + length) return out;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
  bool connected_ = false;
};

}  // namespace tayori::testing
