// api/api.hpp: how the data path's Error becomes an answer (RFC 9457 problem details, RFC 9110 §15 statuses):
// one place maps a code to its status, for every route.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "api/api.hpp"

namespace tayori::api {
namespace {

using Json = nlohmann::json;

std::string header(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

TEST(ErrorProblem, EachCodeHasItsStatusAndTitleAndAFieldBecomesThePointer) {
  const struct {
    ErrorCode code;
    int status;
    const char* title;
  } cases[] = {{ErrorCode::invalid, 400, "Bad Request"},
               {ErrorCode::not_found, 404, "Not Found"},
               {ErrorCode::conflict, 409, "Conflict"},
               {ErrorCode::gone, 410, "Gone"},
               {ErrorCode::unavailable, 503, "Service Unavailable"},
               {ErrorCode::internal, 500, "Internal Server Error"}};
  for (const auto& c : cases) {
    HttpResponse r = error_problem(Error(c.code, "what went wrong"));
    EXPECT_EQ(r.status, c.status) << to_string(c.code);
    EXPECT_EQ(r.content_type, "application/problem+json");
    Json body = Json::parse(r.body);
    EXPECT_EQ(body["title"], c.title);
    EXPECT_EQ(body["status"], c.status);
    EXPECT_EQ(body["detail"], "what went wrong");
    EXPECT_FALSE(body.contains("errors"));
  }
  Json with_field = Json::parse(error_problem(Error(ErrorCode::invalid, "must be a string", "/option")).body);
  ASSERT_EQ(with_field["errors"].size(), 1u);
  EXPECT_EQ(with_field["errors"][0]["pointer"], "/option");
  EXPECT_EQ(with_field["errors"][0]["detail"], "must be a string");
}

// The answer to a write: a store that cannot take it is a 503 naming what was not recorded, to be retried; any
// other code answers as it would anywhere.
TEST(ErrorProblem, AnUnavailableStoreNamesWhatItCouldNotRecordAndAsksForARetry) {
  HttpResponse r = error_problem(Error(ErrorCode::unavailable, "database or disk is full"), "the response");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(header(r, "Retry-After"), "1");
  const std::string detail = Json::parse(r.body)["detail"];
  EXPECT_NE(detail.find("the store could not record the response"), std::string::npos) << detail;
  EXPECT_NE(detail.find("database or disk is full"), std::string::npos) << detail;

  HttpResponse gone = error_problem(Error(ErrorCode::gone, "the message was erased"), "the response");
  EXPECT_EQ(gone.status, 410);
  EXPECT_EQ(header(gone, "Retry-After"), "");
}

}  // namespace
}  // namespace tayori::api
