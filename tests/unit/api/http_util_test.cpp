// api/http_util.hpp: media types and multipart/form-data fields, as the API reads request bodies.
#include <gtest/gtest.h>

#include <string>

#include "api/http_util.hpp"

namespace tayori::api {
namespace {

TEST(MediaType, MatchesWithParametersAndInAnyCase) {
  EXPECT_TRUE(is_json("application/json"));
  EXPECT_TRUE(is_json("Application/JSON; charset=utf-8"));
  EXPECT_FALSE(is_json("application/json-patch+json"));
  EXPECT_TRUE(has_media_type(" multipart/form-data ; boundary=x", "multipart/form-data"));
  EXPECT_FALSE(has_media_type("text/plain; x=multipart/form-data", "multipart/form-data"));
}

// RFC 7578: a field is a part whose Content-Disposition names it; the boundary may be quoted or not.
TEST(MultipartFormField, ReadsTheNamedPartOnly) {
  const std::string body =
      "preamble\r\n--XyZ\r\nContent-Disposition: form-data; filename=\"List-Unsubscribe\"; name=\"file\"\r\n\r\n"
      "One-Click\r\n--XyZ\r\ncontent-disposition: form-data; name=List-Unsubscribe\r\nContent-Type: text/plain\r\n"
      "\r\nOne-Click\r\n--XyZ--\r\n";
  EXPECT_EQ(multipart_form_field("multipart/form-data; boundary=XyZ", body, "List-Unsubscribe"), "One-Click");
  EXPECT_EQ(multipart_form_field("multipart/form-data; boundary=\"XyZ\"", body, "file"), "One-Click");
  EXPECT_EQ(multipart_form_field("multipart/form-data; boundary=XyZ", body, "missing"), std::nullopt);
  // Not multipart, no boundary, another boundary, or a part never closed: no field.
  EXPECT_EQ(multipart_form_field("application/x-www-form-urlencoded", body, "file"), std::nullopt);
  EXPECT_EQ(multipart_form_field("multipart/form-data", body, "file"), std::nullopt);
  EXPECT_EQ(multipart_form_field("multipart/form-data; boundary=Other", body, "file"), std::nullopt);
  EXPECT_EQ(multipart_form_field("multipart/form-data; boundary=XyZ",
                                 "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue", "a"),
            std::nullopt);
}

}  // namespace
}  // namespace tayori::api
