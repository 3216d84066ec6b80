// Tests of core/archive/extract on tarballs built at test time with python3's
// tarfile (which writes what a hostile archive would hold: "../x", "/abs",
// links, fifos, devices, setuid bits): good extraction with bytes and modes,
// each refused entry kind, symlinks planted in the destination, limits, and
// that a refused archive leaves the destination as it was.
#include "core/archive/extract.hpp"
#include "tests/unit/temp_dir.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

using rch::test::TempDir;

std::string read_whole(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    out.push_back(fs::relative(e.path(), dir).string() + (e.is_directory() && !e.is_symlink() ? "/" : ""));
  std::sort(out.begin(), out.end());
  return out;
}

// Helpers the python snippets call to add entries to the archive `t`.
constexpr const char* kPrelude = R"PY(
import io, sys, tarfile
t = tarfile.open(sys.argv[1], "w:gz", format=tarfile.PAX_FORMAT)
def info(name, kind, mode):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = kind, mode, 1700000000
    return ti
def reg(name, data=b"", mode=0o644):
    ti = info(name, tarfile.REGTYPE, mode)
    ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))
def big(name, size):
    reg(name, bytes(size))
def dir(name, mode=0o755):
    t.addfile(info(name, tarfile.DIRTYPE, mode))
def sym(name, target):
    ti = info(name, tarfile.SYMTYPE, 0o777)
    ti.linkname = target
    t.addfile(ti)
def hard(name, target):
    ti = info(name, tarfile.LNKTYPE, 0o644)
    ti.linkname = target
    t.addfile(ti)
def dev(name, kind):
    ti = info(name, kind, 0o644)
    ti.devmajor, ti.devminor = 1, 3
    t.addfile(ti)
def pax_name(name, data=b"x"):
    ti = info("placeholder", tarfile.REGTYPE, 0o644)
    ti.pax_headers = {"path": name}
    ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))
)PY";

// Builds `work/name` from python lines using the helpers above.
fs::path make_tar(const fs::path& work, const std::string& name, const std::string& body) {
  const fs::path script = work / (name + ".py");
  const fs::path out = work / name;
  const fs::path log = work / (name + ".log");
  {
    std::ofstream f(script);
    f << kPrelude << body << "\nt.close()\n";
  }
  const std::string cmd = "python3 '" + script.string() + "' '" + out.string() + "' > '" + log.string() + "' 2>&1";
  int rc = std::system(cmd.c_str());
  INFO(read_whole(log));
  REQUIRE(rc == 0);
  return out;
}

struct Fixture {
  TempDir work, dest;
};

}  // namespace

TEST_CASE("extract_tar_gz_safely extracts files with their bytes and safe modes", "[extract]") {
  Fixture fx;
  std::string payload;
  for (int i = 0; i < 100000; ++i) payload += static_cast<char>((i * 7919) % 251);
  std::ofstream(fx.work.path / "payload", std::ios::binary) << payload;
  const auto tar = make_tar(fx.work.path, "rch-v0.2.0-x86_64-linux.tar.gz", R"PY(
payload = open(sys.argv[1].rsplit("/", 1)[0] + "/payload", "rb").read()
dir("./")
dir("rch-v0.2.0/")
reg("rch-v0.2.0/bin/rch", payload, 0o755)
reg("rch-v0.2.0/bin/rchd", b"daemon", 0o4755)
reg("rch-v0.2.0/bin/rch-wkr", b"worker", 0o6777)
reg("rch-v0.2.0/README.md", b"# readme\n", 0o644)
reg("./rch-v0.2.0/secret", b"", 0o600)
dir("rch-v0.2.0/private/", 0o1700)
dir("rch-v0.2.0/open/", 0o777)
reg("rch-v0.2.0//open/./note", b"n", 0o664)
)PY");

  auto r = rch::extract_tar_gz_safely(tar, fx.dest.path);
  INFO((r ? "" : r.error()));
  REQUIRE(r.ok());
  CHECK(*r == std::vector<std::string>{"rch-v0.2.0/bin/rch", "rch-v0.2.0/bin/rchd", "rch-v0.2.0/bin/rch-wkr",
                                       "rch-v0.2.0/README.md", "rch-v0.2.0/secret", "rch-v0.2.0/open/note"});
  const fs::path top = fx.dest.path / "rch-v0.2.0";
  CHECK(read_whole(top / "bin/rch") == payload);
  CHECK(read_whole(top / "bin/rchd") == "daemon");
  CHECK(read_whole(top / "README.md") == "# readme\n");
  CHECK(fs::file_size(top / "secret") == 0);
  CHECK(mode_of(top / "bin/rch") == 0755);
  CHECK(mode_of(top / "bin/rchd") == 0755);     // setuid dropped
  CHECK(mode_of(top / "bin/rch-wkr") == 0755);  // setuid, setgid, group/other write dropped
  CHECK(mode_of(top / "README.md") == 0644);
  CHECK(mode_of(top / "secret") == 0600);
  CHECK(mode_of(top / "open/note") == 0644);
  CHECK(mode_of(top) == 0755);
  CHECK(mode_of(top / "bin") == 0755);      // implied by its files
  CHECK(mode_of(top / "private") == 0700);  // sticky dropped
  CHECK(mode_of(top / "open") == 0755);
}

TEST_CASE("extract_tar_gz_safely refuses each dangerous entry kind", "[extract]") {
  struct Bad {
    std::string python, entry, why;
  };
  const std::vector<Bad> cases = {
      {R"(reg("../x", b"evil"))", "../x", "path escapes the extraction directory"},
      {R"(reg("a/../../x", b"evil"))", "a/../../x", "path escapes the extraction directory"},
      {R"(reg("a/..", b"evil"))", "a/..", "path escapes the extraction directory"},
      {R"(dir("../up/"))", "../up/", "path escapes the extraction directory"},
      {R"(reg("/tmp/abs", b"evil"))", "/tmp/abs", "absolute path"},
      {R"(pax_name("/etc/abs"))", "/etc/abs", "absolute path"},
      {R"(pax_name("../pax-escape"))", "../pax-escape", "path escapes the extraction directory"},
      {R"(reg("", b"x"))", "", "empty name"},
      {R"(reg(".", b"x"))", ".", "empty name"},
      {R"(reg("./.", b"x"))", "./.", "empty name"},
      {R"(sym("link", "/etc/passwd"))", "link", "symbolic links are not allowed (to '/etc/passwd')"},
      {R"(sym("dir/link", "../../.."))", "dir/link", "symbolic links are not allowed (to '../../..')"},
      {R"(hard("hl", "ok.txt"))", "hl", "hard links are not allowed (to 'ok.txt')"},
      {R"(hard("hl2", "/etc/shadow"))", "hl2", "hard links are not allowed (to '/etc/shadow')"},
      {R"(dev("fifo", tarfile.FIFOTYPE))", "fifo", "fifos are not allowed"},
      {R"(dev("null", tarfile.CHRTYPE))", "null", "character devices are not allowed"},
      {R"(dev("sda", tarfile.BLKTYPE))", "sda", "block devices are not allowed"},
      {R"(reg("ok.txt", b"again"))", "ok.txt", "duplicate entry"},
      {R"(reg("./sub/./one", b"again"))", "./sub/./one", "duplicate entry"},
      {R"(dir("ok.txt/"))", "ok.txt/", "duplicate entry"},
      {R"(reg("ok.txt/inner", b"x"))", "ok.txt/inner", "'ok.txt' in the extraction directory is not a directory"},
  };
  for (const auto& c : cases) {
    Fixture fx;
    // Good entries first: they must be gone again after the refusal.
    const auto tar = make_tar(fx.work.path, "bad.tar.gz", "reg('ok.txt', b'fine')\nreg('sub/one', b'1')\n" + c.python);
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path);
    INFO(c.python);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "refusing entry '" + c.entry + "' in bad.tar.gz: " + c.why);
    CHECK(listing(fx.dest.path).empty());
    CHECK(listing(fx.work.path).size() == 3);  // nothing landed next to dest
  }
}

TEST_CASE("a name with a NUL is cut there and stays inside", "[extract]") {
  Fixture fx;
  const auto tar = make_tar(fx.work.path, "nul.tar.gz", R"(pax_name("inside\x00/../../../escape"))");
  auto r = rch::extract_tar_gz_safely(tar, fx.dest.path);
  REQUIRE(r.ok());
  CHECK(*r == std::vector<std::string>{"inside"});
  CHECK(listing(fx.dest.path) == std::vector<std::string>{"inside"});
}

TEST_CASE("symlinks already in the destination are not followed", "[extract]") {
  Fixture fx;
  TempDir outside;
  std::ofstream(outside.path / "victim") << "original";

  SECTION("as a directory on the way") {
    fs::create_directory_symlink(outside.path, fx.dest.path / "bin");
    const auto tar = make_tar(fx.work.path, "a.tar.gz", R"(reg("bin/rch", b"evil"))");
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "refusing entry 'bin/rch' in a.tar.gz: 'bin' in the extraction directory is a symbolic link");
  }

  SECTION("as a directory entry") {
    fs::create_directory_symlink(outside.path, fx.dest.path / "bin");
    const auto tar = make_tar(fx.work.path, "a.tar.gz", R"(dir("bin/"))");
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "refusing entry 'bin/' in a.tar.gz: 'bin' in the extraction directory is a symbolic link");
  }

  SECTION("as the file itself") {
    fs::create_symlink(outside.path / "victim", fx.dest.path / "rch");
    const auto tar = make_tar(fx.work.path, "a.tar.gz", R"(reg("rch", b"evil"))");
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "refusing entry 'rch' in a.tar.gz: 'rch' already exists in the extraction directory");
  }

  SECTION("a dangling one") {
    fs::create_symlink(outside.path / "new", fx.dest.path / "rch");
    const auto tar = make_tar(fx.work.path, "a.tar.gz", R"(reg("rch", b"evil"))");
    REQUIRE_FALSE(rch::extract_tar_gz_safely(tar, fx.dest.path).ok());
  }

  CHECK(read_whole(outside.path / "victim") == "original");
  CHECK(listing(outside.path) == std::vector<std::string>{"victim"});
}

TEST_CASE("existing content of the destination is kept", "[extract]") {
  Fixture fx;
  fs::create_directory(fx.dest.path / "bin");
  fs::permissions(fx.dest.path / "bin", fs::perms(0750));
  std::ofstream(fx.dest.path / "keep") << "mine";
  const auto tar = make_tar(fx.work.path, "a.tar.gz", "dir('bin/', 0o700)\nreg('bin/rch', b'new', 0o755)\n");
  auto r = rch::extract_tar_gz_safely(tar, fx.dest.path);
  INFO((r ? "" : r.error()));
  REQUIRE(r.ok());
  CHECK(mode_of(fx.dest.path / "bin") == 0750);  // not ours: mode untouched

  SECTION("and survives a refused archive") {
    const auto bad = make_tar(fx.work.path, "b.tar.gz", "reg('bin/rchd', b'd')\nreg('keep', b'theirs')\n");
    auto again = rch::extract_tar_gz_safely(bad, fx.dest.path);
    REQUIRE_FALSE(again.ok());
    CHECK(again.error() == "refusing entry 'keep' in b.tar.gz: 'keep' already exists in the extraction directory");
    CHECK(listing(fx.dest.path) == std::vector<std::string>{"bin/", "bin/rch", "keep"});
    CHECK(read_whole(fx.dest.path / "keep") == "mine");
  }
}

TEST_CASE("extract_tar_gz_safely enforces its limits", "[extract]") {
  Fixture fx;
  rch::ExtractLimits limits;
  limits.max_total_bytes = 1 << 20;
  limits.max_entries = 4;

  SECTION("one file too large") {
    const auto tar = make_tar(fx.work.path, "big.tar.gz", R"(big("huge", 2 << 20))");
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path, limits);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "refusing entry 'huge' in big.tar.gz: archive holds more than 1048576 bytes");
  }

  SECTION("files adding up past the limit") {
    const auto tar = make_tar(fx.work.path, "sum.tar.gz", "big('a', 600000)\nbig('b', 600000)\n");
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path, limits);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "refusing entry 'b' in sum.tar.gz: archive holds more than 1048576 bytes");
  }

  SECTION("too many entries") {
    const auto tar = make_tar(fx.work.path, "many.tar.gz", "for i in range(5): reg('f%d' % i, b'x')\n");
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path, limits);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "refusing entry 'f4' in many.tar.gz: archive has more than 4 entries");
  }

  SECTION("exactly at the limits is fine") {
    const auto tar =
        make_tar(fx.work.path, "edge.tar.gz", "big('a', 1 << 19)\nbig('b', 1 << 19)\ndir('d/')\nreg('d/e')\n");
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path, limits);
    INFO((r ? "" : r.error()));
    REQUIRE(r.ok());
    CHECK(r->size() == 3);
    return;
  }

  CHECK(listing(fx.dest.path).empty());
}

TEST_CASE("unreadable archives and destinations are reported", "[extract]") {
  Fixture fx;

  SECTION("missing archive") {
    auto r = rch::extract_tar_gz_safely(fx.work.path / "none.tar.gz", fx.dest.path);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("cannot open archive " + (fx.work.path / "none.tar.gz").string() + ": "));
  }

  SECTION("not a tarball") {
    std::ofstream(fx.work.path / "junk.tar.gz") << std::string(4096, 'j');
    auto r = rch::extract_tar_gz_safely(fx.work.path / "junk.tar.gz", fx.dest.path);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains("junk.tar.gz"));
  }

  SECTION("truncated tarball") {
    const auto tar = make_tar(fx.work.path, "t.tar.gz", "import os\nreg('a', os.urandom(300000))\n");
    fs::resize_file(tar, fs::file_size(tar) / 2);
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains("t.tar.gz"));
    CHECK(listing(fx.dest.path).empty());
  }

  SECTION("damaged in the middle") {
    // A "./" header read as a directory leaves its data block behind, which
    // libarchive reports as damage (ARCHIVE_RETRY) before resyncing.
    const auto tar = make_tar(fx.work.path, "d.tar.gz", "reg('a', b'1')\nreg('./', b'x' * 600)\nreg('b', b'2')\n");
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("cannot read d.tar.gz after entry './': "));
    CHECK(listing(fx.dest.path).empty());
  }

  SECTION("missing destination") {
    const auto tar = make_tar(fx.work.path, "a.tar.gz", "reg('a')\n");
    auto r = rch::extract_tar_gz_safely(tar, fx.dest.path / "nope");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "cannot extract a.tar.gz: " + (fx.dest.path / "nope").string() + " is not a directory");
  }
}
