// Every safetensors rule, one generated bad file per defect: each must give a format_error that
// names the file (and the tensor where there is one), never a crash.
#include <gtest/gtest.h>

#include "kernels/error.hpp"
#include "src/safetensors.hpp"
#include "tests/core/fixtures.hpp"

namespace umload::test {
namespace {

struct bad_file {
  std::string name;
  std::string bytes;          // the whole file
  std::string expect_tensor;  // a tensor name the message must carry ("" for none)
  std::string expect_text;    // a phrase the message must carry
};

std::string file_of(const std::string& header, std::uint64_t data_bytes) {
  return le64(header.size()) + header + std::string(data_bytes, '\x22');
}

std::vector<bad_file> bad_files() {
  const std::string ok_a = R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})";
  std::vector<bad_file> cases = {
      {"truncated", "abc", "", "too short"},
      {"header_past_eof", le64(500) + "{}", "", "runs past the end"},
      {"huge_header_length", le64(200'000'000) + std::string(16, ' '), "", "exceeds the limit"},
      {"bad_utf8",
       file_of("{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1), "",
       "not valid UTF-8 JSON"},
      {"bad_json", file_of("{\"a\":{\"dtype\":", 0), "", "not valid UTF-8 JSON"},
      {"not_object", file_of("[1,2,3]", 0), "", "does not start with '{'"},
      {"unknown_dtype", file_of(R"({"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,4]}})", 4), "a",
       "unknown dtype 'Q4'"},
      {"gap", file_of("{" + ok_a + R"(,"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})", 12),
       "b", "gap"},
      {"overlap",
       file_of("{" + ok_a + R"(,"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", 6), "b",
       "overlap"},
      {"size_mismatch", file_of(R"({"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,4]}})", 4),
       "a", "size mismatch"},
      {"trailing_bytes", file_of("{" + ok_a + "}", 9), "a", "trailing bytes"},
      {"data_past_eof", file_of(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}})", 8),
       "a", "past the end of the data buffer"},
      {"duplicate_name", file_of("{" + ok_a + "," + ok_a + "}", 4), "a", "appears twice"},
      {"absurd_dims",
       file_of(
           R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})",
           4),
       "a", "absurdly large"},
      {"negative_dim", file_of(R"({"a":{"dtype":"U8","shape":[-4],"data_offsets":[0,4]}})", 4), "a",
       "not a non-negative integer"},
      {"float_dim", file_of(R"({"a":{"dtype":"U8","shape":[4.5],"data_offsets":[0,4]}})", 4), "a",
       "not a non-negative integer"},
      {"end_before_begin", file_of(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", 4),
       "a", "before begin"},
      {"sub_byte", file_of(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2), "a",
       "whole bytes"},
      {"missing_offsets", file_of(R"({"a":{"dtype":"U8","shape":[4]}})", 4), "a", "data_offsets"},
      {"unknown_field",
       file_of(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"x":1}})", 4), "a",
       "unknown field"},
      {"metadata_not_string", file_of(R"({"__metadata__":{"k":1}})", 0), "", "not a string"},
      {"too_deep", file_of(R"({"a":{"dtype":"U8","shape":[[[[[1]]]]],"data_offsets":[0,1]}})", 1),
       "", "nests deeper"},
      {"rank_limit",
       file_of(R"({"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})", 1), "a",
       "exceeds the limit"},
  };
  return cases;
}

class bad_safetensors : public ::testing::TestWithParam<bad_file> {};

TEST_P(bad_safetensors, is_refused_with_file_and_tensor_named) {
  temp_dir dir;
  const auto& c = GetParam();
  const fs::path path = dir / (c.name + ".safetensors");
  write_bytes(path, c.bytes);
  try {
    read_safetensors_header(path);
    FAIL() << "accepted a bad file: " << c.name;
  } catch (const format_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path.string()), std::string::npos) << what;
    if (!c.expect_tensor.empty()) {
      EXPECT_NE(what.find("tensor '" + c.expect_tensor + "'"), std::string::npos) << what;
    }
    EXPECT_NE(what.find(c.expect_text), std::string::npos) << what;
    EXPECT_EQ(e.code(), exit_code::format);
  }
}

INSTANTIATE_TEST_SUITE_P(every_rule, bad_safetensors, ::testing::ValuesIn(bad_files()),
                         [](const auto& info) { return info.param.name; });

TEST(safetensors, reads_a_valid_file_with_padding_metadata_and_zero_size_tensors) {
  temp_dir dir;
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[4,16]},)"
      R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0,7],"data_offsets":[16,16]}})"
      "      ";
  write_safetensors(dir / "ok.safetensors", header, 16);
  const auto h = read_safetensors_header(dir / "ok.safetensors");
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[1].name, "b");
  EXPECT_EQ(h.find("b")->shape, (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(h.find("b")->type, dtype::BF16);
  EXPECT_EQ(h.find("z")->bytes(), 0u);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.data_offset, 8 + header.size());
}

TEST(safetensors, writer_output_is_read_back_aligned_and_padded) {
  temp_dir dir;
  const std::string header = make_safetensors_header(
      {{"w", dtype::F32, {3}, 12}, {"b", dtype::BF16, {2}, 4}, {"u", dtype::U8, {5}, 5}},
      {{"format", "pt"}});
  EXPECT_EQ((header.size() - 8) % 8, 0u);
  write_bytes(dir / "w.safetensors", header + std::string(21, '\0'));
  const auto h = read_safetensors_header(dir / "w.safetensors");
  EXPECT_EQ(h.find("w")->begin, 0u);
  EXPECT_EQ(h.find("b")->begin, 12u);
  EXPECT_EQ(h.find("u")->begin, 16u);
  EXPECT_EQ(h.data_offset % 8, 0u);
}

TEST(safetensors, every_dtype_parses_and_has_its_width) {
  for (const char* name : {"BOOL", "U8",  "I8",   "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16",
                           "U16",  "F16", "BF16", "I32",     "U32",     "F32",     "F64",
                           "I64",  "U64", "C64",  "F4",      "F6_E2M3", "F6_E3M2"}) {
    const auto d = parse_dtype(name);
    ASSERT_TRUE(d) << name;
    EXPECT_EQ(to_string(*d), name);
    EXPECT_GT(element_bits(*d), 0u);
  }
  EXPECT_EQ(element_bits(*parse_dtype("BF16")), 16u);
  EXPECT_EQ(element_bits(*parse_dtype("F4")), 4u);
  EXPECT_FALSE(parse_dtype("bf16"));
}

}  // namespace
}  // namespace umload::test
