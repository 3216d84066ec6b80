// The build supervisor (a fork of rchd that runs Agent::run_job) and the job
// shim (rchd re-executed as the job, which reports "started" and execs the
// build command). See job.hpp for why the shim exists.
#include "cli/rchd/job.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

#include "core/agent/agent.hpp"

namespace rch::rchd {
namespace fs = std::filesystem;

namespace {

// The notify pipe's fd number in the supervisor and the shim.
constexpr int k_notify_fd = 3;

// The daemon blocks the signals it reads through its signalfd and ignores
// SIGPIPE; a job must start with the ordinary defaults, as from a shell.
void reset_signals() {
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE}) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

// The message is one line: newlines inside it would end it early.
void notify_error(int fd, std::string message) {
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  write_all(fd, "E" + message + "\n");
}

bool executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// What execvp would run, decided before "started" is reported so a missing
// command is a refused build rather than a job that exits 127.
std::optional<std::string> find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (executable_file(name)) return name;
    return std::nullopt;
  }
  const char* env_path = std::getenv("PATH");
  std::string_view path = env_path && *env_path ? env_path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    const size_t colon = path.find(':');
    const std::string_view dir = path.substr(0, colon);
    std::string candidate = (dir.empty() ? std::string(".") : std::string(dir)) + "/" + name;
    if (executable_file(candidate)) return candidate;
    if (colon == std::string_view::npos) return std::nullopt;
    path.remove_prefix(colon + 1);
  }
}

// Closes every descriptor >= first. close_range(2) needs Linux 5.9; older
// kernels get the slow loop rather than a leaked pidfile lock.
void close_fds_from(int first) {
  if (::close_range(static_cast<unsigned>(first), ~0U, 0) == 0) return;
  long max_fd = ::sysconf(_SC_OPEN_MAX);
  if (max_fd < 0 || max_fd > (1 << 20)) max_fd = 1 << 20;
  for (int fd = first; fd < max_fd; ++fd) ::close(fd);
}

[[noreturn]] void run_supervisor(const fs::path& agent_root, const std::vector<std::string>& argv,
                                 const std::string& cwd, int notify_write) {
  reset_signals();
  // Only the notify pipe and stdio survive: the daemon's listening socket,
  // clients and above all its pidfile lock must not live on in a build that
  // outlasts the daemon.
  if (notify_write != k_notify_fd) ::dup2(notify_write, k_notify_fd);
  ::fcntl(k_notify_fd, F_SETFD, 0);
  if (int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC); null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
  close_fds_from(k_notify_fd + 1);

  // /proc/self/exe is this very binary even after an update replaced the
  // file at its path, so the shim always matches the daemon that runs it.
  std::vector<std::string> shim = {"/proc/self/exe", k_job_shim_command, "--notify", std::to_string(k_notify_fd)};
  if (!cwd.empty()) {
    shim.push_back("--cwd");
    shim.push_back(cwd);
  }
  shim.push_back("--");
  shim.insert(shim.end(), argv.begin(), argv.end());

  Agent agent(agent_root);
  auto status = agent.run_job(shim);
  if (!status) {
    notify_error(k_notify_fd, status.error());
    ::_exit(status.error() == k_job_refused_draining ? k_supervisor_refused : k_supervisor_cannot_start);
  }
  // _exit: this is a copy of the daemon; its destructors (socket, pidfile)
  // belong to the daemon process only.
  ::_exit(*status);
}

}  // namespace

Result<StartedBuild> start_build(const fs::path& agent_root, const std::vector<std::string>& argv,
                                 const std::string& cwd) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return make_error(std::string("cannot create a pipe: ") + std::strerror(errno));
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  std::fflush(nullptr);  // nothing buffered may be written twice
  const pid_t pid = ::fork();
  if (pid < 0) return make_error(std::string("cannot fork: ") + std::strerror(errno));
  if (pid == 0) run_supervisor(agent_root, argv, cwd, write_end.get());
  write_end.reset();
  if (::fcntl(read_end.get(), F_SETFL, O_NONBLOCK) != 0) {
    return make_error(std::string("cannot configure the notify pipe: ") + std::strerror(errno));
  }
  return StartedBuild{pid, std::move(read_end)};
}

int job_shim_main(int argc, char** argv) {
  reset_signals();
  int notify = -1;
  std::string cwd;
  int i = 2;
  for (; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "--notify" && i + 1 < argc) {
      notify = std::atoi(argv[++i]);
    } else if (a == "--cwd" && i + 1 < argc) {
      cwd = argv[++i];
    } else {
      std::fprintf(stderr, "rchd: %s is internal to rchd (bad argument '%s')\n", k_job_shim_command, argv[i]);
      return k_supervisor_cannot_start;
    }
  }
  if (notify < 0 || i >= argc) {
    std::fprintf(stderr, "rchd: %s is internal to rchd (usage: --notify FD [--cwd DIR] -- CMD...)\n",
                 k_job_shim_command);
    return k_supervisor_cannot_start;
  }
  ::fcntl(notify, F_SETFD, FD_CLOEXEC);  // the build command itself never sees it
  if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
    notify_error(notify, "cannot enter " + cwd + ": " + std::strerror(errno));
    return k_supervisor_cannot_start;
  }
  const std::string name = argv[i];
  const auto program = find_program(name);
  if (!program) {
    notify_error(notify, (name.find('/') != std::string::npos ? "cannot run " : "command not found: ") + name);
    return k_supervisor_cannot_start;
  }
  write_all(notify, "S\n");
  ::close(notify);
  ::execv(program->c_str(), argv + i);
  std::fprintf(stderr, "rchd: cannot run %s: %s\n", program->c_str(), std::strerror(errno));
  return 127;
}

}  // namespace rch::rchd
