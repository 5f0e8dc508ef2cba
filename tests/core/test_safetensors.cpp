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
       "a", "more elements than 64 bits can count"},
      {"negative_dim", file_of(R"({"a":{"dtype":"U8","shape":[-4],"data_offsets":[0,4]}})", 4), "a",
       "not a non-negative integer"},
      {"float_dim", file_of(R"({"a":{"dtype":"U8","shape":[4.5],"data_offsets":[0,4]}})", 4), "a",
       "not a non-negative integer"},
      {"end_before_begin", file_of(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", 4),
       "a", "before begin"},
      {"sub_byte", file_of(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2), "a",
       "whole bytes"},
      {"missing_offsets", file_of(R"({"a":{"dtype":"U8","shape":[4]}})", 4), "a", "data_offsets"},
      {"missing_dtype", file_of(R"({"a":{"shape":[4],"data_offsets":[0,4]}})", 4), "a",
       "missing 'dtype'"},
      {"three_offsets", file_of(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4,4]}})", 4),
       "a", "more than two"},
      {"metadata_not_string", file_of(R"({"__metadata__":{"k":1}})", 0), "", "not a string"},
      {"metadata_array", file_of(R"({"__metadata__":[]})", 0), "", "neither an object nor null"},
      {"metadata_twice", file_of(R"({"__metadata__":{},"__metadata__":null})", 0), "",
       "appears twice"},
      {"nested_shape", file_of(R"({"a":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}})", 1),
       "a", "shape holds an array"},
      // The size that wraps: byte counts between 2^64 and 2^67 once passed for small ones.
      {"bytes_wrap_to_16",
       file_of(R"({"a":{"dtype":"U8","shape":[2,9223372036854775816],"data_offsets":[0,16]}})", 16),
       "a", "more elements than 64 bits can count"},
      {"bytes_wrap_to_0",
       file_of(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0),
       "a", "more elements than 64 bits can count"},
      {"f4_bytes_wrap_to_0",
       file_of(R"({"a":{"dtype":"F4","shape":[8589934592,4294967296],"data_offsets":[0,0]}})", 0),
       "a", "more elements than 64 bits can count"},
      {"bits_overflow",
       file_of(R"({"a":{"dtype":"U8","shape":[2305843009213693952],"data_offsets":[0,0]}})", 0),
       "a", "more bits than 64 bits can count"},
      // The reference multiplies in order: a 0 after the overflow does not save the shape.
      {"overflow_before_zero",
       file_of(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", 0),
       "a", "more elements than 64 bits can count"},
      // Bytes after the JSON value: nlohmann would stop at a NUL and never see them.
      {"nul_after_json", file_of("{" + ok_a + "}" + std::string(1, '\0'), 4), "",
       "NUL byte at byte 53"},
      {"nul_padding", file_of("{" + ok_a + "}" + std::string(10, '\0'), 4), "", "NUL byte"},
      {"nul_then_second_header",
       file_of("{" + ok_a + "}" + std::string(1, '\0') +
                   R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
               4),
       "", "NUL byte"},
      {"nul_then_bad_utf8", file_of("{" + ok_a + "}" + std::string(1, '\0') + "\xff\xfe", 4), "",
       "NUL byte"},
      {"text_after_json", file_of("{" + ok_a + "}x", 4), "", "not valid UTF-8 JSON"},
      {"form_feed_after_json", file_of("{" + ok_a + "}\f", 4), "", "not valid UTF-8 JSON"},
      {"form_feed_before_json", file_of("\f{" + ok_a + "}", 4), "", "does not start with '{'"},
      {"byte_order_mark", file_of("\xef\xbb\xbf{" + ok_a + "}", 4), "", "does not start with '{'"},
      // One field twice inside one entry: a first-wins reader would see another dtype.
      {"dtype_twice",
       file_of(R"({"a":{"dtype":"F16","dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", 4), "a",
       "field 'dtype' appears twice"},
      {"shape_twice",
       file_of(R"({"a":{"dtype":"U8","shape":[4],"shape":[2,2],"data_offsets":[0,4]}})", 4), "a",
       "field 'shape' appears twice"},
      {"offsets_twice",
       file_of(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"data_offsets":[0,4]}})", 4),
       "a", "field 'data_offsets' appears twice"},
      {"minus_zero_dim", file_of(R"({"a":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}})", 0),
       "a", "shape holds -0"},
      {"minus_zero_offset", file_of(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[-0,0]}})", 0),
       "a", "'data_offsets' holds -0"},
      // An ignored field still has to be JSON the reference reads: nested at most 127 deep in all
      // (the header's object, the entry's, then 125 here) and no number beyond a double.
      {"too_deep_array",
       file_of(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":)" +
                   std::string(126, '[') + std::string(126, ']') + "}}",
               1),
       "", "nests deeper than 127"},
      {"too_deep_object",
       [] {
         std::string deep;
         for (int i = 0; i < 126; ++i) deep += R"({"y":)";
         deep += "1" + std::string(126, '}');
         return file_of(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":)" + deep + "}}",
                        1);
       }(),
       "", "nests deeper than 127"},
      {"number_overflow",
       file_of(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1e400}})", 1), "",
       "not valid UTF-8 JSON"},
      // Deliberately stricter than the reference, which reads these (no writer makes them).
      {"empty_name", file_of(R"({"":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 4), "",
       "empty tensor name"},
      {"duplicate_name_differing",
       file_of("{" + ok_a + R"(,"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", 8), "a",
       "appears twice"},
      {"entry_is_array", file_of(R"({"a":["U8",[4],[0,4]]})", 4), "a", "entry is a JSON array"},
      {"dtype_is_object",
       file_of(R"({"a":{"dtype":{"U8":null},"shape":[4],"data_offsets":[0,4]}})", 4), "a",
       "'dtype' is an object"},
  };
  return cases;
}

void PrintTo(const bad_file& f, std::ostream* os) { *os << f.name; }

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

// Files the reference reader accepts and writers produce (or may: fields a newer writer adds).
struct good_file {
  std::string name;
  std::string header;
  std::uint64_t data_bytes;
};

std::vector<good_file> good_files() {
  const std::string ok_a = R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})";
  std::string deep_ok;  // 125 levels: 127 with the header's object and the entry's
  for (int i = 0; i < 125; ++i) deep_ok += R"({"y":)";
  deep_ok += "1" + std::string(125, '}');
  return {
      {"newline_before", "\n{" + ok_a + "}", 4},
      {"tab_cr_before_and_after", "\t\r\n {" + ok_a + "}\r\n\t ", 4},
      {"fnuz_dtypes",
       R"({"a":{"dtype":"F8_E4M3FNUZ","shape":[2,2],"data_offsets":[0,4]},"b":{"dtype":"F8_E5M2FNUZ","shape":[3],"data_offsets":[4,7]}})",
       7},
      {"metadata_null", R"({"__metadata__":null,)" + ok_a + "}", 4},
      {"metadata_key_twice_last_wins", R"({"__metadata__":{"k":"1","k":"2"},)" + ok_a + "}", 4},
      {"unknown_field",
       R"({"a":{"dtype":"U8","x":1,"shape":[4],"data_offsets":[0,4],"x":"again"}})", 4},
      {"unknown_field_nested",
       R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"x":{"y":[1,-0,1e300,{"z":null}],"dtype":7}}})",
       4},
      {"unknown_field_127_deep",
       R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"x":)" + deep_ok + "}}", 4},
      {"rank_9", R"({"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,4],"data_offsets":[0,4]}})", 4},
      {"rank_200",
       R"({"a":{"dtype":"U8","shape":[)" +
           [] {
             std::string dims;
             for (int i = 0; i < 199; ++i) dims += "1,";
             return dims + "4";
           }() +
           R"(],"data_offsets":[0,4]}})",
       4},
      {"zero_before_huge_dims",
       R"({"a":{"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", 0},
      {"largest_elements",
       R"({"a":{"dtype":"U8","shape":[18446744073709551615,0],"data_offsets":[0,0]}})", 0},
      {"nul_escape_in_name", R"({"a\u0000":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 4},
  };
}

void PrintTo(const good_file& f, std::ostream* os) { *os << f.name; }

class good_safetensors : public ::testing::TestWithParam<good_file> {};

TEST_P(good_safetensors, is_read) {
  temp_dir dir;
  const auto& c = GetParam();
  write_safetensors(dir / "ok.safetensors", c.header, c.data_bytes);
  const auto h = read_safetensors_header(dir / "ok.safetensors");
  EXPECT_FALSE(h.tensors.empty());
  EXPECT_EQ(h.data_bytes(), c.data_bytes);
}

INSTANTIATE_TEST_SUITE_P(writer_variants, good_safetensors, ::testing::ValuesIn(good_files()),
                         [](const auto& info) { return info.param.name; });

TEST(safetensors, reads_what_the_variants_say) {
  const auto parse = [](const std::string& header, std::uint64_t data) {
    const auto* json = reinterpret_cast<const std::byte*>(header.data());
    return parse_safetensors_header({json, header.size()}, 8 + header.size() + data,
                                    "x.safetensors");
  };
  const auto fnuz = parse(R"({"a":{"dtype":"F8_E4M3FNUZ","shape":[2,2],"data_offsets":[0,4]}})", 4);
  EXPECT_EQ(fnuz.find("a")->type, dtype::F8_E4M3FNUZ);
  EXPECT_TRUE(parse(R"({"__metadata__":null})", 0).metadata.empty());
  EXPECT_EQ(parse(R"({"__metadata__":{"k":"1","k":"2"}})", 0).metadata.at("k"), "2");
  const auto unknown =
      parse(R"({"a":{"x":{"shape":[9]},"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 4);
  EXPECT_EQ(unknown.find("a")->shape, (std::vector<std::uint64_t>{4}));
  EXPECT_EQ(unknown.find("a")->bytes(), 4u);
}

TEST(safetensors, elements_refuses_a_product_past_64_bits) {
  tensor_entry t;
  t.name = "w";
  t.shape = {3, 5, 7};
  EXPECT_EQ(t.elements(), 105u);
  t.shape = {4294967296ull, 4294967296ull};
  try {
    (void)t.elements();
    FAIL() << "a wrapped element count was returned";
  } catch (const format_error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'w'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[4294967296, 4294967296]"), std::string::npos)
        << e.what();
  }
  t.shape = {0, 4294967296ull, 4294967296ull};
  EXPECT_EQ(t.elements(), 0u);
}

TEST(dtype, one_row_per_stored_type_with_its_name_and_size) {
  for (const dtype d : {dtype::F8_E4M3, dtype::F8_E5M2, dtype::F8_E4M3FNUZ, dtype::F8_E5M2FNUZ}) {
    EXPECT_EQ(parse_dtype(to_string(d)), d);
    EXPECT_EQ(element_bits(d), 8u);
    EXPECT_EQ(element_bytes(d), 1u);
  }
  EXPECT_EQ(to_string(dtype::F8_E4M3), "F8_E4M3");
  EXPECT_EQ(element_bytes(dtype::BF16), 2u);
  EXPECT_EQ(element_bytes(dtype::C64), 8u);
  EXPECT_EQ(element_bits(dtype::F4), 4u);
  EXPECT_EQ(element_bytes(dtype::F4), 0u);
  EXPECT_EQ(element_bytes(dtype::F6_E3M2), 0u);
}

TEST(dtype, an_unknown_stored_dtype_is_an_error_naming_it) {
  EXPECT_EQ(parse_stored_dtype("F8_E4M3", "ckpt", "w"), dtype::F8_E4M3);
  try {
    (void)parse_stored_dtype("F7_E3M3", "ckpt", "model.layers.0.w");
    FAIL() << "an unknown dtype was given a value";
  } catch (const format_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'F7_E3M3'"), std::string::npos) << what;
    EXPECT_NE(what.find("ckpt: tensor 'model.layers.0.w'"), std::string::npos) << what;
  }
  EXPECT_THROW((void)parse_stored_dtype("bf16", "ckpt", "w"), format_error);
}

TEST(safetensors, parses_a_whole_file_held_in_memory) {
  const std::string header = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})";
  const std::string file = le64(header.size()) + header + "abcd";
  const auto h = parse_safetensors_file(std::as_bytes(std::span(file)), "mem.safetensors");
  EXPECT_EQ(h.find("a")->bytes(), 4u);
  const std::string short_length = le64(header.size() + 5) + header + "abcd";
  EXPECT_THROW(parse_safetensors_file(std::as_bytes(std::span(short_length)), "mem"), format_error);
  EXPECT_THROW(parse_safetensors_file(std::as_bytes(std::span(file).first(7)), "mem"),
               format_error);
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
  for (const char* name :
       {"BOOL", "U8",   "I8",      "F8_E5M2", "F8_E4M3",     "F8_E8M0",    "I16", "U16",
        "F16",  "BF16", "I32",     "U32",     "F32",         "F64",        "I64", "U64",
        "C64",  "F4",   "F6_E2M3", "F6_E3M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ"}) {
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
