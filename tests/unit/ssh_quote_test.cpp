// shell_quote / shell_join: every quoted word is run through a real /bin/sh,
// and the test checks the bytes come back unchanged and nothing was executed.
#include "core/ssh/quote.hpp"
#include "tests/unit/temp_dir.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct ShellRun {
  std::string out;
  int status = -1;
};

// Runs `/bin/sh -c script` with `cwd` as working directory, returns stdout.
ShellRun run_sh(const std::string& script, const fs::path& cwd) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    if (chdir(cwd.c_str()) != 0) _exit(126);
    execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  ShellRun run;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) run.out.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

// A fresh empty directory, removed at scope exit: injected commands would
// leave files in it.
struct TempDir : rch::test::TempDir {
  bool empty() const { return fs::is_empty(path); }
};

const std::vector<std::string>& nasty_inputs() {
  static const std::vector<std::string> inputs = {
      "plain",
      "",
      "with space",
      "  leading and trailing  ",
      "it's",
      "'",
      "''",
      "'\\''",
      "double \" quote",
      "$(touch PWNED_subst)",
      "`touch PWNED_backtick`",
      "x; touch PWNED_semicolon",
      "x && touch PWNED_and",
      "x | touch PWNED_pipe",
      "> PWNED_redirect",
      "$HOME ${HOME} $0 $1 $@ $*",
      "line one\nline two",
      "\n",
      "tab\there",
      "*",
      "/*",
      "?",
      "[a-z]*",
      "~",
      "~root",
      "-n",
      "--help",
      "-e \\n",
      "back\\slash\\",
      "#not a comment",
      "!event",
      "a=b",
      "{a,b}",
      "héllo wörld ✓ 日本語",
      "\xff\xfe invalid utf-8",
      "\x01\x1b[31mcontrol\x7f",
  };
  return inputs;
}

}  // namespace

TEST_CASE("shell_quote leaves safe words alone", "[ssh][quote]") {
  CHECK(rch::shell_quote("abc_XYZ-0.9/path:8080=v@host%+,") == "abc_XYZ-0.9/path:8080=v@host%+,");
  CHECK(rch::shell_quote("-rf") == "-rf");
  CHECK(rch::shell_quote("") == "''");
  CHECK(rch::shell_quote("a b") == "'a b'");
  CHECK(rch::shell_quote("it's") == "'it'\\''s'");
  CHECK(rch::shell_quote("~") == "'~'");
}

TEST_CASE("shell_quote round-trips nasty input through /bin/sh", "[ssh][quote]") {
  TempDir dir;
  for (const auto& input : nasty_inputs()) {
    CAPTURE(input);
    const std::string quoted = rch::shell_quote(input);
    CAPTURE(quoted);
    const ShellRun run = run_sh("printf '%s\\n' " + quoted, dir.path);
    CHECK(run.status == 0);
    CHECK(run.out == input + "\n");
  }
  CHECK(dir.empty());
}

TEST_CASE("shell_join keeps arguments apart", "[ssh][quote]") {
  TempDir dir;
  std::vector<std::string> argv = {"printf", "%s\\n"};
  std::string expected;
  for (const auto& input : nasty_inputs()) {
    argv.push_back(input);
    expected += input + "\n";
  }
  const ShellRun run = run_sh(rch::shell_join(argv), dir.path);
  CHECK(run.status == 0);
  CHECK(run.out == expected);
  CHECK(dir.empty());
  CHECK(rch::shell_join({}).empty());
  CHECK(rch::shell_join({"echo", "a b", ""}) == "echo 'a b' ''");
}

TEST_CASE("shell_join never lets the first word become an assignment", "[ssh][quote]") {
  TempDir dir;
  // Unquoted, `X=1 printf ...` would run printf; quoted, sh looks for a command named "X=1".
  const ShellRun run = run_sh(rch::shell_join({"X=1", "printf", "ran"}) + " 2>/dev/null", dir.path);
  CHECK(run.status == 127);
  CHECK(run.out.empty());
  CHECK(rch::shell_join({"env", "X=1"}) == "env X=1");
}
