// The one error type of the data path (docs/architecture.md §6 "Errors"): a function that can fail for a
// reason its caller must answer returns Result<T>, a value or an Error; an asynchronous one hands a Result<T>
// to its completion. An Error carries a code the caller branches on (an HTTP status, a retry), the field or
// rule that caused it, and the message a person reads.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tayori {

enum class ErrorCode {
  invalid,      // the input broke a rule: the caller's to fix, retrying the same input fails again
  not_found,    // what was named does not exist
  gone,         // what was named existed and no longer does (purged past retention, erased)
  conflict,     // the data broke a rule of the stored state (a constraint)
  unavailable,  // the store or a dependency cannot serve now (down, full, busy, stopping): retrying may work
  internal,     // a failure of ours or of a library that the input does not explain
};

// A stable word for each code, for logs and answers ("unavailable").
constexpr std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid: return "invalid";
    case ErrorCode::not_found: return "not_found";
    case ErrorCode::gone: return "gone";
    case ErrorCode::conflict: return "conflict";
    case ErrorCode::unavailable: return "unavailable";
    case ErrorCode::internal: return "internal";
  }
  return "internal";
}

struct Error {
  Error() = default;
  Error(ErrorCode c, std::string m, std::string f = {}) : code(c), message(std::move(m)), field(std::move(f)) {}

  ErrorCode code = ErrorCode::internal;
  std::string message;  // what a person reads: what failed and, where known, why
  std::string field;    // the field or rule that caused it; empty when no one field did
};

namespace result_detail {
// Reading the value of a failed Result (or the error of a successful one) is a programming error, not a
// failure to answer: it stops the process at the line that did it, in every build type, rather than reading
// a value that is not there.
[[noreturn]] inline void misuse(const char* what) {
  std::fputs(what, stderr);
  std::fputc('\n', stderr);
  std::abort();
}
}  // namespace result_detail

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return *checked_value(); }
  const T& value() const& { return *checked_value(); }
  // From a temporary, the value itself, not a reference into it: `for (auto& r : store.claim_due(...).value())`
  // would otherwise iterate a vector destroyed with the temporary Result (a range-for keeps only the reference).
  T value() && { return std::move(*checked_value()); }
  T* operator->() { return checked_value(); }
  const T* operator->() const { return checked_value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    const Error* e = std::get_if<1>(&state_);
    if (e == nullptr) result_detail::misuse("Result::error() called on a success");
    return *e;
  }

 private:
  T* checked_value() {
    T* v = std::get_if<0>(&state_);
    if (v == nullptr) result_detail::misuse("Result::value() called on a failure");
    return v;
  }
  const T* checked_value() const {
    const T* v = std::get_if<0>(&state_);
    if (v == nullptr) result_detail::misuse("Result::value() called on a failure");
    return v;
  }

  std::variant<T, Error> state_;
};

// Success without a value, or an Error. Default-constructed, it is a success.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }

  const Error& error() const {
    if (!failed_) result_detail::misuse("Result::error() called on a success");
    return error_;
  }

 private:
  Error error_;
  bool failed_ = false;
};

}  // namespace tayori
