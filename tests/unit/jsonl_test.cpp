// Unit tests of core/store/jsonl: appends, group commit, newline rejection,
// torn tails (dropped by the reader, cut by the next writer), partial writes.
#include "core/store/jsonl.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/store/atomic_file.hpp"
#include "tests/unit/temp_dir.hpp"

namespace fs = std::filesystem;
using Lines = std::vector<std::string>;

namespace {

using rch::test::TempDir;

void append_raw(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::app);
  out << bytes;
}

}  // namespace

TEST_CASE("JsonlWriter appends lines and creates parent directories", "[jsonl]") {
  TempDir dir;
  const fs::path path = dir.path / "deployments" / "d1" / "journal.jsonl";
  {
    auto w = rch::JsonlWriter::open(path);
    REQUIRE(w.ok());
    REQUIRE(w->append(R"({"worker":"w1","step":"preflight"})").ok());
    REQUIRE(w->append(R"({"worker":"w2","step":"transfer"})").ok());
    CHECK(w->path() == path);
  }
  CHECK(rch::read_file(path).value() ==
        "{\"worker\":\"w1\",\"step\":\"preflight\"}\n{\"worker\":\"w2\",\"step\":\"transfer\"}\n");
  // Reopening appends rather than truncating.
  {
    auto w = rch::JsonlWriter::open(path);
    REQUIRE(w.ok());
    REQUIRE(w->append("third").ok());
  }
  auto lines = rch::read_jsonl_lines(path);
  REQUIRE(lines.ok());
  CHECK(lines->size() == 3);
  CHECK(lines->back() == "third");
}

TEST_CASE("JsonlWriter rejects newlines", "[jsonl]") {
  TempDir dir;
  const fs::path path = dir.path / "audit.jsonl";
  auto w = rch::JsonlWriter::open(path);
  REQUIRE(w.ok());
  auto r = w->append("a\nb");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error(), Catch::Contains(path.string()));
  CHECK_THAT(r.error(), Catch::Contains("newline"));
  CHECK_FALSE(w->append("trailing\n").ok());
  // A batch with one bad line writes nothing.
  auto b = w->append_batch({"ok1", "bad\nline", "ok2"});
  REQUIRE_FALSE(b.ok());
  CHECK_THAT(b.error(), Catch::Contains("line 2"));
  CHECK(rch::read_file(path).value().empty());
}

TEST_CASE("append_batch writes all lines in order", "[jsonl]") {
  TempDir dir;
  const fs::path path = dir.path / "journal.jsonl";
  auto w = rch::JsonlWriter::open(path);
  REQUIRE(w.ok());
  REQUIRE(w->append("before").ok());
  REQUIRE(w->append_batch({"a", "", "c"}).ok());
  REQUIRE(w->append_batch({}).ok());
  CHECK(rch::read_jsonl_lines(path).value() == Lines{"before", "a", "", "c"});
}

TEST_CASE("JsonlWriter is movable and the moved-to writer keeps appending", "[jsonl]") {
  TempDir dir;
  const fs::path path = dir.path / "j.jsonl";
  auto opened = rch::JsonlWriter::open(path);
  REQUIRE(opened.ok());
  rch::JsonlWriter a = std::move(opened).value();
  REQUIRE(a.append("1").ok());
  rch::JsonlWriter b = std::move(a);
  REQUIRE(b.append("2").ok());
  auto other = rch::JsonlWriter::open(dir.path / "other.jsonl");
  REQUIRE(other.ok());
  b = std::move(other).value();
  REQUIRE(b.append("x").ok());
  CHECK(rch::read_jsonl_lines(path).value() == Lines{"1", "2"});
  CHECK(rch::read_jsonl_lines(dir.path / "other.jsonl").value() == Lines{"x"});
}

TEST_CASE("read_jsonl_lines drops a torn final line", "[jsonl]") {
  TempDir dir;
  const fs::path path = dir.path / "journal.jsonl";
  append_raw(path, "{\"a\":1}\n{\"b\":2}\n{\"c\":");
  CHECK(rch::read_jsonl_lines(path).value() == Lines{"{\"a\":1}", "{\"b\":2}"});

  SECTION("a file that is only a torn line reads as empty") {
    std::ofstream(dir.path / "t.jsonl") << "{\"partial";
    CHECK(rch::read_jsonl_lines(dir.path / "t.jsonl").value().empty());
  }
  SECTION("the next writer cuts the torn tail instead of gluing onto it") {
    auto w = rch::JsonlWriter::open(path);
    REQUIRE(w.ok());
    REQUIRE(w->append("{\"d\":4}").ok());
    CHECK(rch::read_file(path).value() == "{\"a\":1}\n{\"b\":2}\n{\"d\":4}\n");
  }
  SECTION("torn tail longer than the repair buffer, no newline at all") {
    std::ofstream(dir.path / "long.jsonl") << std::string(10000, 'z');
    auto w = rch::JsonlWriter::open(dir.path / "long.jsonl");
    REQUIRE(w.ok());
    REQUIRE(w->append("fresh").ok());
    CHECK(rch::read_file(dir.path / "long.jsonl").value() == "fresh\n");
  }
  SECTION("torn tail after a long line") {
    std::ofstream(dir.path / "l2.jsonl") << std::string(9000, 'y') << "\n" << std::string(5000, 'z');
    auto w = rch::JsonlWriter::open(dir.path / "l2.jsonl");
    REQUIRE(w.ok());
    REQUIRE(w->append("fresh").ok());
    CHECK(rch::read_jsonl_lines(dir.path / "l2.jsonl").value() == Lines{std::string(9000, 'y'), "fresh"});
  }
}

TEST_CASE("read_jsonl_lines of a missing file names it", "[jsonl]") {
  TempDir dir;
  auto r = rch::read_jsonl_lines(dir.path / "none.jsonl");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error(), Catch::Contains("none.jsonl"));
}

TEST_CASE("JsonlWriter::open fails where it cannot create the file", "[jsonl]") {
  TempDir dir;
  std::ofstream(dir.path / "file") << "x";
  auto r = rch::JsonlWriter::open(dir.path / "file" / "j.jsonl");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error(), Catch::Contains((dir.path / "file").string()));
}

TEST_CASE("a partial append is rolled back so the journal stays line-aligned", "[jsonl]") {
  TempDir dir;
  const fs::path path = dir.path / "journal.jsonl";
  {
    auto w = rch::JsonlWriter::open(path);
    REQUIRE(w.ok());
    REQUIRE(w->append("first").ok());
  }
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // A file size limit makes write(2) stop part-way: the short write path.
    ::signal(SIGXFSZ, SIG_IGN);
    auto w = rch::JsonlWriter::open(path);
    if (!w.ok()) ::_exit(3);
    rlimit lim{100, 100};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    auto r = w->append_batch({std::string(60, 'a'), std::string(60, 'b')});
    ::_exit(r.ok() ? 1 : 0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(rch::read_file(path).value() == "first\n");
}

TEST_CASE("read_last_jsonl_line finds the last complete line", "[jsonl]") {
  const auto dir = std::filesystem::temp_directory_path() / ("rch-lastline-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "a.jsonl";
  CHECK(rch::read_last_jsonl_line(file).value().empty());  // missing file
  REQUIRE(rch::write_file_atomic(file, "").ok());
  CHECK(rch::read_last_jsonl_line(file).value().empty());
  REQUIRE(rch::write_file_atomic(file, "{\"a\":1}\n").ok());
  CHECK(rch::read_last_jsonl_line(file).value() == "{\"a\":1}");
  // Many long lines: the answer spans a block boundary.
  std::string text;
  for (int i = 0; i < 500; ++i) text += std::string(37 + i % 50, 'x') + std::to_string(i) + "\n";
  const std::string last = std::string(9000, 'y') + "last";
  text += last + "\n" + "{\"torn";
  REQUIRE(rch::write_file_atomic(file, text).ok());
  CHECK(rch::read_last_jsonl_line(file).value() == last);
  std::filesystem::remove_all(dir);
}

TEST_CASE("rotate_if_larger shifts files, keeps keep_files, and other writers follow the new file", "[jsonl]") {
  TempDir dir;
  const fs::path path = dir.path / "audit.jsonl";
  auto a = rch::JsonlWriter::open(path);
  auto b = rch::JsonlWriter::open(path);  // another process's descriptor of the same log
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  const auto link = [](const std::string& previous, const std::string& line) {
    return line + "<-" + (previous.empty() ? std::string("start") : previous.substr(0, previous.find('<')));
  };
  REQUIRE(a->append_batch_linked({"one", "two"}, link).ok());
  auto small = a->rotate_if_larger(1 << 20, 2);
  REQUIRE(small.ok());
  CHECK_FALSE(small->rotated);
  for (const char* line : {"three", "four", "five"}) {
    auto r = a->rotate_if_larger(1, 2);
    REQUIRE(r.ok());
    CHECK(r->rotated);
    // b still holds the file that was just rotated away: its append must land in the new one.
    REQUIRE(b->append_batch_linked({line}, link).ok());
  }
  CHECK(*rch::read_jsonl_lines(path) == std::vector<std::string>{"five<-four"});
  CHECK(*rch::read_jsonl_lines(rch::rotated_path(path, 1)) == std::vector<std::string>{"four<-three"});
  CHECK(*rch::read_jsonl_lines(rch::rotated_path(path, 2)) == std::vector<std::string>{"three<-two"});
  CHECK_FALSE(fs::exists(rch::rotated_path(path, 3)));
}

TEST_CASE("for_each_jsonl_line reads every complete line across its read blocks", "[jsonl]") {
  TempDir dir;
  const fs::path path = dir.path / "journal.jsonl";
  // Lines of several lengths, one longer than a read block, then a torn tail.
  Lines want;
  std::string text;
  for (std::size_t len : {0u, 1u, 700000u, 5u, 1500000u, 3u}) {
    want.push_back(std::string(len, 'x') + std::to_string(len));
    text += want.back() + "\n";
  }
  append_raw(path, text + "{\"torn");
  Lines got;
  auto torn = rch::for_each_jsonl_line(path, [&](std::string_view line) { got.emplace_back(line); });
  REQUIRE(torn.ok());
  CHECK(*torn == 6);
  CHECK(got == want);
  CHECK(!rch::for_each_jsonl_line(dir.path / "missing.jsonl", [](std::string_view) {}).ok());
}
