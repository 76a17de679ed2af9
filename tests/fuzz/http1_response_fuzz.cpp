// A provider's answer as the transport's own HTTP/1.1 client reads it (gateway/transport/http1_wire.hpp): any
// bytes from the connection, cut into pieces where the input says, because a socket gives a response in
// whatever pieces the network made. The reader must never read past what it was given, must end the same
// whether the bytes came at once or in pieces, and a response it calls done must be one it could send on:
// a status from 100 to 599 (never an interim one), a version it knows, a body within the limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "transport/http1_wire.hpp"

namespace {

using tayori::transport::Http1ResponseReader;
using State = Http1ResponseReader::State;

struct Outcome {
  State state;
  int error;
  int status;
  std::string body;
  bool keep_alive;
  size_t used;
};

Outcome read(std::string_view bytes, const std::vector<size_t>& cuts, bool head, int64_t max_body, bool close) {
  Http1ResponseReader reader(head, max_body);
  size_t at = 0, used = 0;
  for (size_t cut : cuts) {
    if (reader.state() != State::Reading || at >= bytes.size()) break;
    const std::string_view piece = bytes.substr(at, cut);
    const size_t took = reader.feed(piece);
    if (took > piece.size()) std::abort();
    if (took < piece.size() && reader.state() == State::Reading) std::abort();  // stopped without an end
    used += took;
    at += piece.size();
  }
  if (reader.state() == State::Reading && at < bytes.size()) used += reader.feed(bytes.substr(at));
  if (close) reader.end_of_stream();
  const State state = reader.state();
  const int error = reader.error();
  const bool keep = state == State::Done && reader.keep_alive();
  tayori::transport::Response r = reader.take_response();
  if (state == State::Done) {
    if (r.status < 200 || r.status > 599) std::abort();  // interim (1xx) answers are read past, never returned
    if (r.http_version_used != "1.1" && r.http_version_used != "1.0") std::abort();
    if (static_cast<int64_t>(r.body.size()) > max_body) std::abort();
    if (head && !r.body.empty()) std::abort();
  }
  if (state == State::Failed && error == 0) std::abort();
  return {state, error, r.status, std::move(r.body), keep, used};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool head = data[0] & 1;
  const bool close = data[0] & 2;
  const int64_t max_body = (data[0] & 4) ? 16 : 1 << 20;
  const size_t step = 1 + data[1] % 17;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  std::vector<size_t> cuts(bytes.size() / step + 1, step);
  const Outcome whole = read(bytes, {bytes.size() + 1}, head, max_body, close);
  const Outcome pieces = read(bytes, cuts, head, max_body, close);
  if (whole.state != pieces.state || whole.error != pieces.error) std::abort();
  if (whole.state == State::Done && (whole.status != pieces.status || whole.body != pieces.body ||
                                     whole.keep_alive != pieces.keep_alive || whole.used != pieces.used))
    std::abort();
  return 0;
}
