// The write side of convert: a file's writes split between its O_DIRECT and buffered descriptors
// give exactly the bytes asked for, wherever they start and whatever the buffer's alignment (and
// the same with direct I/O refused, as on tmpfs); the shard writer puts chunks submitted in any
// order in their place, syncs and renames each shard once complete, and on a failed write or a
// missing byte reports it to the caller and leaves no file behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include "kernels/error.hpp"
#include "src/backend.hpp"
#include "src/file.hpp"
#include "src/shard_writer.hpp"
#include "tests/core/fixtures.hpp"

namespace umload::test {
namespace {

constexpr std::size_t page = 4096;

std::string pattern(std::size_t bytes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(bytes, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// [0, total) cut into pieces of 1 byte to a few pages, in shuffled order.
std::vector<std::pair<std::uint64_t, std::uint64_t>> pieces(std::uint64_t total,
                                                            std::uint64_t max_piece,
                                                            std::mt19937_64& rng) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  std::uniform_int_distribution<std::uint64_t> size(1, max_piece);
  for (std::uint64_t at = 0; at < total;) {
    const std::uint64_t n = std::min(total - at, size(rng));
    out.push_back({at, n});
    at += n;
  }
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

class direct_write : public ::testing::TestWithParam<bool> {
 protected:
  void TearDown() override { detail::refuse_direct_io(false); }
};

TEST_P(direct_write, pieces_at_any_offset_and_alignment_give_the_bytes_asked_for) {
  const bool refuse = GetParam();
  detail::refuse_direct_io(refuse);
  temp_dir dir;
  const std::uint64_t total = 64 * page + 123;
  const std::string want = pattern(total, 5);
  std::mt19937_64 rng(17);
  file f = file::create(dir / "out", true);
  if (refuse) {
    EXPECT_FALSE(f.writes_direct());
  }
  // A page-aligned buffer; each piece is copied to the position whose offset within a page is
  // the piece's own (so its whole pages can go direct), every fourth one a byte further (so
  // they cannot).
  auto* buffer = static_cast<char*>(std::aligned_alloc(page, 8 * page));
  std::uint64_t direct = 0;
  int n = 0;
  for (const auto& [at, bytes] : pieces(total, 6 * page, rng)) {
    char* src = buffer + at % page + (++n % 4 == 0 ? 1 : 0);
    std::copy_n(want.data() + at, bytes, src);
    direct += f.write_exact(src, bytes, at);
  }
  std::free(buffer);
  f.sync();
  f.close();
  EXPECT_EQ(read_bytes(dir / "out"), want);
  if (refuse) {
    EXPECT_EQ(direct, 0u);
  } else if (file::create(dir / "probe", true).writes_direct()) {
    // Where the file system takes O_DIRECT, the aligned pieces' whole pages went through it.
    EXPECT_GT(direct, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(file, direct_write, ::testing::Values(false, true), [](const auto& info) {
  return info.param ? "direct_refused" : "direct_allowed";
});

std::vector<shard_layout> three_shards() {
  // Header lengths that leave the data at every kind of offset within a page.
  return {{"model-00001-of-00003.safetensors", pattern(8 + 93, 1), 5 * page + 17},
          {"model-00002-of-00003.safetensors", pattern(page, 2), 3 * page},
          {"model-00003-of-00003.safetensors", pattern(8 + 4001, 3), 2 * page - 5}};
}

TEST(shard_writer, chunks_in_any_order_land_in_place_and_every_shard_is_renamed) {
  temp_dir dir;
  auto engine = make_host_backend(1, cpu::isa::portable);
  const auto layouts = three_shards();
  std::mt19937_64 rng(3);
  struct piece {
    std::size_t shard;
    std::uint64_t offset, bytes;
  };
  std::vector<piece> all;
  std::vector<std::string> data;
  for (std::size_t s = 0; s < layouts.size(); ++s) {
    data.push_back(pattern(layouts[s].data_bytes, 10 + s));
    for (const auto& [at, bytes] : pieces(layouts[s].data_bytes, 3 * page, rng))
      all.push_back({s, at, bytes});
  }
  std::shuffle(all.begin(), all.end(), rng);
  {
    shard_writer writer(dir.path(), layouts, *engine, 2, 3 * page);
    for (const auto& p : all) {
      std::byte* chunk = writer.acquire(p.shard, p.offset, p.bytes);
      std::memcpy(chunk, data[p.shard].data() + p.offset, p.bytes);
      writer.submit(chunk, p.shard, p.offset, p.bytes);
    }
    writer.finish();
    const auto stats = writer.stats();
    EXPECT_EQ(stats.chunks, 2u);
    EXPECT_EQ(stats.direct_bytes + stats.buffered_bytes,
              layouts[0].header.size() + layouts[1].header.size() + layouts[2].header.size() +
                  layouts[0].data_bytes + layouts[1].data_bytes + layouts[2].data_bytes);
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path()))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 3u);
  for (std::size_t s = 0; s < layouts.size(); ++s) {
    EXPECT_EQ(names[s], layouts[s].name);
    EXPECT_TRUE(read_bytes(dir.path() / layouts[s].name) == layouts[s].header + data[s])
        << layouts[s].name;
  }
}

TEST(shard_writer, a_write_failure_reaches_the_caller_and_leaves_nothing) {
  temp_dir dir;
  auto engine = make_host_backend(1, cpu::isa::portable);
  const auto layouts = three_shards();
  try {
    shard_writer writer(dir.path(), layouts, *engine, 2, page);
    detail::inject_write_fault(2 * page, ENOSPC);
    // The failure comes back from whichever call meets it first: a later acquire or submit, or
    // finish.
    for (std::size_t s = 0; s < layouts.size(); ++s)
      for (std::uint64_t at = 0; at < layouts[s].data_bytes; at += page) {
        const std::uint64_t n = std::min<std::uint64_t>(page, layouts[s].data_bytes - at);
        std::byte* chunk = writer.acquire(s, at, n);
        std::memset(chunk, 7, n);
        writer.submit(chunk, s, at, n);
      }
    writer.finish();
    ADD_FAILURE() << "the injected ENOSPC was not reported";
  } catch (const io_error& e) {
    EXPECT_EQ(e.errno_value(), ENOSPC) << e.what();
    EXPECT_NE(std::string(e.what()).find("write failed"), std::string::npos) << e.what();
  }
  detail::clear_write_fault();
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(shard_writer, a_shard_short_of_bytes_is_an_error_and_leaves_nothing) {
  temp_dir dir;
  auto engine = make_host_backend(1, cpu::isa::portable);
  const auto layouts = three_shards();
  {
    shard_writer writer(dir.path(), layouts, *engine, 2, page);
    std::byte* chunk = writer.acquire(1, 0, page);
    writer.submit(chunk, 1, 0, page);
    try {
      writer.finish();
      ADD_FAILURE() << "shards with bytes missing were taken as complete";
    } catch (const io_error& e) {
      EXPECT_NE(std::string(e.what()).find("unwritten"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(shard_writer, a_full_disk_at_the_headers_leaves_nothing) {
  temp_dir dir;
  auto engine = make_host_backend(1, cpu::isa::portable);
  detail::inject_write_fault(200, ENOSPC);
  EXPECT_THROW(shard_writer(dir.path(), three_shards(), *engine, 2, page), io_error);
  detail::clear_write_fault();
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

}  // namespace
}  // namespace umload::test
