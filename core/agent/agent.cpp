// Lease registry and drain of the worker agent. A lease is a file held with
// flock(LOCK_EX) by the running job; the lock dies with the last process that
// holds it, so a crashed job can never keep a worker "busy" forever.
#include "core/agent/agent.hpp"

#include "core/util/unique_fd.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "core/store/atomic_file.hpp"
#include "core/util/json.hpp"
#include "core/util/time.hpp"
#include "core/util/user.hpp"
#include "core/util/uuid.hpp"
#include "core/version/build_info.hpp"

extern char** environ;

namespace rch {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int err) { return std::strerror(err); }

std::string random_hex(size_t bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::vector<unsigned char> raw(bytes);
  fill_random(raw.data(), raw.size());
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char v : raw) {
    out += digits[v >> 4];
    out += digits[v & 0xf];
  }
  return out;
}

std::string user_at_host() { return current_user_name() + "@" + host_name(); }

// The lease's one JSON line. job_pid is added once the job has been forked,
// so an operator can find the process that holds the lease.
std::string lease_json(const std::vector<std::string>& argv, const std::string& started, std::optional<pid_t> job_pid) {
  Json j{{"pid", ::getpid()}};
  if (job_pid) j["job_pid"] = *job_pid;
  j["argv"] = argv;
  j["started"] = started;
  return dump_json(j) + "\n";
}

void rewrite_lease(int fd, const std::string& line) {
  // Best effort: the lock, not the contents, is what makes the lease.
  if (::ftruncate(fd, 0) != 0) return;
  std::string_view rest = line;
  off_t off = 0;
  while (!rest.empty()) {
    ssize_t n = ::pwrite(fd, rest.data(), rest.size(), off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    rest.remove_prefix(static_cast<size_t>(n));
    off += n;
  }
}

// A held lease: unlinked (while still locked, so no counter can mistake it
// for a dead one) and closed when the job is over.
struct Lease {
  fs::path path;
  UniqueFd fd;

  Lease(fs::path p, UniqueFd f) : path(std::move(p)), fd(std::move(f)) {}
  Lease(Lease&&) = default;
  ~Lease() {
    if (fd.valid()) ::unlink(path.c_str());
  }
};

Result<Lease> acquire_lease(const fs::path& dir) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    fs::path path = dir / (std::to_string(::getpid()) + "-" + random_hex(8) + ".lease");
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid()) {
      if (errno == EEXIST) continue;
      return make_error("cannot create lease " + path.string() + ": " + errno_text(errno));
    }
    while (::flock(fd.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return make_error("cannot lock lease " + path.string() + ": " + errno_text(errno));
    }
    // Between open and flock a counter may have found our file unlocked,
    // taken it for a dead lease and unlinked it: then the path no longer
    // names our inode and the lease would be invisible. Start over.
    struct stat held {
    }, named{};
    if (::fstat(fd.get(), &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
        held.st_ino == named.st_ino) {
      return Lease(std::move(path), std::move(fd));
    }
  }
  return make_error("cannot create a lease in " + dir.string() + ": it keeps disappearing");
}

// Absolute path of the program argv0 would run, searched in $PATH like
// execvp does; resolved before fork so the child only calls execve.
std::optional<std::string> find_program(const std::string& argv0) {
  if (argv0.find('/') != std::string::npos) return argv0;
  const char* env_path = std::getenv("PATH");
  std::string_view path = env_path && *env_path ? env_path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    size_t colon = path.find(':');
    std::string_view entry = path.substr(0, colon);
    std::string candidate = (entry.empty() ? std::string(".") : std::string(entry)) + "/" + argv0;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return std::nullopt;
}

// Forwarding of SIGINT/SIGTERM/SIGHUP to running jobs. The handler only reads
// a fixed table of atomics, so it is async-signal-safe; the table allows
// several concurrent run_job calls (rchd) in one process.
constexpr std::array<int, 3> k_forwarded = {SIGINT, SIGTERM, SIGHUP};
constexpr size_t k_max_forwarded_jobs = 64;
std::atomic<pid_t> g_job_pids[k_max_forwarded_jobs];
std::mutex g_forward_mu;
int g_forward_users = 0;
struct sigaction g_saved_actions[k_forwarded.size()];
bool g_installed[k_forwarded.size()];

extern "C" void forward_to_jobs(int sig, siginfo_t* info, void*) {
  // A terminal's Ctrl-C (sent by the kernel) already reaches the job, which
  // shares our process group; forwarding it too would deliver it twice.
  if (info != nullptr && info->si_code > 0) return;
  int saved_errno = errno;
  for (auto& slot : g_job_pids) {
    pid_t pid = slot.load(std::memory_order_relaxed);
    if (pid > 0) ::kill(pid, sig);
  }
  errno = saved_errno;
}

// Installs the forwarding handlers for as long as one job runs; a signal
// that was ignored (nohup) stays ignored.
class SignalForwarding {
 public:
  SignalForwarding() {
    std::lock_guard lock(g_forward_mu);
    if (g_forward_users++ > 0) return;
    for (size_t i = 0; i < k_forwarded.size(); ++i) {
      g_installed[i] = false;
      if (::sigaction(k_forwarded[i], nullptr, &g_saved_actions[i]) != 0) continue;
      if (!(g_saved_actions[i].sa_flags & SA_SIGINFO) && g_saved_actions[i].sa_handler == SIG_IGN) continue;
      struct sigaction sa {};
      sa.sa_sigaction = forward_to_jobs;
      sa.sa_flags = SA_SIGINFO | SA_RESTART;
      sigemptyset(&sa.sa_mask);
      g_installed[i] = ::sigaction(k_forwarded[i], &sa, nullptr) == 0;
    }
  }
  ~SignalForwarding() {
    if (slot_) slot_->store(0);
    std::lock_guard lock(g_forward_mu);
    if (--g_forward_users > 0) return;
    for (size_t i = 0; i < k_forwarded.size(); ++i) {
      if (g_installed[i]) ::sigaction(k_forwarded[i], &g_saved_actions[i], nullptr);
    }
  }
  SignalForwarding(const SignalForwarding&) = delete;
  SignalForwarding& operator=(const SignalForwarding&) = delete;

  void track(pid_t pid) {
    for (auto& slot : g_job_pids) {
      pid_t expected = 0;
      if (slot.compare_exchange_strong(expected, pid)) {
        slot_ = &slot;
        return;
      }
    }
  }

  // Called in the forked child before exec: the job gets the dispositions
  // this process had before we installed ours.
  static void restore_in_child() {
    for (size_t i = 0; i < k_forwarded.size(); ++i) {
      if (!g_installed[i]) continue;
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      sigemptyset(&dfl.sa_mask);
      ::sigaction(k_forwarded[i], &dfl, nullptr);
    }
  }

 private:
  std::atomic<pid_t>* slot_ = nullptr;
};

// Blocks the forwarded signals from fork until the job's pid is tracked, so a
// signal in between is forwarded rather than lost.
class BlockForwarded {
 public:
  BlockForwarded() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : k_forwarded) sigaddset(&set, sig);
    ::pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~BlockForwarded() { release(); }
  BlockForwarded(const BlockForwarded&) = delete;
  BlockForwarded& operator=(const BlockForwarded&) = delete;

  void release() {
    if (active_) ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    active_ = false;
  }
  const sigset_t& old_mask() const { return old_; }

 private:
  sigset_t old_;
  bool active_ = true;
};

// Creates dir with exactly `mode` (mkdir's mode passes through the umask),
// its missing parents with 0755. With `tighten`, an existing dir gets `mode`
// too: state dirs made by an older agent under a loose umask are fixed.
Result<void> make_dir(const fs::path& dir, mode_t mode, bool tighten) {
  if (::mkdir(dir.c_str(), mode) != 0) {
    const int err = errno;
    if (err == ENOENT && dir.has_parent_path() && dir.parent_path() != dir) {
      if (auto r = make_dir(dir.parent_path(), 0755, false); !r) return r;
      return make_dir(dir, mode, tighten);
    }
    struct stat st {};
    if (err != EEXIST) return make_error("cannot create " + dir.string() + ": " + errno_text(err));
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return make_error("cannot create " + dir.string() + ": it exists and is not a directory");
    }
    if (!tighten || (st.st_mode & 07777) == mode) return {};
  }
  if (::chmod(dir.c_str(), mode) != 0) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    return make_error("cannot set mode " + std::string(octal) + " on " + dir.string() + ": " + errno_text(errno));
  }
  return {};
}

// The state dir and, if given, the leases dir in it: 0700 whatever the umask
// (leases and the drain marker are the agent's own).
Result<void> make_state_dirs(const fs::path& state, const fs::path& leases = {}) {
  if (auto r = make_dir(state, 0700, true); !r) return r;
  if (leases.empty()) return {};
  return make_dir(leases, 0700, true);
}

std::string plural_builds(int n) { return std::to_string(n) + (n == 1 ? " active build" : " active builds"); }

// Counts held leases in dir and deletes dead ones; err gets a message when
// the directory exists but cannot be read.
int count_leases(const fs::path& dir, std::string* err) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    if (ec != std::errc::no_such_file_or_directory && err) {
      *err = "cannot read " + dir.string() + ": " + ec.message();
    }
    return 0;
  }
  int active = 0;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    const fs::path& path = it->path();
    if (path.extension() != ".lease") continue;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) continue;  // removed by its owner meanwhile
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
      // Nobody holds it: its job is gone. Unlink while we hold the lock.
      ::unlink(path.c_str());
    } else {
      ++active;  // EWOULDBLOCK, or an error we cannot judge: assume busy
    }
    if (ec) break;
  }
  return active;
}

}  // namespace

std::string health_json(const AgentHealth& h) {
  Json j{{"version", h.version},
         {"draining", h.draining},
         {"active_builds", h.active_builds},
         {"disk_free_mb", h.disk_free_mb},
         {"ok", h.ok},
         {"root", h.root}};
  if (!h.ok) j["error"] = h.error;
  return dump_json(j);
}

Agent::Agent(fs::path root)
    : root_(std::move(root)), leases_dir_(root_ / "state" / "leases"), drain_path_(root_ / "state" / "drain") {}

AgentHealth Agent::health() const {
  AgentHealth h;
  h.version = build_version();
  h.root = root_.string();
  h.draining = draining();
  std::string lease_error;
  h.active_builds = count_leases(leases_dir_, &lease_error);
  struct statvfs st {};
  if (::statvfs(root_.c_str(), &st) != 0) {
    h.error = "cannot read free space of " + root_.string() + ": " + errno_text(errno);
    return h;
  }
  h.disk_free_mb = static_cast<uint64_t>(st.f_bavail) * st.f_frsize / (1024 * 1024);
  if (!lease_error.empty()) {
    h.error = lease_error;
    return h;
  }
  h.ok = true;
  return h;
}

bool Agent::draining() const {
  std::error_code ec;
  return fs::exists(drain_path_, ec);
}

Result<void> Agent::set_draining() {
  if (auto r = make_state_dirs(drain_path_.parent_path()); !r) return r;
  if (draining()) return {};
  const std::string marker =
      dump_json({{"by", user_at_host()}, {"pid", ::getpid()}, {"since", iso8601_utc_now()}}) + "\n";
  return write_file_atomic(drain_path_, marker, 0644);
}

Result<void> Agent::undrain() {
  if (::unlink(drain_path_.c_str()) != 0 && errno != ENOENT) {
    return make_error("cannot remove " + drain_path_.string() + ": " + errno_text(errno));
  }
  return {};
}

int Agent::active_leases() const { return count_leases(leases_dir_, nullptr); }

Result<void> Agent::drain(std::chrono::seconds timeout, const std::function<void(int)>& progress) {
  using clock = std::chrono::steady_clock;
  // The marker goes first, the count second (see run_job for the other half).
  if (auto r = set_draining(); !r) return r;
  const auto start = clock::now();
  const auto deadline = start + timeout;
  auto next_progress = start;
  while (true) {
    int n = active_leases();
    if (n == 0) return {};
    auto now = clock::now();
    if (now >= deadline) {
      return make_error("drain timed out after " + std::to_string(timeout.count()) + "s: " + plural_builds(n) +
                        " still running");
    }
    if (progress && now >= next_progress) {
      progress(n);
      next_progress = now + std::chrono::seconds(1);
    }
    // Poll finely so a drain ends soon after the last job, report coarsely.
    std::this_thread::sleep_for(std::min<clock::duration>(std::chrono::milliseconds(100), deadline - now));
  }
}

Result<int> Agent::run_job(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0].empty()) return make_error("no command given");
  auto program = find_program(argv[0]);
  if (!program) return make_error("command not found: " + argv[0]);

  if (auto r = make_state_dirs(leases_dir_.parent_path(), leases_dir_); !r) return Error{r.error()};

  // Lease first, drain check second; drain() does marker first, count
  // second. Whatever the interleaving, either this check sees the marker
  // (and the job is refused), or the lease was already held when the marker
  // was written, so drain's count includes it: no job starts unseen by drain.
  auto lease = acquire_lease(leases_dir_);
  if (!lease) return make_error(lease.error());
  const std::string started = iso8601_utc_now();
  rewrite_lease(lease->fd.get(), lease_json(argv, started, std::nullopt));
  if (draining()) return make_error(std::string(k_job_refused_draining));  // ~Lease removes it

  // Everything the child needs is prepared before fork: between fork and
  // exec only async-signal-safe calls are allowed (the process may have threads).
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return make_error("cannot create pipe: " + errno_text(errno));
  UniqueFd exec_err_read(pipe_fds[0]), exec_err_write(pipe_fds[1]);

  SignalForwarding forwarding;
  BlockForwarded blocked;
  const int lease_fd = lease->fd.get();
  pid_t pid = ::fork();
  if (pid < 0) return make_error("cannot fork: " + errno_text(errno));
  if (pid == 0) {
    SignalForwarding::restore_in_child();
    ::pthread_sigmask(SIG_SETMASK, &blocked.old_mask(), nullptr);
    // The job alone inherits the lease: it keeps it held even if this agent
    // is killed, and releases it when it dies.
    ::fcntl(lease_fd, F_SETFD, 0);
    ::execve(program->c_str(), cargv.data(), environ);
    int err = errno;
    ssize_t ignored = ::write(exec_err_write.get(), &err, sizeof err);
    (void)ignored;
    ::_exit(127);
  }
  forwarding.track(pid);
  blocked.release();
  exec_err_write.reset();
  rewrite_lease(lease_fd, lease_json(argv, started, pid));

  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_err_read.get(), &exec_errno, sizeof exec_errno);
  } while (n < 0 && errno == EINTR);

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return make_error("cannot wait for job: " + errno_text(errno));
  }
  if (n == static_cast<ssize_t>(sizeof exec_errno)) {
    return make_error("cannot run " + *program + ": " + errno_text(exec_errno));
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

fs::path resolve_agent_root(const std::string& root_flag, const char* env_root, const fs::path& exe_path,
                            const fs::path& home) {
  if (!root_flag.empty()) return fs::absolute(root_flag);
  if (env_root != nullptr && *env_root != '\0') return fs::absolute(env_root);
  // An installed agent lives at <root>/versions/v<ver>/rch-wkr.
  const fs::path version_dir = exe_path.parent_path();
  const std::string version_name = version_dir.filename().string();
  if (exe_path.filename() == "rch-wkr" && version_name.size() > 1 && version_name[0] == 'v' &&
      version_dir.parent_path().filename() == "versions") {
    return version_dir.parent_path().parent_path();
  }
  return home / ".rch";
}

fs::path discover_agent_root(const std::string& root_flag) {
  std::error_code ec;
  fs::path exe = fs::canonical("/proc/self/exe", ec);
  if (ec) exe.clear();
  return resolve_agent_root(root_flag, std::getenv("RCH_WKR_ROOT"), exe, home_dir());
}

}  // namespace rch
